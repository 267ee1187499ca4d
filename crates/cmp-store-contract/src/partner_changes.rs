//! Tests of updates and deletes: one per contract sentence of `update_partner` and
//! `delete_partner`, the outbox rules (fold or queue, cancel or tombstone), and the display
//! name a deleted partner keeps reserved until Graph confirms. Each runs on a fresh database
//! file; every instant is passed in.

use cmp_application::query::ListQuery;
use cmp_application::{
    AuditAction, ChangeQueued, ChangedPartner, DeliveryEnd, DeliveryOutcome, DeliveryStart,
    GraphResponseMeta, InGraph, Lease, NewPartnerWrite, PartnerUpdate, Transition, WaitingState,
};
use cmp_domain::{PartnerState, Platform, Timestamp};
use std::time::Duration;
use uuid::Uuid;

use crate::*;
use cmp_domain::PartnerId;

/// `now()` moved by `seconds`.
pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(now().unix_seconds() + seconds, 0).expect("in range")
}

/// Where a partner's create row is left by [`create_in`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateRow {
    /// Attempt 1 still running (the creating request holds the lease).
    InFlight,
    /// Attempt 1 certainly not applied (a 429): back with the dispatcher.
    Pending,
    /// Attempt 1's outcome unknown: to be reconciled.
    Unknown,
    /// Graph holds the partner as `graph-<n>`.
    Delivered,
    /// Given up.
    Dead,
}

/// Stores `partner` (its ids derived from `seed`) and leaves its create row as `row` says.
pub async fn create_in(
    repo: &Ports,
    partner: &Partner,
    seed: u128,
    row: CreateRow,
) -> NewPartnerWrite {
    let write = write_for(partner, tenant(), seed);
    repo.partners
        .insert_partner(partner, &write)
        .await
        .expect("insert");
    let transition = match row {
        CreateRow::InFlight => return write,
        CreateRow::Pending | CreateRow::Unknown => Transition::Retry {
            state: if row == CreateRow::Pending {
                WaitingState::Pending
            } else {
                WaitingState::Unknown
            },
            next_attempt_at: at(30),
        },
        CreateRow::Delivered => Transition::Delivered {
            in_graph: InGraph::Object(format!("graph-{seed}")),
        },
        CreateRow::Dead => Transition::Dead {
            reason: "refused".into(),
        },
    };
    repo.outbox
        .finish_delivery(&DeliveryEnd {
            outbox_id: write.delivery.outbox_id,
            partner_id: partner.id(),
            client_request_id: write.delivery.client_request_id,
            finished_at: at(1),
            meta: GraphResponseMeta::default(),
            outcome: DeliveryOutcome::Unknown,
            transition,
        })
        .await
        .expect("finish attempt 1");
    write
}

/// The outbox columns these tests look at.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Row {
    id: String,
    operation: String,
    natural_key: String,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    lease_owner: Option<String>,
    created_at: i64,
    updated_at: i64,
    first_attempt_at: Option<i64>,
}

/// The partner's outbox rows, oldest first.
pub async fn rows_of(store: &TestStore, partner: &Partner) -> Vec<Row> {
    store
        .query(
            "SELECT id, operation, natural_key, state, attempts, next_attempt_at, lease_owner, \
         created_at, updated_at, first_attempt_at FROM outbox WHERE partner_id = ? \
         ORDER BY created_at, rowid",
        )
        .bind(partner.id().to_string())
        .fetch_all()
        .await
        .expect("outbox rows")
}

/// The audit actions recorded for the partner, in order, with their ids.
pub async fn audit_of(store: &TestStore, partner: &Partner) -> Vec<(String, String)> {
    store
        .query("SELECT id, action FROM audit_log WHERE partner_id = ? ORDER BY at, rowid")
        .bind(partner.id().to_string())
        .fetch_all()
        .await
        .expect("audit rows")
}

