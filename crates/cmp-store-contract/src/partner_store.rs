//! Tests of [`SqlitePartnerStore`] (and of the outbox steps a create and its inline delivery
//! take): one per contract in the doc comments of [`PartnerStore`], plus round trips and
//! durability, each on a fresh database file in a
//! temporary directory (never `sqlite::memory:`, where each pooled connection would get its own
//! empty database).

use cmp_application::{
    AuditAction, AuditEntry, DeliveryEnd, DeliveryOutcome, GraphResponseMeta, NewPartnerWrite,
    Transition, WaitingState,
};
use cmp_domain::{DisplayName, NewPartner, Platform, TargetKind, Timestamp};
use std::time::Duration;

use uuid::Uuid;

use crate::*;
use cmp_domain::PartnerId;

/// The outbox columns the tests look at.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredOutboxRow {
    tenant_id: String,
    partner_id: String,
    operation: String,
    natural_key: String,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    last_status: Option<i64>,
    last_error_code: Option<String>,
    last_client_request_id: Option<String>,
    graph_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    first_attempt_at: Option<i64>,
}

pub async fn outbox_record(store: &TestStore, outbox_id: Uuid) -> StoredOutboxRow {
    store.query(
        "SELECT tenant_id, partner_id, operation, natural_key, state, attempts, next_attempt_at, \
         lease_owner, lease_expires_at, last_status, last_error_code, last_client_request_id, \
         graph_id, created_at, updated_at, first_attempt_at FROM outbox WHERE id = ?",
    )
    .bind(outbox_id.hyphenated().to_string())
    .fetch_one()
    .await
    .expect("outbox row")
}

/// The delivery-attempt columns the tests look at.
#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredDeliveryRow {
    attempt: i64,
    client_request_id: String,
    started_at: i64,
    finished_at: Option<i64>,
    http_status: Option<i64>,
    graph_error_code: Option<String>,
    graph_request_id: Option<String>,
    outcome: Option<String>,
}

pub async fn attempt_records(store: &TestStore, outbox_id: Uuid) -> Vec<StoredDeliveryRow> {
    store
        .query(
            "SELECT attempt, client_request_id, started_at, finished_at, http_status, \
         graph_error_code, graph_request_id, outcome FROM deliveries \
         WHERE outbox_id = ? ORDER BY attempt",
        )
        .bind(outbox_id.hyphenated().to_string())
        .fetch_all()
        .await
        .expect("attempt rows")
}

pub async fn partner_graph_id(store: &TestStore, id: PartnerId) -> Option<String> {
    store
        .query("SELECT graph_id FROM partners WHERE id = ?")
        .bind(id.to_string())
        .fetch_scalar()
        .await
        .expect("partner row")
}

/// The end of attempt 1 of `write`'s outbox row.
pub fn finish_of(
    partner: &Partner,
    write: &NewPartnerWrite,
    transition: Transition,
) -> DeliveryEnd {
    DeliveryEnd {
        outbox_id: write.delivery.outbox_id,
        partner_id: partner.id(),
        client_request_id: write.delivery.client_request_id,
        finished_at: now().saturating_add(Duration::from_millis(850)),
        meta: GraphResponseMeta {
            status: Some(201),
            error_code: None,
            error_message: None,
            request_id: Some("graph-request-1".into()),
        },
        outcome: DeliveryOutcome::Created,
        transition,
    }
}

