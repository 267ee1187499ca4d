//! Row types: the shape of the tables in Rust, and the conversions to and from the domain.
//!
//! They are private to the adapter (the domain knows nothing of SQL). Reading a row back is
//! parsing, not trusting: every value goes through the domain's own constructors, and a stored
//! value that no longer parses is an error with context, never a panic.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};
use cmp_application::{
    AuditEntry, ClaimedRow, DeliveryRecord, InGraph, OutboxRecord, OutboxState, PacerState,
    WaitingState,
};
use cmp_domain::{
    Assignment, AssignmentFilter, AssignmentTarget, DisplayName, EntityGuid, NaturalKey,
    NewPartner, Partner, PartnerId, PartnerState, Platform, PlatformEnrollment, Platforms,
    ScopeTagTargetType, TargetKind, TenantId, TextId, Timestamp,
};
use uuid::Uuid;

/// The columns of [`PartnerRow`], as a literal so that `concat!` can build `&'static str`
/// statements from it and the listing's builder can start from it.
macro_rules! partner_row_columns {
    () => {
        "id, tenant_id, display_name, name_key, partner_state, last_heartbeat, \
         mac_os_onboarded, windows_onboarded, android_onboarded, ios_onboarded, linux_onboarded"
    };
}
pub(crate) use partner_row_columns;

/// A row of `partners`, as far as the domain needs it. `graph_id`, `created_at`, `updated_at`
/// and `deleted_at` are bookkeeping of the adapter and are written by the statements directly.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct PartnerRow {
    pub(crate) id: String,
    pub(crate) tenant_id: String,
    pub(crate) display_name: String,
    /// `None` only on a tombstone whose delete Graph confirmed (the name is released). Written
    /// rows always carry it.
    pub(crate) name_key: Option<String>,
    pub(crate) partner_state: String,
    pub(crate) last_heartbeat: i64,
    pub(crate) mac_os_onboarded: bool,
    pub(crate) windows_onboarded: bool,
    pub(crate) android_onboarded: bool,
    pub(crate) ios_onboarded: bool,
    pub(crate) linux_onboarded: bool,
}

impl PartnerRow {
    /// The row of `partner` in `tenant`.
    pub(crate) fn from_domain(partner: &Partner, tenant: TenantId) -> Self {
        let onboarded = |platform| partner.platform(platform).onboarded();
        Self {
            id: partner.id().to_string(),
            tenant_id: tenant.to_string(),
            display_name: partner.display_name().as_str().to_owned(),
            name_key: Some(NaturalKey::of(partner.display_name()).as_str().to_owned()),
            partner_state: partner.state().as_str().to_owned(),
            last_heartbeat: partner.last_heartbeat().unix_ticks(),
            mac_os_onboarded: onboarded(Platform::MacOs),
            windows_onboarded: onboarded(Platform::Windows),
            android_onboarded: onboarded(Platform::Android),
            ios_onboarded: onboarded(Platform::Ios),
            linux_onboarded: onboarded(Platform::Linux),
        }
    }