/// `partners.name_key`, `graph_id`, `updated_at` and `deleted_at` of the partner.
pub async fn bookkeeping(
    store: &TestStore,
    partner: &Partner,
) -> (Option<String>, Option<String>, i64, Option<i64>) {
    store
        .query("SELECT name_key, graph_id, updated_at, deleted_at FROM partners WHERE id = ?")
        .bind(partner.id().to_string())
        .fetch_one()
        .await
        .expect("partner row")
}

pub fn update_write(partner: &Partner, seed: u128) -> ChangeWrite {
    change_write(partner.id(), tenant(), seed, AuditAction::Updated, at(10))
}

pub fn delete_write(partner: &Partner, seed: u128) -> ChangeWrite {
    change_write(partner.id(), tenant(), seed, AuditAction::Deleted, at(20))
}

pub fn uuid(seed: u128) -> String {
    Uuid::from_u128(seed).to_string()
}

pub async fn listed(repo: &Ports) -> Vec<PartnerId> {
    repo.partners
        .list_partners(tenant(), &ListQuery::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(Partner::id)
        .collect()
}

pub async fn update_partner_folds_into_a_create_never_applied_and_gives_it_the_new_name() {
    for waiting in [CreateRow::Pending] {
        let (_dir, store) = open_store().await;
        let repo = store.ports();
        let before = partner_with(1, "Contoso", PartnerState::Enabled, now(), &[Platform::Ios]);
        let create = create_in(&repo, &before, 100, waiting).await;
        // The whole resource changes: name, state, heartbeat, and 23 assignments in an order
        // that is not sorted.
        let after = rich_partner(1);
        let create_row = rows_of(&store, &before).await.remove(0);

        let queued = repo
            .update_to(&after, &update_write(&after, 200))
            .await
            .expect("update");

        let case = format!("{waiting:?}");
        assert_eq!(queued, ChangeQueued::Folded, "{case}");
        assert_eq!(
            repo.partners.get_partner(after.id()).await.expect("read"),
            Some(after.clone()),
            "{case}"
        );
        assert_eq!(
            rows_of(&store, &after).await,
            [Row {
                natural_key: "contoso ünïcode partner".into(),
                updated_at: at(10).unix_ticks(),
                ..create_row
            }],
            "{case}: no row added; the create carries the new name and nothing else changed"
        );
        assert_eq!(
            create.delivery.outbox_id.to_string(),
            rows_of(&store, &after).await[0].id
        );
        assert_eq!(row_counts(&store).await, [1, 23, 1, 1, 2], "{case}");
        assert_eq!(
            audit_of(&store, &after).await,
            [
                (uuid(103), "created".to_owned()),
                (uuid(203), "updated".to_owned())
            ],
            "{case}"
        );
        let (name_key, _, updated_at, deleted_at) = bookkeeping(&store, &after).await;
        assert_eq!(
            name_key.as_deref(),
            Some("contoso ünïcode partner"),
            "{case}"
        );
        assert_eq!(updated_at, at(10).unix_ticks(), "{case}");
        assert_eq!(deleted_at, None, "{case}");
        store.close().await;
    }
}

pub async fn update_partner_queues_an_update_row_when_the_create_may_have_reached_graph() {
    // An unknown create may have reached Graph with the old version, which reconciliation
    // adopts as it is: the change must follow as an update of its own.
    for create_row in [
        CreateRow::Unknown,
        CreateRow::InFlight,
        CreateRow::Delivered,
        CreateRow::Dead,
    ] {
        let (_dir, store) = open_store().await;
        let repo = store.ports();
        let before = rich_partner(1);
        create_in(&repo, &before, 100, create_row).await;
        let create = rows_of(&store, &before).await.remove(0);
        let after = renamed(&before, "Renamed");

        let queued = repo
            .update_to(&after, &update_write(&after, 200))
            .await
            .expect("update");

        let case = format!("{create_row:?}");
        assert_eq!(queued, ChangeQueued::Queued, "{case}");
        assert_eq!(
            rows_of(&store, &after).await,
            [
                create,
                Row {
                    id: uuid(201),
                    operation: "update".into(),
                    natural_key: "renamed".into(),
                    state: "pending".into(),
                    attempts: 0,
                    next_attempt_at: at(10).unix_ticks(),
                    lease_owner: None,
                    created_at: at(10).unix_ticks(),
                    updated_at: at(10).unix_ticks(),
                    first_attempt_at: None,
                }
            ],
            "{case}: the create row is untouched; the update is due at once"
        );
        assert_eq!(
            repo.partners.get_partner(after.id()).await.expect("read"),
            Some(after.clone()),
            "{case}: assignments rewritten in order"
        );
        assert_eq!(row_counts(&store).await, [1, 23, 2, 1, 2], "{case}");
        store.close().await;
    }
}

pub async fn a_second_update_queues_another_row_rather_than_folding_into_the_first() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partner = plain_partner(1, "Contoso", now());
    create_in(&repo, &partner, 100, CreateRow::Delivered).await;

    let first = repo
        .update_to(
            &renamed(&partner, "Contoso 2"),
            &update_write(&partner, 200),
        )
        .await
        .expect("first update");
    let second = repo
        .update_to(
            &renamed(&partner, "Contoso 3"),
            &update_write(&partner, 300),
        )
        .await
        .expect("second update");

    assert_eq!(
        (first, second),
        (ChangeQueued::Queued, ChangeQueued::Queued)
    );
    let rows = rows_of(&store, &partner).await;
    assert_eq!(
        rows.iter()
            .map(|row| (row.operation.as_str(), row.natural_key.as_str()))
            .collect::<Vec<_>>(),
        [
            ("create", "contoso"),
            ("update", "contoso 2"),
            ("update", "contoso 3")
        ]
    );
    store.close().await;
}