pub async fn insert_partner_writes_partner_assignments_outbox_first_attempt_and_audit() {
    let partner = rich_partner(1);
    let (_dir, store, _ports, write) = store_with(&partner).await;

    assert_eq!(row_counts(&store).await, [1, 23, 1, 1, 1]);
    let outbox = outbox_record(&store, write.delivery.outbox_id).await;
    assert_eq!(outbox.tenant_id, tenant().to_string());
    assert_eq!(outbox.partner_id, partner.id().to_string());
    assert_eq!(outbox.operation, "create");
    assert_eq!(outbox.natural_key, "contoso ünïcode partner");
    assert_eq!(outbox.state, "in_flight");
    assert_eq!(outbox.attempts, 1);
    assert_eq!(outbox.next_attempt_at, now().unix_ticks());
    assert_eq!(
        outbox.lease_owner,
        Some(store.stored_owner("request:req-100"))
    );
    assert_eq!(
        outbox.lease_expires_at,
        Some(write.delivery.lease.expires_at.unix_ticks())
    );
    assert_eq!(outbox.last_status, None);
    assert_eq!(outbox.last_error_code, None);
    assert_eq!(
        outbox.last_client_request_id,
        Some(write.delivery.client_request_id.to_string())
    );
    assert_eq!(outbox.graph_id, None);
    assert_eq!(outbox.created_at, now().unix_ticks());
    assert_eq!(outbox.updated_at, now().unix_ticks());
    assert_eq!(outbox.first_attempt_at, Some(now().unix_ticks()));
    assert_eq!(
        attempt_records(&store, write.delivery.outbox_id).await,
        [StoredDeliveryRow {
            attempt: 1,
            client_request_id: write.delivery.client_request_id.to_string(),
            started_at: now().unix_ticks(),
            finished_at: None,
            http_status: None,
            graph_error_code: None,
            graph_request_id: None,
            outcome: None,
        }]
    );
    let audit: (String, String, String, String, String, i64, String) = store
        .query("SELECT id, partner_id, action, request_id, caller, at, detail FROM audit_log")
        .fetch_one()
        .await
        .expect("audit row");
    assert_eq!(
        audit,
        (
            write.audit.id.to_string(),
            partner.id().to_string(),
            "created".to_owned(),
            "req-100".to_owned(),
            "app:tenant/caller-100".to_owned(),
            now().unix_ticks(),
            "created partner 'Contoso Ünïcode Partner'".to_owned(),
        )
    );
    store.close().await;
}

pub async fn insert_partner_returns_duplicate_display_name_and_writes_nothing_for_the_same_name_in_another_case_and_spacing()
 {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let first = rich_partner(1);
    repo.partners
        .insert_partner(&first, &write_for(&first, tenant(), 100))
        .await
        .expect("first insert");
    let before = row_counts(&store).await;
    // Same name once trimmed and lower-cased, and with assignments, so that a partial write
    // would show in every table.
    let mut second = rich_partner(2);
    second = Partner::restore(
        second.id(),
        NewPartner {
            display_name: DisplayName::parse("  CONTOSO üNÏCODE partner ").expect("valid"),
            state: second.state(),
            last_heartbeat: second.last_heartbeat(),
            platforms: second.platforms().clone(),
        },
    );

    let result = repo
        .partners
        .insert_partner(&second, &write_for(&second, tenant(), 200))
        .await;

    match result {
        Err(StoreError::DuplicateDisplayName { display_name }) => {
            assert_eq!(display_name, "CONTOSO üNÏCODE partner");
        }
        other => panic!("expected DuplicateDisplayName, got {other:?}"),
    }
    assert_eq!(row_counts(&store).await, before, "nothing written");
    assert_eq!(before, [1, 23, 1, 1, 1]);
    assert_eq!(
        repo.partners.get_partner(second.id()).await.expect("read"),
        None
    );
    store.close().await;
}

pub async fn the_same_display_name_in_another_tenant_is_accepted() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let first = plain_partner(1, "Contoso", now());
    let second = plain_partner(2, "contoso", now());

    repo.partners
        .insert_partner(&first, &write_for(&first, tenant(), 100))
        .await
        .expect("first tenant");
    repo.partners
        .insert_partner(&second, &write_for(&second, other_tenant(), 200))
        .await
        .expect("other tenant");

    assert_eq!(row_counts(&store).await, [2, 0, 2, 2, 2]);
    store.close().await;
}

pub async fn insert_partner_writes_nothing_when_a_later_step_fails() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let first = plain_partner(1, "Contoso", now());
    let first_write = write_for(&first, tenant(), 100);
    repo.partners
        .insert_partner(&first, &first_write)
        .await
        .expect("first insert");
    // Another name, but the outbox id of the first partner: the partner and assignment
    // inserts succeed, then the outbox insert fails.
    let second = rich_partner(2);
    let mut second_write = write_for(&second, tenant(), 200);
    second_write.delivery.outbox_id = first_write.delivery.outbox_id;

    let result = repo.partners.insert_partner(&second, &second_write).await;

    assert!(
        matches!(result, Err(StoreError::Unexpected(_))),
        "an outbox id collision is no duplicate name: {result:?}"
    );
    assert_eq!(row_counts(&store).await, [1, 0, 1, 1, 1], "nothing written");
    assert_eq!(
        repo.partners.get_partner(second.id()).await.expect("read"),
        None
    );
    store.close().await;
}

