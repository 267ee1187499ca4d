//! Fixtures of the contract tests: partners from plain to every-feature, the writes that store
//! them, and fixed instants and tenants.

use std::time::Duration;

use cmp_application::{
    AuditAction, AuditEntry, ChangeWrite, InGraph, InlineDelivery, Lease, LeaseOwner,
    NewPartnerWrite, Transition,
};
use cmp_domain::{
    Assignment, AssignmentFilter, AssignmentTarget, DisplayName, EntityGuid, NewPartner, Partner,
    PartnerId, PartnerState, Platform, PlatformEnrollment, Platforms, ScopeTagTargetType,
    TargetKind, TenantId, TextId, Timestamp,
};
use uuid::Uuid;

const G1: &str = "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11";
const G2: &str = "6f2c1a55-0000-4000-8000-000000000002";
const G3: &str = "A1B2C3D4-0000-4000-8000-00000000000A";
const G4: &str = "11111111-2222-4333-8444-555555555555";

/// The lease owner the tests claim as.
pub fn dispatcher_a() -> LeaseOwner {
    LeaseOwner::from_stored("dispatcher:a".to_owned())
}

/// A delivery's end that leaves Graph's object `graph_id`.
pub fn delivered_as(graph_id: &str) -> Transition {
    Transition::Delivered {
        in_graph: InGraph::Object(graph_id.to_owned()),
    }
}

/// The tenant most rows belong to.
pub fn tenant() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x7e4a_0001))
}

/// A second tenant, to show that tenants do not mix.
pub fn other_tenant() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x7e4a_0002))
}

/// The fixed "now" of the tests (2023-11-14T22:13:20Z).
pub fn now() -> Timestamp {
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
pub fn plain_partner(id: u128, name: &str, heartbeat: Timestamp) -> Partner {
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
pub fn rich_partner(id: u128) -> Partner {
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
pub fn write_for(partner: &Partner, tenant: TenantId, seed: u128) -> NewPartnerWrite {
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
pub fn partner_with(
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
pub fn renamed(partner: &Partner, name: &str) -> Partner {
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
pub fn change_write(
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