pub async fn update_partner_returns_duplicate_display_name_and_writes_nothing() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let contoso = rich_partner(1);
    create_in(&repo, &contoso, 100, CreateRow::Delivered).await;
    let fabrikam = plain_partner(2, "Fabrikam", now());
    create_in(&repo, &fabrikam, 200, CreateRow::Delivered).await;
    // Deleted, its delete not yet confirmed by Graph: the name is still taken.
    let northwind = plain_partner(3, "Northwind", now());
    create_in(&repo, &northwind, 300, CreateRow::Delivered).await;
    repo.partners
        .delete_partner(northwind.id(), &delete_write(&northwind, 400))
        .await
        .expect("delete");
    let counts = row_counts(&store).await;
    let rows = rows_of(&store, &contoso).await;
    let cases = [
        ("a live partner's name in another case", "FABRIKAM"),
        ("a deleted partner's reserved name", "northwind"),
    ];

    for (case, name) in cases {
        let result = repo
            .update_to(&renamed(&contoso, name), &update_write(&contoso, 500))
            .await;

        match result {
            Err(StoreError::DuplicateDisplayName { display_name }) => {
                assert_eq!(display_name, name, "case {case}");
            }
            other => panic!("case {case}: expected DuplicateDisplayName, got {other:?}"),
        }
        assert_eq!(
            row_counts(&store).await,
            counts,
            "case {case}: nothing written"
        );
        assert_eq!(rows_of(&store, &contoso).await, rows, "case {case}");
        assert_eq!(
            repo.partners.get_partner(contoso.id()).await.expect("read"),
            Some(contoso.clone()),
            "case {case}: the partner and its assignments are unchanged"
        );
    }
    store.close().await;
}

pub async fn update_partner_may_keep_its_own_name_in_another_case() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partner = plain_partner(1, "Contoso", now());
    create_in(&repo, &partner, 100, CreateRow::Delivered).await;
    let shouting = renamed(&partner, "CONTOSO");

    repo.update_to(&shouting, &update_write(&shouting, 200))
        .await
        .expect("its own name is no duplicate");

    assert_eq!(
        repo.partners.get_partner(partner.id()).await.expect("read"),
        Some(shouting)
    );
    store.close().await;
}

