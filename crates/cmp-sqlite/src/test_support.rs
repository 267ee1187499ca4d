//! Fixtures shared by the adapter's tests: a fresh store on a temporary file, partners from
//! plain to every-feature, and the create write that stores them.

use cmp_application::{
    AuditAction, AuditEntry, ChangeQueued, ChangeWrite, ChangedPartner, InGraph, InlineDelivery,
    Lease, LeaseOwner, NewPartnerWrite, PartnerUpdate, StoreError, Transition,
};
use cmp_domain::{
    Assignment, AssignmentFilter, AssignmentTarget, DisplayName, EntityGuid, NewPartner, Partner,
    PartnerId, PartnerState, Platform, PlatformEnrollment, Platforms, ScopeTagTargetType,
    TargetKind, TenantId, TextId, Timestamp,
};
use std::time::Duration;
use tempfile::TempDir;
use uuid::Uuid;

use cmp_application::PartnerStore;

use crate::{SqliteOutbox, SqlitePartnerStore, SqliteSettings, SqliteStore};

/// Both ports over one store, as the tests drive them.
pub(crate) struct Ports {
    pub(crate) partners: SqlitePartnerStore,
    pub(crate) outbox: SqliteOutbox,
}

impl Ports {
    /// Updates the stored partner to `partner`, whatever it holds, as `write` says (its audit
    /// entry included); answers how the change goes to Graph.
    pub(crate) async fn update_to(
        &self,
        partner: &Partner,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError> {
        let (replacement, audit) = (partner.clone(), write.audit.clone());
        let update = PartnerUpdate {
            tenant_id: write.tenant_id,
            outbox_id: write.outbox_id,
            now: write.now,
            change: Box::new(move |_: &Partner| {
                Ok(ChangedPartner {
                    partner: replacement,
                    audit,
                })
            }),
        };
        self.partners
            .update_partner(partner.id(), update)
            .await
            .map(|updated| updated.queued)
    }
}

impl SqliteStore {
    /// Both ports over this store.
    pub(crate) fn ports(&self) -> Ports {
        Ports {
            partners: self.partner_store(),
            outbox: self.outbox(),
        }
    }
}

const G1: &str = "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11";
const G2: &str = "6f2c1a55-0000-4000-8000-000000000002";
const G3: &str = "A1B2C3D4-0000-4000-8000-00000000000A";
const G4: &str = "11111111-2222-4333-8444-555555555555";

/// The lease owner the tests claim as.
pub(crate) fn dispatcher_a() -> LeaseOwner {
    LeaseOwner::from_stored("dispatcher:a".to_owned())
}

/// A delivery's end that leaves Graph's object `graph_id`.
pub(crate) fn delivered_as(graph_id: &str) -> Transition {
    Transition::Delivered {
        in_graph: InGraph::Object(graph_id.to_owned()),
    }
}

/// A fresh store on a new file, and the directory that must outlive it.
pub(crate) async fn open_store() -> (TempDir, SqliteStore) {
    let dir = TempDir::new().expect("temp dir");
    let store = SqliteStore::open(&settings(&dir))
        .await
        .expect("open store");
    (dir, store)
}

/// A fresh store holding `partner`, created by its [`write_for`] write (seed 100) in
/// [`tenant`]; answers the directory, the store, its ports and the write.
pub(crate) async fn store_with(
    partner: &Partner,
) -> (TempDir, SqliteStore, Ports, NewPartnerWrite) {
    let (dir, store) = open_store().await;
    let ports = store.ports();
    let write = write_for(partner, tenant(), 100);
    ports
        .partners
        .insert_partner(partner, &write)
        .await
        .expect("insert");
    (dir, store, ports, write)
}

/// A connection of its own to `store`'s file, for tests that write what the ports never would
/// (a corrupt row, a row of another shape). It takes SQLite's write lock like any other writer.
pub(crate) async fn side_connection(store: &SqliteStore) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    store
        .settings
        .connect_options()
        .connect()
        .await
        .expect("a side connection")
}

/// The settings of a store on `cmp.db` in `dir`.
pub(crate) fn settings(dir: &TempDir) -> SqliteSettings {
    SqliteSettings {
        path: dir.path().join("cmp.db"),
        busy_timeout_ms: 5000,
        max_read_connections: 4,
    }
}