pub async fn a_partner_id_collision_is_unexpected_and_not_a_duplicate_display_name() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let first = plain_partner(1, "Contoso", now());
    repo.partners
        .insert_partner(&first, &write_for(&first, tenant(), 100))
        .await
        .expect("first insert");
    let same_id = plain_partner(1, "Fabrikam", now());

    let result = repo
        .partners
        .insert_partner(&same_id, &write_for(&same_id, tenant(), 200))
        .await;

    assert!(
        matches!(result, Err(StoreError::Unexpected(_))),
        "{result:?}"
    );
    assert_eq!(row_counts(&store).await, [1, 0, 1, 1, 1]);
    store.close().await;
}

pub async fn get_partner_round_trips_every_property_exactly() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partner = rich_partner(1);
    repo.partners
        .insert_partner(&partner, &write_for(&partner, tenant(), 100))
        .await
        .expect("insert");

    let read = repo.partners.get_partner(partner.id()).await.expect("read");

    assert_eq!(read.as_ref(), Some(&partner));
    let read = read.expect("present");
    assert_eq!(read.last_heartbeat().subsecond_ticks() % 10, 7);
    let ios: Vec<_> = read
        .platform(Platform::Ios)
        .assignments()
        .iter()
        .map(|a| match a.target().kind() {
            TargetKind::ConfigurationManagerCollection { collection_id } => {
                collection_id.as_str().to_owned()
            }
            other => panic!("unexpected target {other:?}"),
        })
        .collect();
    assert_eq!(ios.first().map(String::as_str), Some("SMS00011"));
    assert_eq!(ios.last().map(String::as_str), Some("SMS00000"));
    store.close().await;
}

pub async fn get_partner_round_trips_extreme_and_sub_microsecond_heartbeats() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let cases = [
        ("the earliest instant", Timestamp::MIN),
        ("the latest instant", Timestamp::MAX),
        (
            "one tick before the epoch",
            Timestamp::from_unix_ticks(-1).expect("in range"),
        ),
        (
            "1900 with seven fractional digits",
            Timestamp::from_unix_ticks(-22_089_887_999_999_993).expect("in range"),
        ),
        (
            "the epoch",
            Timestamp::from_unix_ticks(0).expect("in range"),
        ),
    ];

    for (n, (case, heartbeat)) in (1_u128..).zip(cases) {
        let partner = plain_partner(n, &format!("Partner {n}"), heartbeat);
        repo.partners
            .insert_partner(&partner, &write_for(&partner, tenant(), n * 100))
            .await
            .expect("insert");

        let read = repo.partners.get_partner(partner.id()).await.expect("read");

        assert_eq!(read, Some(partner), "case: {case}");
    }
    store.close().await;
}

pub async fn get_partner_returns_none_for_an_unknown_id() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();

    let read = repo
        .partners
        .get_partner(PartnerId::from_uuid(Uuid::from_u128(42)))
        .await;

    assert!(matches!(read, Ok(None)), "{read:?}");
    store.close().await;
}