pub async fn update_partner_returns_not_found_and_writes_nothing_for_a_missing_deleted_or_foreign_partner()
 {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let deleted = plain_partner(1, "Deleted", now());
    create_in(&repo, &deleted, 100, CreateRow::Delivered).await;
    repo.partners
        .delete_partner(deleted.id(), &delete_write(&deleted, 200))
        .await
        .expect("delete");
    let foreign = plain_partner(2, "Foreign", now());
    create_in(&repo, &foreign, 300, CreateRow::Delivered).await;
    let counts = row_counts(&store).await;
    let cases = [
        (
            "no such partner",
            plain_partner(9, "Missing", now()),
            tenant(),
        ),
        (
            "a deleted partner",
            renamed(&deleted, "Deleted 2"),
            tenant(),
        ),
        (
            "a partner of another tenant",
            renamed(&foreign, "Foreign 2"),
            other_tenant(),
        ),
    ];

    for (case, partner, tenant) in cases {
        let write = change_write(partner.id(), tenant, 400, AuditAction::Updated, at(10));

        let result = repo.update_to(&partner, &write).await;

        assert!(
            matches!(result, Err(StoreError::NotFound)),
            "case {case}: {result:?}"
        );
        assert_eq!(
            row_counts(&store).await,
            counts,
            "case {case}: nothing written"
        );
    }
    store.close().await;
}

pub async fn delete_partner_removes_a_partner_that_never_reached_graph_with_all_its_rows() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partner = rich_partner(1);
    // Attempt 1 was certainly not applied (back to pending with its attempt recorded).
    create_in(&repo, &partner, 100, CreateRow::Pending).await;

    let queued = repo
        .partners
        .delete_partner(partner.id(), &delete_write(&partner, 200))
        .await
        .expect("delete");

    assert_eq!(queued, ChangeQueued::Folded);
    assert_eq!(
        row_counts(&store).await,
        [0, 0, 0, 0, 2],
        "partner, assignments, outbox row and attempt gone; both audit entries kept"
    );
    assert_eq!(
        audit_of(&store, &partner).await,
        [
            (uuid(103), "created".to_owned()),
            (uuid(203), "deleted".to_owned())
        ]
    );
    let again = rich_partner(2);
    repo.partners
        .insert_partner(&again, &write_for(&again, tenant(), 300))
        .await
        .expect("the name is free at once");
    store.close().await;
}

pub async fn delete_partner_also_cancels_the_rows_queued_behind_a_create_that_never_reached_graph()
{
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partner = plain_partner(1, "Contoso", now());
    let create = write_for(&partner, tenant(), 100);
    repo.partners
        .insert_partner(&partner, &create)
        .await
        .expect("insert");
    // Updated while attempt 1 ran (so an update row was queued), then attempt 1 turned out
    // not applied.
    let updated = renamed(&partner, "Contoso 2");
    assert_eq!(
        repo.update_to(&updated, &update_write(&partner, 200))
            .await
            .expect("update"),
        ChangeQueued::Queued
    );
    repo.outbox
        .finish_delivery(&DeliveryEnd {
            outbox_id: create.delivery.outbox_id,
            partner_id: partner.id(),
            client_request_id: create.delivery.client_request_id,
            finished_at: at(15),
            meta: GraphResponseMeta {
                status: Some(429),
                ..GraphResponseMeta::default()
            },
            outcome: DeliveryOutcome::NotApplied,
            transition: Transition::Retry {
                state: WaitingState::Pending,
                next_attempt_at: at(60),
            },
        })
        .await
        .expect("finish");

    let queued = repo
        .partners
        .delete_partner(partner.id(), &delete_write(&partner, 300))
        .await
        .expect("delete");

    assert_eq!(queued, ChangeQueued::Folded);
    assert_eq!(row_counts(&store).await, [0, 0, 0, 0, 3]);
    store.close().await;
}