    /// Rebuilds the partner from this row and its assignment rows, which may come in any
    /// order (they are sorted by platform and position here).
    ///
    /// # Errors
    /// When a stored value no longer parses or the rows break an invariant of the aggregate
    /// (a target listed twice on one platform).
    pub(crate) fn into_domain(self, assignments: Vec<AssignmentRow>) -> anyhow::Result<Partner> {
        let id: PartnerId = self
            .id
            .parse()
            .with_context(|| format!("stored partner id '{}'", self.id))?;
        let display_name = DisplayName::parse(&self.display_name)
            .with_context(|| format!("display name of stored partner {id}"))?;
        let state: PartnerState = self
            .partner_state
            .parse()
            .with_context(|| format!("state of stored partner {id}"))?;
        let last_heartbeat = Timestamp::from_unix_ticks(self.last_heartbeat)
            .with_context(|| format!("last heartbeat of stored partner {id}"))?;

        // Keyed by position, so each platform's list comes out in stored order whatever order
        // the rows were read in.
        let mut by_platform: HashMap<Platform, BTreeMap<i64, Assignment>> = HashMap::new();
        for row in assignments {
            let platform = parse_platform(&row.platform)
                .with_context(|| format!("assignment of stored partner {id}"))?;
            let position = row.position;
            let assignment = row.into_domain().with_context(|| {
                format!("assignment {position} of platform {platform} of stored partner {id}")
            })?;
            by_platform
                .entry(platform)
                .or_default()
                .insert(position, assignment);
        }

        let mut platforms = Platforms::none();
        for (platform, onboarded) in [
            (Platform::MacOs, self.mac_os_onboarded),
            (Platform::Windows, self.windows_onboarded),
            (Platform::Android, self.android_onboarded),
            (Platform::Ios, self.ios_onboarded),
            (Platform::Linux, self.linux_onboarded),
        ] {
            let assignments = by_platform
                .remove(&platform)
                .unwrap_or_default()
                .into_values()
                .collect();
            let enrollment = PlatformEnrollment::new(onboarded, assignments)
                .with_context(|| format!("platform {platform} of stored partner {id}"))?;
            platforms.set(platform, enrollment);
        }

        Ok(Partner::restore(
            id,
            NewPartner {
                display_name,
                state,
                last_heartbeat,
                platforms,
            },
        ))
    }
}

/// A row of `partners LEFT JOIN partner_assignments`: the partner with one of its assignments,
/// or with none (every assignment column NULL) when it has no assignment. Reading one partner
/// this way takes one statement, so one trip to the connection's thread and one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct PartnerJoinedRow {
    #[sqlx(flatten)]
    pub(crate) partner: PartnerRow,
    pub(crate) platform: Option<String>,
    pub(crate) position: Option<i64>,
    pub(crate) target_type: Option<String>,
    pub(crate) filter_type: Option<String>,
    pub(crate) filter_id: Option<String>,
    pub(crate) group_id: Option<String>,
    pub(crate) collection_id: Option<String>,
    pub(crate) scope_tag_target_type: Option<String>,
    pub(crate) entra_object_id: Option<String>,
}

impl PartnerJoinedRow {
    /// The partner of the first row, with the assignments of all of them (which belong to
    /// that one partner); `None` when there is no row.
    ///
    /// # Errors
    /// When an assignment's key columns are set without its required ones, or the partner no
    /// longer parses ([`PartnerRow::into_domain`]).
    pub(crate) fn into_domain(rows: Vec<Self>) -> anyhow::Result<Option<Partner>> {
        let mut rows = rows.into_iter();
        let Some(first) = rows.next() else {
            return Ok(None);
        };
        let (partner, assignment) = first.split()?;
        let mut assignments: Vec<AssignmentRow> = assignment.into_iter().collect();
        for row in rows {
            assignments.extend(row.split()?.1);
        }
        let id = partner.id.clone();
        partner
            .into_domain(assignments)
            .with_context(|| format!("stored partner {id} no longer parses"))
            .map(Some)
    }

    /// The partner's columns, and the assignment's when the row has one.
    fn split(self) -> anyhow::Result<(PartnerRow, Option<AssignmentRow>)> {
        let assignment = match (self.platform, self.position) {
            (None, None) => None,
            (Some(platform), Some(position)) => Some(AssignmentRow {
                platform,
                position,
                target_type: self
                    .target_type
                    .context("an assignment row without a target type")?,
                filter_type: self
                    .filter_type
                    .context("an assignment row without a filter type")?,
                filter_id: self.filter_id,
                group_id: self.group_id,
                collection_id: self.collection_id,
                scope_tag_target_type: self.scope_tag_target_type,
                entra_object_id: self.entra_object_id,
            }),
            _ => bail!("an assignment row with only half of its key"),
        };
        Ok((self.partner, assignment))
    }
}

/// A row of `partner_assignments` with its partner id, for reading the assignments of a whole
/// page of partners in one statement.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct PartnerAssignmentRow {
    pub(crate) partner_id: String,
    #[sqlx(flatten)]
    pub(crate) assignment: AssignmentRow,
}