/// The tenant most rows belong to.
pub(crate) fn tenant() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x7e4a_0001))
}

/// A second tenant, to show that tenants do not mix.
pub(crate) fn other_tenant() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x7e4a_0002))
}

/// The fixed "now" of the tests (2023-11-14T22:13:20Z).
pub(crate) fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_700_000_000, 0).expect("a 2023 instant is in range")
}

fn text(s: &str) -> TextId {
    TextId::parse(s).expect("valid text id")
}

fn guid(s: &str) -> EntityGuid {
    EntityGuid::parse(s).expect("valid guid")
}

fn assignment(kind: TargetKind, filter: AssignmentFilter) -> Assignment {
    Assignment::new(AssignmentTarget::new(kind, filter))
}

fn enrolled(assignments: Vec<Assignment>) -> PlatformEnrollment {
    PlatformEnrollment::new(true, assignments).expect("valid enrollment")
}

/// A partner named `name` with no platform onboarded.
pub(crate) fn plain_partner(id: u128, name: &str, heartbeat: Timestamp) -> Partner {
    Partner::restore(
        PartnerId::from_uuid(Uuid::from_u128(id)),
        NewPartner {
            display_name: DisplayName::parse(name).expect("valid name"),
            state: PartnerState::Enabled,
            last_heartbeat: heartbeat,
            platforms: Platforms::none(),
        },
    )
}

/// A partner using every target subtype, every filter kind and every platform, with lists
/// that are not in any sorted order and a heartbeat with a non-zero seventh fractional digit.
pub(crate) fn rich_partner(id: u128) -> Partner {
    let mut platforms = Platforms::none();
    platforms.set(
        Platform::MacOs,
        enrolled(vec![
            assignment(
                TargetKind::Group { group_id: guid(G2) },
                AssignmentFilter::Include(text("filter-b")),
            ),
            assignment(
                TargetKind::AllDevices,
                AssignmentFilter::Exclude(text("filter-a")),
            ),
            assignment(
                TargetKind::ConfigurationManagerCollection {
                    collection_id: text("SMS00001"),
                },
                AssignmentFilter::None,
            ),
        ]),
    );
    platforms.set(
        Platform::Windows,
        enrolled(vec![
            assignment(
                TargetKind::ScopeTagGroup {
                    target_type: ScopeTagTargetType::Device,
                    entra_object_id: guid(G3),
                },
                AssignmentFilter::None,
            ),
            assignment(TargetKind::AllLicensedUsers, AssignmentFilter::None),
            assignment(
                TargetKind::ExclusionGroup { group_id: guid(G1) },
                AssignmentFilter::Include(text("  spaced id  ")),
            ),
        ]),
    );
    platforms.set(
        Platform::Android,
        enrolled(vec![
            assignment(
                TargetKind::AndroidFotaDeployment { group_id: guid(G4) },
                AssignmentFilter::Exclude(text("fota")),
            ),
            assignment(
                TargetKind::Group { group_id: guid(G1) },
                AssignmentFilter::None,
            ),
        ]),
    );
    // Twelve entries in descending order: position 10 must come after position 9, which a
    // text sort of positions would get wrong.
    platforms.set(
        Platform::Ios,
        enrolled(
            (0..12)
                .rev()
                .map(|n| {
                    assignment(
                        TargetKind::ConfigurationManagerCollection {
                            collection_id: text(&format!("SMS{n:05}")),
                        },
                        AssignmentFilter::None,
                    )
                })
                .collect(),
        ),
    );
    platforms.set(
        Platform::Linux,
        enrolled(vec![
            assignment(
                TargetKind::ScopeTagGroup {
                    target_type: ScopeTagTargetType::UnknownFutureValue,
                    entra_object_id: guid(G2),
                },
                AssignmentFilter::None,
            ),
            assignment(
                TargetKind::ScopeTagGroup {
                    target_type: ScopeTagTargetType::User,
                    entra_object_id: guid(G1),
                },
                AssignmentFilter::Include(text("f")),
            ),
            assignment(
                TargetKind::ScopeTagGroup {
                    target_type: ScopeTagTargetType::None,
                    entra_object_id: guid(G1),
                },
                AssignmentFilter::None,
            ),
        ]),
    );
    Partner::restore(
        PartnerId::from_uuid(Uuid::from_u128(id)),
        NewPartner {
            display_name: DisplayName::parse("Contoso Ünïcode Partner").expect("valid name"),
            state: PartnerState::Unresponsive,
            last_heartbeat: Timestamp::from_unix_seconds(1_699_999_000, 1_234_567)
                .expect("in range"),
            platforms,
        },
    )
}