pub async fn delete_partner_marks_the_partner_deleted_and_queues_a_delete_row_when_graph_may_hold_it()
 {
    for create_row in [
        CreateRow::InFlight,
        CreateRow::Unknown,
        CreateRow::Delivered,
        CreateRow::Dead,
    ] {
        let (_dir, store) = open_store().await;
        let repo = store.ports();
        let partner = rich_partner(1);
        create_in(&repo, &partner, 100, create_row).await;
        let bystander = plain_partner(2, "Bystander", now());
        create_in(&repo, &bystander, 200, CreateRow::Delivered).await;
        let create = rows_of(&store, &partner).await.remove(0);

        let queued = repo
            .partners
            .delete_partner(partner.id(), &delete_write(&partner, 300))
            .await
            .expect("delete");

        let case = format!("{create_row:?}");
        assert_eq!(queued, ChangeQueued::Queued, "{case}");
        assert_eq!(
            rows_of(&store, &partner).await,
            [
                create,
                Row {
                    id: uuid(301),
                    operation: "delete".into(),
                    natural_key: "contoso ünïcode partner".into(),
                    state: "pending".into(),
                    attempts: 0,
                    next_attempt_at: at(20).unix_ticks(),
                    lease_owner: None,
                    created_at: at(20).unix_ticks(),
                    updated_at: at(20).unix_ticks(),
                    first_attempt_at: None,
                }
            ],
            "{case}"
        );
        let (name_key, _, updated_at, deleted_at) = bookkeeping(&store, &partner).await;
        assert_eq!(deleted_at, Some(at(20).unix_ticks()), "{case}");
        assert_eq!(updated_at, at(20).unix_ticks(), "{case}");
        assert_eq!(
            name_key.as_deref(),
            Some("contoso ünïcode partner"),
            "{case}: still reserved"
        );
        assert_eq!(
            row_counts(&store).await[..2],
            [2, 23],
            "{case}: the tombstone stays whole"
        );
        assert_eq!(
            repo.partners.get_partner(partner.id()).await.expect("read"),
            None,
            "{case}: gone for readers"
        );
        assert_eq!(listed(&repo).await, [bystander.id()], "{case}");
        assert_eq!(
            repo.partners
                .count_partners(tenant(), None)
                .await
                .expect("count"),
            1,
            "{case}"
        );
        assert_eq!(
            audit_of(&store, &partner).await.last(),
            Some(&(uuid(303), "deleted".to_owned())),
            "{case}"
        );
        store.close().await;
    }
}

pub async fn delete_partner_returns_not_found_and_writes_nothing_for_a_missing_deleted_or_foreign_partner()
 {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let deleted = plain_partner(1, "Deleted", now());
    create_in(&repo, &deleted, 100, CreateRow::Delivered).await;
    repo.partners
        .delete_partner(deleted.id(), &delete_write(&deleted, 200))
        .await
        .expect("delete");
    let foreign = plain_partner(2, "Foreign", now());
    create_in(&repo, &foreign, 300, CreateRow::Delivered).await;
    let counts = row_counts(&store).await;
    let cases = [
        (
            "no such partner",
            PartnerId::from_uuid(Uuid::from_u128(9)),
            tenant(),
        ),
        ("an already deleted partner", deleted.id(), tenant()),
        ("a partner of another tenant", foreign.id(), other_tenant()),
    ];

    for (case, id, tenant) in cases {
        let write = change_write(id, tenant, 400, AuditAction::Deleted, at(20));

        let result = repo.partners.delete_partner(id, &write).await;

        assert!(
            matches!(result, Err(StoreError::NotFound)),
            "case {case}: {result:?}"
        );
        assert_eq!(
            row_counts(&store).await,
            counts,
            "case {case}: nothing written"
        );
    }
    store.close().await;
}