/// A row of `partner_assignments`, without the partner id (the caller knows it).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct AssignmentRow {
    pub(crate) platform: String,
    pub(crate) position: i64,
    pub(crate) target_type: String,
    pub(crate) filter_type: String,
    pub(crate) filter_id: Option<String>,
    pub(crate) group_id: Option<String>,
    pub(crate) collection_id: Option<String>,
    pub(crate) scope_tag_target_type: Option<String>,
    pub(crate) entra_object_id: Option<String>,
}

impl AssignmentRow {
    /// The rows of every assignment of `partner`, each platform's list numbered from 0.
    pub(crate) fn all_of(partner: &Partner) -> Vec<Self> {
        partner
            .platforms()
            .iter()
            .flat_map(|(platform, enrollment)| {
                enrollment
                    .assignments()
                    .iter()
                    .zip(0_i64..)
                    .map(move |(assignment, position)| {
                        Self::from_domain(platform, position, assignment)
                    })
            })
            .collect()
    }

    /// The row of one assignment at `position` of `platform`'s list.
    pub(crate) fn from_domain(platform: Platform, position: i64, assignment: &Assignment) -> Self {
        let target = assignment.target();
        let mut row = Self {
            platform: platform.property_prefix().to_owned(),
            position,
            target_type: target.kind().type_name().to_owned(),
            filter_type: target.filter().type_name().to_owned(),
            filter_id: target.filter().filter_id().map(|id| id.as_str().to_owned()),
            group_id: None,
            collection_id: None,
            scope_tag_target_type: None,
            entra_object_id: None,
        };
        match target.kind() {
            TargetKind::AllDevices | TargetKind::AllLicensedUsers => {}
            TargetKind::ConfigurationManagerCollection { collection_id } => {
                row.collection_id = Some(collection_id.as_str().to_owned());
            }
            TargetKind::Group { group_id }
            | TargetKind::ExclusionGroup { group_id }
            | TargetKind::AndroidFotaDeployment { group_id } => {
                row.group_id = Some(group_id.to_string());
            }
            TargetKind::ScopeTagGroup {
                target_type,
                entra_object_id,
            } => {
                row.scope_tag_target_type = Some(target_type.as_str().to_owned());
                row.entra_object_id = Some(entra_object_id.to_string());
            }
        }
        row
    }

    /// Rebuilds the assignment.
    ///
    /// # Errors
    /// When the subtype is unknown, a field it needs is missing, or a stored id no longer parses.
    pub(crate) fn into_domain(self) -> anyhow::Result<Assignment> {
        let filter = AssignmentFilter::parse(Some(&self.filter_type), self.filter_id.as_deref())
            .context("assignment filter")?;
        let kind = match self.target_type.as_str() {
            "allDevicesAssignmentTarget" => TargetKind::AllDevices,
            "allLicensedUsersAssignmentTarget" => TargetKind::AllLicensedUsers,
            "configurationManagerCollectionAssignmentTarget" => {
                TargetKind::ConfigurationManagerCollection {
                    collection_id: TextId::parse(required(&self.collection_id, "collection_id")?)
                        .context("collection_id")?,
                }
            }
            "groupAssignmentTarget" => TargetKind::Group {
                group_id: group_id(&self.group_id)?,
            },
            "exclusionGroupAssignmentTarget" => TargetKind::ExclusionGroup {
                group_id: group_id(&self.group_id)?,
            },
            "androidFotaDeploymentAssignmentTarget" => TargetKind::AndroidFotaDeployment {
                group_id: group_id(&self.group_id)?,
            },
            "scopeTagGroupAssignmentTarget" => TargetKind::ScopeTagGroup {
                target_type: required(&self.scope_tag_target_type, "scope_tag_target_type")?
                    .parse::<ScopeTagTargetType>()
                    .context("scope_tag_target_type")?,
                entra_object_id: EntityGuid::parse(required(
                    &self.entra_object_id,
                    "entra_object_id",
                )?)
                .context("entra_object_id")?,
            },
            other => bail!("unknown target type '{other}'"),
        };
        Ok(Assignment::new(AssignmentTarget::new(kind, filter)))
    }
}