/// The create write of `partner`, with ids derived from `seed` so that tests can tell the
/// rows of several partners apart.
pub(crate) fn write_for(partner: &Partner, tenant: TenantId, seed: u128) -> NewPartnerWrite {
    NewPartnerWrite {
        tenant_id: tenant,
        delivery: InlineDelivery {
            outbox_id: Uuid::from_u128(seed + 1),
            lease: Lease {
                owner: LeaseOwner::request(&format!("req-{seed}")),
                expires_at: now().saturating_add(Duration::from_secs(160)),
            },
            client_request_id: Uuid::from_u128(seed + 2),
        },
        now: now(),
        audit: AuditEntry {
            id: Uuid::from_u128(seed + 3),
            partner_id: partner.id(),
            action: AuditAction::Created,
            request_id: format!("req-{seed}"),
            caller: format!("app:tenant/caller-{seed}"),
            at: now(),
            detail: format!("created partner '{}'", partner.display_name()),
        },
    }
}

/// A partner with the given name, state and heartbeat, onboarded on `onboarded` (without
/// assignments): the properties a listing filters and sorts by.
pub(crate) fn partner_with(
    id: u128,
    name: &str,
    state: PartnerState,
    heartbeat: Timestamp,
    onboarded: &[Platform],
) -> Partner {
    let mut platforms = Platforms::none();
    for platform in onboarded {
        platforms.set(*platform, enrolled(Vec::new()));
    }
    Partner::restore(
        PartnerId::from_uuid(Uuid::from_u128(id)),
        NewPartner {
            display_name: DisplayName::parse(name).expect("valid name"),
            state,
            last_heartbeat: heartbeat,
            platforms,
        },
    )
}

/// `partner` with another display name, everything else kept.
pub(crate) fn renamed(partner: &Partner, name: &str) -> Partner {
    Partner::restore(
        partner.id(),
        NewPartner {
            display_name: DisplayName::parse(name).expect("valid name"),
            state: partner.state(),
            last_heartbeat: partner.last_heartbeat(),
            platforms: partner.platforms().clone(),
        },
    )
}

/// The write of an update or delete of `partner_id` at `at`, with ids derived from `seed`.
pub(crate) fn change_write(
    partner_id: PartnerId,
    tenant: TenantId,
    seed: u128,
    action: AuditAction,
    at: Timestamp,
) -> ChangeWrite {
    ChangeWrite {
        tenant_id: tenant,
        outbox_id: Uuid::from_u128(seed + 1),
        now: at,
        audit: AuditEntry {
            id: Uuid::from_u128(seed + 3),
            partner_id,
            action,
            request_id: format!("req-{seed}"),
            caller: format!("app:tenant/caller-{seed}"),
            at,
            detail: format!("{} partner {partner_id}", action.as_str()),
        },
    }
}

/// Row counts of the five tables, in the order partners, partner_assignments, outbox,
/// deliveries, audit_log.
pub(crate) async fn row_counts(store: &SqliteStore) -> [i64; 5] {
    let pool = &store.connections.reader;
    let mut counts = [0; 5];
    for (slot, sql) in counts.iter_mut().zip([
        "SELECT COUNT(*) FROM partners",
        "SELECT COUNT(*) FROM partner_assignments",
        "SELECT COUNT(*) FROM outbox",
        "SELECT COUNT(*) FROM deliveries",
        "SELECT COUNT(*) FROM audit_log",
    ]) {
        *slot = sqlx::query_scalar(sql)
            .fetch_one(pool)
            .await
            .expect("count rows");
    }
    counts
}