/// Claims the partner's due row as `dispatcher:a` at `when`, starts its attempt and finishes it
/// with `transition`.
pub async fn attempt(repo: &Ports, partner: &Partner, when: Timestamp, transition: Transition) {
    let claimed = repo
        .outbox
        .claim_due(
            tenant(),
            when,
            &dispatcher_a(),
            when.saturating_add(Duration::from_secs(160)),
            10,
        )
        .await
        .expect("claim");
    let [row] = claimed.as_slice() else {
        panic!("expected one row, got {claimed:?}");
    };
    assert_eq!(row.partner.id(), partner.id());
    let client_request_id = Uuid::from_u128(u128::from(row.attempts) + 0xc000);
    repo.outbox
        .start_delivery(&DeliveryStart {
            outbox_id: row.outbox_id,
            attempt: row.attempts + 1,
            client_request_id,
            started_at: when,
            lease: Lease {
                owner: dispatcher_a(),
                expires_at: when.saturating_add(Duration::from_secs(160)),
            },
        })
        .await
        .expect("start");
    repo.outbox
        .finish_delivery(&DeliveryEnd {
            outbox_id: row.outbox_id,
            partner_id: partner.id(),
            client_request_id,
            finished_at: when.saturating_add(Duration::from_secs(1)),
            meta: GraphResponseMeta {
                status: Some(204),
                request_id: Some("graph-request-9".into()),
                ..GraphResponseMeta::default()
            },
            outcome: DeliveryOutcome::Applied,
            transition,
        })
        .await
        .expect("finish");
}

pub async fn a_deleted_partner_keeps_its_name_reserved_until_graph_confirms_the_delete() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partner = plain_partner(1, "Contoso", now());
    create_in(&repo, &partner, 100, CreateRow::Delivered).await;
    repo.partners
        .delete_partner(partner.id(), &delete_write(&partner, 200))
        .await
        .expect("delete");
    let successor = plain_partner(2, "CONTOSO", now());
    let other = plain_partner(3, "Other", now());
    create_in(&repo, &other, 300, CreateRow::Delivered).await;

    let while_pending = repo
        .partners
        .insert_partner(&successor, &write_for(&successor, tenant(), 400))
        .await;
    let rename_onto_it = repo
        .update_to(&renamed(&other, "contoso"), &update_write(&other, 500))
        .await;
    // A failed attempt (Graph unavailable) does not release it either.
    attempt(
        &repo,
        &partner,
        at(30),
        Transition::Retry {
            state: WaitingState::Pending,
            next_attempt_at: at(40),
        },
    )
    .await;
    let after_a_retry = repo
        .partners
        .insert_partner(&successor, &write_for(&successor, tenant(), 600))
        .await;
    attempt(&repo, &partner, at(50), delivered_as("graph-100")).await;

    for (case, result) in [
        ("a create while the delete waits", while_pending.err()),
        ("a rename while the delete waits", rename_onto_it.err()),
        ("a create after a failed attempt", after_a_retry.err()),
    ] {
        assert!(
            matches!(result, Some(StoreError::DuplicateDisplayName { .. })),
            "case {case}: {result:?}"
        );
    }
    let (name_key, graph_id, updated_at, deleted_at) = bookkeeping(&store, &partner).await;
    assert_eq!(name_key, None, "released");
    assert_eq!(graph_id.as_deref(), Some("graph-100"));
    assert_eq!(updated_at, at(51).unix_ticks());
    assert_eq!(deleted_at, Some(at(20).unix_ticks()), "still a tombstone");
    let confirmed: (String, String, String, String, i64, String) = store
        .query("SELECT id, action, request_id, caller, at, detail FROM audit_log WHERE action = ?")
        .bind(AuditAction::DeletedInGraph.as_str())
        .fetch_one()
        .await
        .expect("the confirmation is audited");
    assert_eq!(
        (
            &confirmed.0,
            &confirmed.1,
            &confirmed.2,
            &confirmed.3,
            confirmed.4
        ),
        (
            &uuid(201),
            &"deleted_in_graph".to_owned(),
            &String::new(),
            &"dispatcher".to_owned(),
            at(51).unix_ticks()
        )
    );
    assert!(confirmed.5.contains("graph-request-9"), "{}", confirmed.5);
    assert!(
        confirmed.5.contains("'Contoso' is free again"),
        "{}",
        confirmed.5
    );
    repo.partners
        .insert_partner(&successor, &write_for(&successor, tenant(), 700))
        .await
        .expect("the name is free once Graph confirmed");
    assert_eq!(
        repo.partners.get_partner(partner.id()).await.expect("read"),
        None
    );
    assert_eq!(
        repo.partners
            .get_partner(successor.id())
            .await
            .expect("read"),
        Some(successor)
    );
    store.close().await;
}