pub async fn get_partner_reports_a_stored_row_that_no_longer_parses_as_unexpected() {
    let cases: [(&str, &'static str); 3] = [
        (
            "a group id that is not a GUID",
            "UPDATE partner_assignments SET group_id = 'group-1' WHERE group_id IS NOT NULL",
        ),
        (
            "the same target twice on one platform",
            "UPDATE partner_assignments SET collection_id = 'SMS00000' WHERE platform = 'ios'",
        ),
        (
            "a blank display name",
            "UPDATE partners SET display_name = '   '",
        ),
    ];
    for (case, corruption) in cases {
        let (_dir, store) = open_store().await;
        let repo = store.ports();
        let partner = rich_partner(1);
        repo.partners
            .insert_partner(&partner, &write_for(&partner, tenant(), 100))
            .await
            .expect("insert");
        store
            .query(corruption)
            .execute()
            .await
            .expect("corrupt the row");

        let read = repo.partners.get_partner(partner.id()).await;

        match read {
            Err(StoreError::Unexpected(error)) => {
                let chain = format!("{error:#}");
                assert!(chain.contains("no longer parses"), "case {case}: {chain}");
            }
            other => panic!("case {case}: expected Unexpected, got {other:?}"),
        }
        store.close().await;
    }
}

pub async fn finish_delivery_delivered_records_graph_ids_and_state() {
    let partner = rich_partner(1);
    let (_dir, store, repo, write) = store_with(&partner).await;
    let finish = finish_of(&partner, &write, delivered_as("graph-partner-1"));

    repo.outbox.finish_delivery(&finish).await.expect("finish");

    let outbox = outbox_record(&store, write.delivery.outbox_id).await;
    assert_eq!(outbox.state, "delivered");
    assert_eq!(outbox.graph_id.as_deref(), Some("graph-partner-1"));
    assert_eq!(outbox.lease_owner, None);
    assert_eq!(outbox.lease_expires_at, None);
    assert_eq!(outbox.last_status, Some(201));
    assert_eq!(outbox.last_error_code, None);
    assert_eq!(outbox.attempts, 1);
    assert_eq!(outbox.updated_at, finish.finished_at.unix_ticks());
    assert_eq!(
        partner_graph_id(&store, partner.id()).await.as_deref(),
        Some("graph-partner-1")
    );
    assert_eq!(
        attempt_records(&store, write.delivery.outbox_id).await,
        [StoredDeliveryRow {
            attempt: 1,
            client_request_id: write.delivery.client_request_id.to_string(),
            started_at: now().unix_ticks(),
            finished_at: Some(finish.finished_at.unix_ticks()),
            http_status: Some(201),
            graph_error_code: None,
            graph_request_id: Some("graph-request-1".into()),
            outcome: Some("created".into()),
        }]
    );
    assert_eq!(
        repo.partners.get_partner(partner.id()).await.expect("read"),
        Some(partner),
        "the domain partner is unchanged"
    );
    store.close().await;
}

pub async fn finish_delivery_retry_sets_state_and_next_attempt_at() {
    for state in [WaitingState::Pending, WaitingState::Unknown] {
        let partner = plain_partner(1, "Contoso", now());
        let (_dir, store, repo, write) = store_with(&partner).await;
        let next_attempt_at = Timestamp::from_unix_seconds(1_700_000_130, 1).expect("in range");
        let finish = DeliveryEnd {
            meta: GraphResponseMeta {
                status: Some(503),
                error_code: Some("ServiceUnavailable".into()),
                error_message: Some("try later".into()),
                request_id: Some("graph-request-9".into()),
            },
            outcome: DeliveryOutcome::Unknown,
            ..finish_of(
                &partner,
                &write,
                Transition::Retry {
                    state,
                    next_attempt_at,
                },
            )
        };

        repo.outbox.finish_delivery(&finish).await.expect("finish");

        let case = state.as_str();
        let outbox = outbox_record(&store, write.delivery.outbox_id).await;
        assert_eq!(outbox.state, case);
        assert_eq!(
            outbox.next_attempt_at,
            next_attempt_at.unix_ticks(),
            "{case}"
        );
        assert_eq!(outbox.lease_owner, None, "{case}");
        assert_eq!(outbox.lease_expires_at, None, "{case}");
        assert_eq!(outbox.last_status, Some(503), "{case}");
        assert_eq!(
            outbox.last_error_code.as_deref(),
            Some("ServiceUnavailable"),
            "{case}"
        );
        assert_eq!(outbox.graph_id, None, "{case}");
        assert_eq!(partner_graph_id(&store, partner.id()).await, None, "{case}");
        let attempts = attempt_records(&store, write.delivery.outbox_id).await;
        assert_eq!(attempts.len(), 1, "{case}");
        assert_eq!(attempts[0].http_status, Some(503), "{case}");
        assert_eq!(
            attempts[0].graph_error_code.as_deref(),
            Some("ServiceUnavailable"),
            "{case}"
        );
        assert_eq!(attempts[0].outcome.as_deref(), Some("unknown"), "{case}");
        store.close().await;
    }
}

pub async fn finish_delivery_dead_stores_the_reason_and_clears_the_lease() {
    let partner = plain_partner(1, "Contoso", now());
    let (_dir, store, repo, write) = store_with(&partner).await;
    let finish = DeliveryEnd {
        meta: GraphResponseMeta {
            status: Some(400),
            error_code: Some("BadRequest".into()),
            error_message: Some("invalid property".into()),
            request_id: Some("graph-request-4".into()),
        },
        outcome: DeliveryOutcome::Rejected,
        ..finish_of(
            &partner,
            &write,
            Transition::Dead {
                reason: "Microsoft Graph refused the partner: status 400, code BadRequest".into(),
            },
        )
    };

    repo.outbox.finish_delivery(&finish).await.expect("finish");

    let outbox = outbox_record(&store, write.delivery.outbox_id).await;
    assert_eq!(outbox.state, "dead");
    assert_eq!(outbox.lease_owner, None);
    assert_eq!(outbox.lease_expires_at, None);
    assert_eq!(outbox.last_status, Some(400));
    assert_eq!(outbox.last_error_code.as_deref(), Some("BadRequest"));
    assert_eq!(outbox.next_attempt_at, now().unix_ticks(), "left as it was");
    assert_eq!(outbox.updated_at, finish.finished_at.unix_ticks());
    assert_eq!(outbox.graph_id, None);
    let reason: Option<String> = store
        .query("SELECT dead_reason FROM outbox WHERE id = ?")
        .bind(write.delivery.outbox_id.to_string())
        .fetch_scalar()
        .await
        .expect("dead reason");
    assert_eq!(
        reason.as_deref(),
        Some("Microsoft Graph refused the partner: status 400, code BadRequest")
    );
    assert_eq!(partner_graph_id(&store, partner.id()).await, None);
    let attempts = attempt_records(&store, write.delivery.outbox_id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].http_status, Some(400));
    assert_eq!(attempts[0].outcome.as_deref(), Some("rejected"));
    store.close().await;
}