/// A row of `audit_log`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub(crate) id: String,
    pub(crate) partner_id: String,
    pub(crate) action: String,
    pub(crate) request_id: String,
    pub(crate) caller: String,
    pub(crate) at: i64,
    pub(crate) detail: String,
}

impl AuditRow {
    /// The row of `entry`.
    pub(crate) fn from_domain(entry: &AuditEntry) -> Self {
        Self {
            id: entry.id.hyphenated().to_string(),
            partner_id: entry.partner_id.to_string(),
            action: entry.action.as_str().to_owned(),
            request_id: entry.request_id.clone(),
            caller: entry.caller.clone(),
            at: entry.at.unix_ticks(),
            detail: entry.detail.clone(),
        }
    }

    /// The entry this row stores.
    ///
    /// # Errors
    /// When a stored value no longer parses.
    pub(crate) fn into_domain(self) -> anyhow::Result<AuditEntry> {
        let id = parse_uuid(&self.id).context("stored audit entry id")?;
        let context = || format!("stored audit entry {id}");
        Ok(AuditEntry {
            id,
            partner_id: self
                .partner_id
                .parse()
                .with_context(|| format!("partner id of {}", context()))?,
            action: self.action.parse().with_context(context)?,
            request_id: self.request_id,
            caller: self.caller,
            at: instant(self.at, "at").with_context(context)?,
            detail: self.detail,
        })
    }
}

/// An `outbox` row as the dispatcher's claim selects it, before the claim changes its state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct ClaimRow {
    pub(crate) id: String,
    pub(crate) partner_id: String,
    pub(crate) natural_key: String,
    /// `pending` or `unknown`: what the attempt must do first (send, or reconcile).
    pub(crate) state: String,
    pub(crate) attempts: i64,
    pub(crate) first_attempt_at: Option<i64>,
    pub(crate) created_at: i64,
    /// Attempts started since `first_attempt_at` (a re-queue opens a new window).
    pub(crate) attempts_in_window: i64,
    /// `create`, `update` or `delete`.
    pub(crate) operation: String,
    /// When the row became due.
    pub(crate) next_attempt_at: i64,
    /// Graph's id of the partner, once delivered.
    pub(crate) partner_graph_id: Option<String>,
    /// Whether the partner's create was delivered with nothing in Graph (it was deleted before
    /// its create ever reached Graph).
    pub(crate) created_nothing_in_graph: bool,
    /// Whether a caller deleted the partner.
    pub(crate) partner_deleted: bool,
}

impl ClaimRow {
    /// The claimed row, delivering `partner`.
    ///
    /// # Errors
    /// When a stored value no longer parses.
    pub(crate) fn into_claimed(self, partner: Partner) -> anyhow::Result<ClaimedRow> {
        let outbox_id = parse_uuid(&self.id).context("stored outbox id")?;
        let context = || format!("stored outbox row {outbox_id}");
        let in_graph = match (self.partner_graph_id, self.created_nothing_in_graph) {
            (Some(graph_id), _) => Some(InGraph::Object(graph_id)),
            (None, true) => Some(InGraph::Nothing),
            (None, false) => None,
        };
        let previous_state = match self.state.parse().with_context(context)? {
            OutboxState::Pending => WaitingState::Pending,
            OutboxState::Unknown => WaitingState::Unknown,
            other => bail!("{} was claimed in state {other}", context()),
        };
        Ok(ClaimedRow {
            outbox_id,
            operation: self.operation.parse().with_context(context)?,
            in_graph,
            partner_deleted: self.partner_deleted,
            partner,
            natural_key: NaturalKey::from_stored(self.natural_key),
            previous_state,
            attempts: count(self.attempts, "attempts").with_context(context)?,
            attempts_in_window: count(self.attempts_in_window, "attempts_in_window")
                .with_context(context)?,
            first_attempt_at: self
                .first_attempt_at
                .map(|ticks| instant(ticks, "first_attempt_at"))
                .transpose()
                .with_context(context)?,
            created_at: instant(self.created_at, "created_at").with_context(context)?,
            due_at: instant(self.next_attempt_at, "next_attempt_at").with_context(context)?,
        })
    }
}