pub async fn confirming_the_delete_of_a_partner_graph_never_held_keeps_the_tombstones_graph_id() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partner = plain_partner(1, "Contoso", now());
    create_in(&repo, &partner, 100, CreateRow::Dead).await;
    repo.partners
        .delete_partner(partner.id(), &delete_write(&partner, 200))
        .await
        .expect("delete");

    // The dispatcher found nothing of that name in Graph: delivered with nothing in Graph.
    attempt(
        &repo,
        &partner,
        at(30),
        Transition::Delivered {
            in_graph: InGraph::Nothing,
        },
    )
    .await;

    let (name_key, graph_id, _, _) = bookkeeping(&store, &partner).await;
    assert_eq!((name_key, graph_id), (None, None));
    store.close().await;
}

pub async fn undo_rejected_create_also_removes_the_rows_queued_behind_the_refused_create() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partner = rich_partner(1);
    let create = write_for(&partner, tenant(), 100);
    repo.partners
        .insert_partner(&partner, &create)
        .await
        .expect("insert");
    // While attempt 1 runs, the caller updates and then deletes the partner.
    repo.update_to(&renamed(&partner, "Renamed"), &update_write(&partner, 200))
        .await
        .expect("update");
    repo.partners
        .delete_partner(partner.id(), &delete_write(&partner, 300))
        .await
        .expect("delete");
    assert_eq!(row_counts(&store).await, [1, 23, 3, 1, 3]);

    repo.outbox
        .undo_rejected_create(
            partner.id(),
            create.delivery.outbox_id,
            &change_write(
                partner.id(),
                tenant(),
                400,
                AuditAction::CreateRejectedByGraph,
                at(30),
            )
            .audit,
        )
        .await
        .expect("undo");

    assert_eq!(row_counts(&store).await, [0, 0, 0, 0, 4]);
    store.close().await;
}

pub async fn update_partner_applies_the_change_to_the_partner_as_stored_when_the_write_runs() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let stored = rich_partner(1);
    create_in(&repo, &stored, 100, CreateRow::Delivered).await;
    let write = update_write(&stored, 200);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let recorded = seen.clone();
    let update = PartnerUpdate {
        tenant_id: write.tenant_id,
        outbox_id: write.outbox_id,
        now: write.now,
        change: Box::new(move |current: &Partner| {
            *recorded.lock().expect("no panic while recording") = Some(current.clone());
            Ok(ChangedPartner {
                partner: renamed(current, "Renamed In The Writer"),
                audit: write.audit,
            })
        }),
    };

    let updated = repo
        .partners
        .update_partner(stored.id(), update)
        .await
        .expect("update");

    assert_eq!(
        seen.lock().expect("no panic while recording").as_ref(),
        Some(&stored),
        "the change saw the stored partner"
    );
    assert_eq!(updated.partner, renamed(&stored, "Renamed In The Writer"));
    assert_eq!(
        repo.partners.get_partner(stored.id()).await.expect("read"),
        Some(updated.partner)
    );
    store.close().await;
}

pub async fn update_partner_writes_nothing_when_the_change_refuses_the_stored_partner() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let stored = rich_partner(1);
    create_in(&repo, &stored, 100, CreateRow::Delivered).await;
    let counts = row_counts(&store).await;
    let write = update_write(&stored, 200);
    let refusal = cmp_domain::PartnerError::HeartbeatInFuture {
        heartbeat: now(),
        latest_allowed: now(),
    };
    let refused = refusal.clone();
    let update = PartnerUpdate {
        tenant_id: write.tenant_id,
        outbox_id: write.outbox_id,
        now: write.now,
        change: Box::new(move |_: &Partner| Err(refused)),
    };

    let result = repo.partners.update_partner(stored.id(), update).await;

    assert!(
        matches!(&result, Err(StoreError::Invalid(error)) if *error == refusal),
        "{result:?}"
    );
    assert_eq!(row_counts(&store).await, counts, "nothing written");
    assert_eq!(
        repo.partners.get_partner(stored.id()).await.expect("read"),
        Some(stored)
    );
    store.close().await;
}