pub async fn finish_delivery_fails_and_changes_nothing_when_the_outbox_row_does_not_exist() {
    let partner = plain_partner(1, "Contoso", now());
    let (_dir, store, repo, write) = store_with(&partner).await;
    let finish = DeliveryEnd {
        outbox_id: Uuid::from_u128(999),
        ..finish_of(&partner, &write, delivered_as("g"))
    };

    let result = repo.outbox.finish_delivery(&finish).await;

    match result {
        Err(StoreError::Unexpected(error)) => {
            assert!(error.to_string().contains("does not exist"), "{error:#}");
        }
        other => panic!("expected Unexpected, got {other:?}"),
    }
    assert_eq!(partner_graph_id(&store, partner.id()).await, None);
    assert_eq!(
        outbox_record(&store, write.delivery.outbox_id).await.state,
        "in_flight"
    );
    store.close().await;
}

pub async fn finish_delivery_refuses_and_changes_nothing_when_the_attempt_is_not_the_latest() {
    let partner = plain_partner(1, "Contoso", now());
    let (_dir, store, repo, write) = store_with(&partner).await;
    let finish = DeliveryEnd {
        client_request_id: Uuid::from_u128(777),
        ..finish_of(&partner, &write, delivered_as("g"))
    };

    let result = repo.outbox.finish_delivery(&finish).await;

    assert!(
        matches!(result, Err(StoreError::Unexpected(_))),
        "{result:?}"
    );
    let outbox = outbox_record(&store, write.delivery.outbox_id).await;
    assert_eq!(outbox.state, "in_flight", "rolled back");
    assert_eq!(outbox.graph_id, None);
    assert_eq!(
        attempt_records(&store, write.delivery.outbox_id).await[0].finished_at,
        None
    );
    store.close().await;
}

pub async fn finish_delivery_refuses_and_changes_nothing_when_the_row_delivers_another_partner() {
    let partner = plain_partner(1, "Contoso", now());
    let (_dir, store, repo, write) = store_with(&partner).await;
    let other = plain_partner(2, "Fabrikam", now());
    repo.partners
        .insert_partner(&other, &write_for(&other, tenant(), 200))
        .await
        .expect("insert the other partner");
    let finish = DeliveryEnd {
        partner_id: other.id(),
        ..finish_of(&partner, &write, delivered_as("g"))
    };

    let result = repo.outbox.finish_delivery(&finish).await;

    match result {
        Err(StoreError::Unexpected(error)) => {
            assert!(error.to_string().contains("not"), "{error:#}");
        }
        other => panic!("expected Unexpected, got {other:?}"),
    }
    let outbox = outbox_record(&store, write.delivery.outbox_id).await;
    assert_eq!(outbox.state, "in_flight", "nothing changed");
    assert_eq!(outbox.graph_id, None);
    assert_eq!(partner_graph_id(&store, partner.id()).await, None);
    assert_eq!(partner_graph_id(&store, other.id()).await, None);
    assert_eq!(
        attempt_records(&store, write.delivery.outbox_id).await[0].finished_at,
        None
    );
    store.close().await;
}