/// The columns of an `outbox` row that operators see: an [`OutboxRecord`] without its
/// deliveries.
/// The lease columns are left out on purpose: who holds a row is the dispatcher's business,
/// and the state already says whether anyone does.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct OutboxRow {
    pub(crate) id: String,
    pub(crate) partner_id: String,
    pub(crate) operation: String,
    pub(crate) natural_key: String,
    pub(crate) state: String,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: i64,
    pub(crate) last_status: Option<i64>,
    pub(crate) last_error_code: Option<String>,
    pub(crate) last_client_request_id: Option<String>,
    pub(crate) graph_id: Option<String>,
    pub(crate) dead_reason: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) first_attempt_at: Option<i64>,
}

impl OutboxRow {
    /// The record of this row with its `deliveries` (already in order).
    ///
    /// # Errors
    /// When a stored value no longer parses (an id, a state, an out-of-range number or instant).
    pub(crate) fn into_record(self, deliveries: Vec<DeliveryRow>) -> anyhow::Result<OutboxRecord> {
        let outbox_id = parse_uuid(&self.id).context("stored outbox id")?;
        let context = || format!("stored outbox row {outbox_id}");
        let deliveries = deliveries
            .into_iter()
            .map(DeliveryRow::into_record)
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(context)?;
        Ok(OutboxRecord {
            outbox_id,
            partner_id: self
                .partner_id
                .parse()
                .with_context(|| format!("partner id of {}", context()))?,
            operation: self.operation.parse().with_context(context)?,
            natural_key: NaturalKey::from_stored(self.natural_key),
            state: self.state.parse().with_context(context)?,
            attempts: count(self.attempts, "attempts").with_context(context)?,
            next_attempt_at: instant(self.next_attempt_at, "next_attempt_at")
                .with_context(context)?,
            last_status: self
                .last_status
                .map(|status| http_status(status, "last_status"))
                .transpose()
                .with_context(context)?,
            last_error_code: self.last_error_code,
            last_client_request_id: self.last_client_request_id,
            graph_id: self.graph_id,
            dead_reason: self.dead_reason,
            created_at: instant(self.created_at, "created_at").with_context(context)?,
            updated_at: instant(self.updated_at, "updated_at").with_context(context)?,
            first_attempt_at: self
                .first_attempt_at
                .map(|ticks| instant(ticks, "first_attempt_at"))
                .transpose()
                .with_context(context)?,
            deliveries,
        })
    }
}

/// A row of `deliveries`, without the outbox id (the caller knows it).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub(crate) attempt: i64,
    pub(crate) client_request_id: String,
    pub(crate) started_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub(crate) http_status: Option<i64>,
    pub(crate) graph_error_code: Option<String>,
    pub(crate) graph_request_id: Option<String>,
    pub(crate) outcome: Option<String>,
}

impl DeliveryRow {
    /// The delivery as operators see it.
    ///
    /// # Errors
    /// When a stored number, instant or outcome no longer parses.
    pub(crate) fn into_record(self) -> anyhow::Result<DeliveryRecord> {
        let attempt = count(self.attempt, "attempt")?;
        let context = || format!("delivery {attempt}");
        Ok(DeliveryRecord {
            attempt,
            client_request_id: self.client_request_id,
            started_at: instant(self.started_at, "started_at").with_context(context)?,
            finished_at: self
                .finished_at
                .map(|ticks| instant(ticks, "finished_at"))
                .transpose()
                .with_context(context)?,
            http_status: self
                .http_status
                .map(|status| http_status(status, "http_status"))
                .transpose()
                .with_context(context)?,
            graph_error_code: self.graph_error_code,
            graph_request_id: self.graph_request_id,
            outcome: self
                .outcome
                .map(|outcome| outcome.parse())
                .transpose()
                .with_context(context)?,
        })
    }
}

/// A stored id in the hyphenated GUID form.
pub(crate) fn parse_uuid(text: &str) -> anyhow::Result<Uuid> {
    Uuid::try_parse(text).with_context(|| format!("'{text}' is not a GUID"))
}

/// A stored instant (ticks) named `column`.
pub(crate) fn instant(ticks: i64, column: &str) -> anyhow::Result<Timestamp> {
    Timestamp::from_unix_ticks(ticks).with_context(|| format!("{column} {ticks} is out of range"))
}

/// A stored counter named `column` (attempts).
pub(crate) fn count(value: i64, column: &str) -> anyhow::Result<u32> {
    u32::try_from(value).with_context(|| format!("{column} {value} is out of range"))
}

/// A stored HTTP status named `column`.
fn http_status(value: i64, column: &str) -> anyhow::Result<u16> {
    u16::try_from(value).with_context(|| format!("{column} {value} is out of range"))
}

/// The platform stored under its property prefix (`macOs`, `windows`, ...).
fn parse_platform(text: &str) -> anyhow::Result<Platform> {
    Platform::ALL
        .into_iter()
        .find(|p| p.property_prefix() == text)
        .with_context(|| format!("unknown platform '{text}'"))
}

/// The value of a column the target subtype needs.
fn required<'a>(value: &'a Option<String>, column: &str) -> anyhow::Result<&'a str> {
    value
        .as_deref()
        .with_context(|| format!("{column} is missing"))
}

/// The `group_id` of a group-based subtype.
fn group_id(value: &Option<String>) -> anyhow::Result<EntityGuid> {
    EntityGuid::parse(required(value, "group_id")?).context("group_id")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target_type: &str) -> AssignmentRow {
        AssignmentRow {
            platform: "ios".into(),
            position: 0,
            target_type: target_type.into(),
            filter_type: "none".into(),
            filter_id: None,
            group_id: None,
            collection_id: None,
            scope_tag_target_type: None,
            entra_object_id: None,
        }
    }

    #[test]
    fn an_assignment_row_that_no_longer_parses_is_an_error_not_a_panic() {
        let cases = [
            ("unknown subtype", row("somethingNewAssignmentTarget")),
            ("group without group id", row("groupAssignmentTarget")),
            (
                "group id not a guid",
                AssignmentRow {
                    group_id: Some("group-1".into()),
                    ..row("groupAssignmentTarget")
                },
            ),
            (
                "collection without id",
                row("configurationManagerCollectionAssignmentTarget"),
            ),
            (
                "scope tag with an unknown target type",
                AssignmentRow {
                    scope_tag_target_type: Some("User".into()),
                    entra_object_id: Some("0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11".into()),
                    ..row("scopeTagGroupAssignmentTarget")
                },
            ),
            (
                "include filter without id",
                AssignmentRow {
                    filter_type: "include".into(),
                    ..row("allDevicesAssignmentTarget")
                },
            ),
        ];
        for (case, row) in cases {
            assert!(row.into_domain().is_err(), "case: {case}");
        }
    }

    #[test]
    fn a_platform_name_outside_the_five_is_refused() {
        assert!(parse_platform("macOS").is_err());
        assert_eq!(parse_platform("macOs").ok(), Some(Platform::MacOs));
    }
}

/// A row of `tenant_pacers`: one tenant's pacing state (the columns are `PacerState`'s, in
/// ticks since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct PacerRow {
    pub(crate) next_write_at: i64,
    pub(crate) next_read_at: i64,
    pub(crate) paused_until: Option<i64>,
    pub(crate) epoch: i64,
}

impl PacerRow {
    /// The state the row holds.
    ///
    /// # Errors
    /// When an instant is out of the timestamp range or the epoch is negative.
    pub(crate) fn into_state(self) -> anyhow::Result<PacerState> {
        let instant = |ticks: i64| {
            Timestamp::from_unix_ticks(ticks).context("a pacing instant out of the timestamp range")
        };
        Ok(PacerState {
            next_write_at: instant(self.next_write_at)?,
            next_read_at: instant(self.next_read_at)?,
            paused_until: self.paused_until.map(instant).transpose()?,
            epoch: u64::try_from(self.epoch).context("a negative pacing epoch")?,
        })
    }
}