pub async fn undo_rejected_create_removes_partner_assignments_outbox_and_attempts_but_keeps_both_audit_entries()
 {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let bystander = plain_partner(9, "Fabrikam", now());
    repo.partners
        .insert_partner(&bystander, &write_for(&bystander, tenant(), 900))
        .await
        .expect("insert bystander");
    let partner = rich_partner(1);
    let write = write_for(&partner, tenant(), 100);
    repo.partners
        .insert_partner(&partner, &write)
        .await
        .expect("insert");
    let rejected = AuditEntry {
        id: Uuid::from_u128(555),
        partner_id: partner.id(),
        action: AuditAction::CreateRejectedByGraph,
        request_id: "req-100".into(),
        caller: "app:tenant/caller-100".into(),
        at: now().saturating_add(Duration::from_secs(1)),
        detail: "Microsoft Graph refused the partner: status 400".into(),
    };

    repo.outbox
        .undo_rejected_create(partner.id(), write.delivery.outbox_id, &rejected)
        .await
        .expect("undo");

    assert_eq!(
        repo.partners.get_partner(partner.id()).await.expect("read"),
        None
    );
    assert_eq!(
        row_counts(&store).await,
        [1, 0, 1, 1, 3],
        "only the bystander's rows and the three audit entries remain"
    );
    let actions: Vec<String> = store
        .query("SELECT action FROM audit_log WHERE partner_id = ? ORDER BY at")
        .bind(partner.id().to_string())
        .fetch_scalars()
        .await
        .expect("audit rows");
    assert_eq!(actions, ["created", "create_rejected_by_graph"]);
    assert_eq!(
        repo.partners
            .get_partner(bystander.id())
            .await
            .expect("read"),
        Some(bystander)
    );
    // The name is free again.
    let again = rich_partner(2);
    repo.partners
        .insert_partner(&again, &write_for(&again, tenant(), 200))
        .await
        .expect("the name of an undone create can be used again");
    store.close().await;
}

pub async fn the_schema_refuses_rows_the_domain_cannot_hold() {
    let partner = plain_partner(1, "Contoso", now());
    let (_dir, store, _ports, _write) = store_with(&partner).await;
    let pid = "00000000-0000-0000-0000-000000000001";
    assert_eq!(partner.id().to_string(), pid);
    let cases: [(&str, &'static str); 9] = [
        (
            "a group target without its group id",
            "INSERT INTO partner_assignments (partner_id, platform, position, target_type, \
             filter_type) VALUES ('00000000-0000-0000-0000-000000000001', 'ios', 0, \
             'groupAssignmentTarget', 'none')",
        ),
        (
            "an include filter without a filter id",
            "INSERT INTO partner_assignments (partner_id, platform, position, target_type, \
             filter_type) VALUES ('00000000-0000-0000-0000-000000000001', 'ios', 0, \
             'allDevicesAssignmentTarget', 'include')",
        ),
        (
            "an unknown platform",
            "INSERT INTO partner_assignments (partner_id, platform, position, target_type, \
             filter_type) VALUES ('00000000-0000-0000-0000-000000000001', 'macOS', 0, \
             'allDevicesAssignmentTarget', 'none')",
        ),
        (
            "an assignment of no partner",
            "INSERT INTO partner_assignments (partner_id, platform, position, target_type, \
             filter_type) VALUES ('00000000-0000-0000-0000-0000000000ff', 'ios', 0, \
             'allDevicesAssignmentTarget', 'none')",
        ),
        (
            "an unknown partner state",
            "UPDATE partners SET partner_state = 'Enabled'",
        ),
        (
            "an unknown delivery state",
            "UPDATE outbox SET state = 'sent'",
        ),
        (
            "an in-flight row without a lease",
            "UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL",
        ),
        (
            "a live partner that released its name",
            "UPDATE partners SET name_key = NULL",
        ),
        (
            "an unknown outbox operation",
            "UPDATE outbox SET operation = 'upsert'",
        ),
    ];

    for (case, sql) in cases {
        let result = store.query(sql).execute().await;

        assert!(result.is_err(), "case: {case}");
    }
    assert_eq!(row_counts(&store).await, [1, 0, 1, 1, 1]);
    store.close().await;
}

pub async fn concurrent_creates_all_commit_through_the_single_writer() {
    let (_dir, store) = open_store().await;
    let tasks: Vec<_> = (1_u128..=40)
        .map(|n| {
            let repo = store.ports();
            tokio::spawn(async move {
                let partner = plain_partner(n, &format!("Partner {n}"), now());
                repo.partners
                    .insert_partner(&partner, &write_for(&partner, tenant(), n * 100))
                    .await
            })
        })
        .collect();

    for task in tasks {
        task.await.expect("task").expect("insert");
    }

    assert_eq!(row_counts(&store).await, [40, 0, 40, 40, 40]);
    store.close().await;
}
