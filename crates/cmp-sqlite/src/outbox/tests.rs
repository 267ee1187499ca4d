//! Tests of [`SqliteOutbox`]: one per contract sentence in the port's doc
//! comments, plus the schema rules the transitions must keep, each on a fresh database file in
//! a temporary directory. Every instant is passed in; nothing reads the clock or sleeps.

use std::collections::HashSet;
use std::time::Duration;

use cmp_application::{
    AuditAction, AuditEntry, ChangeQueued, DeliveryEnd, DeliveryOutcome, DeliveryRecord,
    DeliveryStart, GraphResponseMeta, InGraph, Lease, LeaseOwner, NewPartnerWrite, Operation,
    Outbox, OutboxRecord, OutboxState, PartnerStore, Transition, WaitingState,
};
use cmp_domain::{NaturalKey, Partner, PartnerId, TenantId, Timestamp};
use tempfile::TempDir;

use uuid::Uuid;

use super::*;
use crate::SqliteStore;
use crate::test_support::Ports;
use crate::test_support::{
    change_write, delivered_as, dispatcher_a, now, open_store, other_tenant, plain_partner,
    renamed, rich_partner, settings, side_connection, tenant, write_for,
};

/// `now()` moved by `seconds`.
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(now().unix_seconds() + seconds, 0).expect("in range")
}

/// A partner created at `created_at` in `tenant` whose outbox row is still in flight, leased
/// to its request for 160 s, with attempt 1 started. Ids derive from `n`.
struct Created {
    partner: Partner,
    write: NewPartnerWrite,
}

impl Created {
    fn outbox_id(&self) -> Uuid {
        self.write.delivery.outbox_id
    }
}

async fn create(repo: &Ports, n: u128, tenant: TenantId, created_at: Timestamp) -> Created {
    let partner = plain_partner(n, &format!("Partner {n}"), now());
    let base = write_for(&partner, tenant, n * 100);
    let mut delivery = base.delivery.clone();
    delivery.lease.expires_at = created_at.saturating_add(Duration::from_secs(160));
    let write = NewPartnerWrite {
        now: created_at,
        delivery,
        audit: AuditEntry {
            at: created_at,
            ..base.audit.clone()
        },
        ..base
    };
    repo.partners
        .insert_partner(&partner, &write)
        .await
        .expect("insert partner");
    Created { partner, write }
}

/// Ends attempt 1 of `created` (the inline one) with `transition`, one second after it began.
async fn finish_first(repo: &Ports, created: &Created, transition: Transition) {
    repo.outbox
        .finish_delivery(&DeliveryEnd {
            outbox_id: created.outbox_id(),
            partner_id: created.partner.id(),
            client_request_id: created.write.delivery.client_request_id,
            finished_at: created.write.now.saturating_add(Duration::from_secs(1)),
            meta: GraphResponseMeta {
                status: Some(503),
                error_code: Some("ServiceUnavailable".into()),
                error_message: None,
                request_id: Some("graph-request-1".into()),
            },
            outcome: DeliveryOutcome::Unknown,
            transition,
        })
        .await
        .expect("finish attempt 1");
}

/// A partner whose row waits for the dispatcher in `state` (`pending` or `unknown`), due at
/// `next_attempt_at`.
async fn queued(
    repo: &Ports,
    n: u128,
    tenant: TenantId,
    created_at: Timestamp,
    state: WaitingState,
    next_attempt_at: Timestamp,
) -> Created {
    let created = create(repo, n, tenant, created_at).await;
    finish_first(
        repo,
        &created,
        Transition::Retry {
            state,
            next_attempt_at,
        },
    )
    .await;
    created
}

/// A further `update` row of `created`'s partner under `natural_key`, written directly so that
/// its times can be chosen (`update_partner` queues at its own "now"): `pending`, no attempt
/// made, due at `next_attempt_at`.
async fn insert_pending_row(
    store: &SqliteStore,
    outbox_id: Uuid,
    created: &Created,
    natural_key: &str,
    next_attempt_at: Timestamp,
    created_at: Timestamp,
) {
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, partner_id, operation, natural_key, state, attempts, \
         next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, ?, 'update', ?, 'pending', 0, ?, ?, ?)",
    )
    .bind(outbox_id.hyphenated().to_string())
    .bind(created.write.tenant_id.to_string())
    .bind(created.partner.id().to_string())
    .bind(natural_key)
    .bind(next_attempt_at.unix_ticks())
    .bind(created_at.unix_ticks())
    .bind(created_at.unix_ticks())
    .execute(&mut side_connection(store).await)
    .await
    .expect("insert an extra outbox row");
}

/// The outbox columns the queue moves.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct QueueRecord {
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    last_status: Option<i64>,
    last_error_code: Option<String>,
    last_client_request_id: Option<String>,
    dead_reason: Option<String>,
    updated_at: i64,
    first_attempt_at: Option<i64>,
}

async fn record(store: &SqliteStore, outbox_id: Uuid) -> QueueRecord {
    sqlx::query_as(
        "SELECT state, attempts, next_attempt_at, lease_owner, lease_expires_at, last_status, \
         last_error_code, last_client_request_id, dead_reason, updated_at, first_attempt_at \
         FROM outbox WHERE id = ?",
    )
    .bind(outbox_id.hyphenated().to_string())
    .fetch_one(&store.connections.reader)
    .await
    .expect("outbox row")
}

async fn attempt_count(store: &SqliteStore, outbox_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE outbox_id = ?")
        .bind(outbox_id.hyphenated().to_string())
        .fetch_one(&store.connections.reader)
        .await
        .expect("count attempts")
}

fn ids(claimed: &[ClaimedRow]) -> Vec<Uuid> {
    claimed.iter().map(|c| c.outbox_id).collect()
}

/// Claims for `tenant()` at `now()`, leased to `dispatcher:a` for 160 s.
async fn claim(repo: &Ports, limit: u32) -> Vec<ClaimedRow> {
    claim_at(repo, now(), limit).await
}

/// Claims for `tenant()` at `when`, leased to `dispatcher:a` for 160 s.
async fn claim_at(repo: &Ports, when: Timestamp, limit: u32) -> Vec<ClaimedRow> {
    repo.outbox
        .claim_due(
            tenant(),
            when,
            &dispatcher_a(),
            when.saturating_add(Duration::from_secs(160)),
            limit,
        )
        .await
        .expect("claim")
}

#[tokio::test]
async fn recover_expired_leases_turns_only_lapsed_in_flight_rows_unknown_and_due_at_once() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    // Leased until at(-100) + 160 s = at(60): lapsed at at(60), the boundary.
    let lapsed = create(&repo, 1, tenant(), at(-100)).await;
    // Leased until at(160): still held.
    let held = create(&repo, 2, tenant(), now()).await;
    let pending = queued(&repo, 3, tenant(), at(-300), WaitingState::Pending, at(-10)).await;
    let dead = create(&repo, 4, other_tenant(), at(-300)).await;
    finish_first(
        &repo,
        &dead,
        Transition::Dead {
            reason: "given up".into(),
        },
    )
    .await;
    let untouched = [
        record(&store, held.outbox_id()).await,
        record(&store, pending.outbox_id()).await,
        record(&store, dead.outbox_id()).await,
    ];

    let recovered = repo
        .outbox
        .recover_expired_leases(at(60))
        .await
        .expect("recover");

    assert_eq!(recovered, 1);
    let row = record(&store, lapsed.outbox_id()).await;
    assert_eq!(row.state, "unknown", "unknown, never pending");
    assert_eq!(row.next_attempt_at, at(60).unix_ticks(), "due at once");
    assert_eq!(row.lease_owner, None);
    assert_eq!(row.lease_expires_at, None);
    assert_eq!(row.updated_at, at(60).unix_ticks());
    assert_eq!(row.attempts, 1, "the attempt stays counted");
    assert_eq!(
        [
            record(&store, held.outbox_id()).await,
            record(&store, pending.outbox_id()).await,
            record(&store, dead.outbox_id()).await,
        ],
        untouched,
        "an unlapsed lease and rows in other states are left alone"
    );
    assert_eq!(
        repo.outbox
            .recover_expired_leases(at(60))
            .await
            .expect("again"),
        0,
        "nothing left to recover"
    );
    store.close().await;
}

#[tokio::test]
async fn claim_due_takes_due_pending_and_unknown_rows_oldest_due_first_up_to_the_limit() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    // Written in another order than they fall due.
    let third = queued(&repo, 1, tenant(), at(-900), WaitingState::Pending, at(-10)).await;
    let first = queued(&repo, 2, tenant(), at(-800), WaitingState::Pending, at(-30)).await;
    let second = queued(&repo, 3, tenant(), at(-700), WaitingState::Unknown, at(-20)).await;

    let claimed = claim(&repo, 2).await;

    assert_eq!(ids(&claimed), [first.outbox_id(), second.outbox_id()]);
    assert_eq!(
        claimed.iter().map(|c| c.previous_state).collect::<Vec<_>>(),
        [WaitingState::Pending, WaitingState::Unknown],
        "previous_state says send or reconcile"
    );
    assert_eq!(record(&store, third.outbox_id()).await.state, "pending");
    assert_eq!(
        ids(&claim(&repo, 10).await),
        [third.outbox_id()],
        "the rest on the next claim"
    );
    store.close().await;
}

#[tokio::test]
async fn claim_due_returns_the_partner_as_stored_with_the_rows_bookkeeping() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partner = rich_partner(1);
    let mut write = write_for(&partner, tenant(), 100);
    write.now = at(-600);
    write.delivery.lease.expires_at = at(-440);
    repo.partners
        .insert_partner(&partner, &write)
        .await
        .expect("insert");
    let created = Created {
        partner: partner.clone(),
        write,
    };
    finish_first(
        &repo,
        &created,
        Transition::Retry {
            state: WaitingState::Unknown,
            next_attempt_at: at(-5),
        },
    )
    .await;

    let claimed = claim(&repo, 10).await;

    assert_eq!(
        claimed,
        [ClaimedRow {
            outbox_id: created.outbox_id(),
            operation: Operation::Create,
            in_graph: None,
            partner_deleted: false,
            partner,
            natural_key: NaturalKey::fold("contoso ünïcode partner"),
            previous_state: WaitingState::Unknown,
            attempts: 1,
            attempts_in_window: 1,
            first_attempt_at: Some(at(-600)),
            created_at: at(-600),
            due_at: at(-5),
        }]
    );
    store.close().await;
}

#[tokio::test]
async fn claim_due_breaks_a_tie_in_due_time_by_creation_time() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    // Inserted first, but written later.
    let younger = queued(&repo, 1, tenant(), at(-100), WaitingState::Pending, at(-10)).await;
    let older = queued(&repo, 2, tenant(), at(-200), WaitingState::Pending, at(-10)).await;

    let claimed = claim(&repo, 1).await;

    assert_eq!(ids(&claimed), [older.outbox_id()]);
    assert_eq!(ids(&claim(&repo, 1).await), [younger.outbox_id()]);
    store.close().await;
}

#[tokio::test]
async fn claim_due_skips_rows_not_yet_due() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let due_now = queued(&repo, 1, tenant(), at(-100), WaitingState::Pending, now()).await;
    let later = queued(
        &repo,
        2,
        tenant(),
        at(-100),
        WaitingState::Unknown,
        now().saturating_add(Duration::from_millis(1)),
    )
    .await;

    let claimed = claim(&repo, 10).await;

    assert_eq!(ids(&claimed), [due_now.outbox_id()], "due at now is due");
    let row = record(&store, later.outbox_id()).await;
    assert_eq!(row.state, "unknown");
    assert_eq!(row.lease_owner, None);
    store.close().await;
}

#[tokio::test]
async fn claim_due_skips_rows_of_other_tenants() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let ours = queued(&repo, 1, tenant(), at(-100), WaitingState::Pending, at(-10)).await;
    let theirs = queued(
        &repo,
        2,
        other_tenant(),
        at(-200),
        WaitingState::Pending,
        at(-20),
    )
    .await;

    let claimed = claim(&repo, 10).await;

    assert_eq!(ids(&claimed), [ours.outbox_id()]);
    assert_eq!(record(&store, theirs.outbox_id()).await.state, "pending");
    store.close().await;
}

#[tokio::test]
async fn claim_due_never_takes_rows_in_flight_delivered_or_dead() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let in_flight = create(&repo, 1, tenant(), at(-100)).await;
    let delivered = create(&repo, 2, tenant(), at(-100)).await;
    finish_first(&repo, &delivered, delivered_as("graph-2")).await;
    let dead = create(&repo, 3, tenant(), at(-100)).await;
    finish_first(
        &repo,
        &dead,
        Transition::Dead {
            reason: "refused".into(),
        },
    )
    .await;
    let before = [
        record(&store, in_flight.outbox_id()).await,
        record(&store, delivered.outbox_id()).await,
        record(&store, dead.outbox_id()).await,
    ];

    let claimed = claim(&repo, 10).await;

    assert_eq!(claimed, []);
    assert_eq!(
        [
            record(&store, in_flight.outbox_id()).await,
            record(&store, delivered.outbox_id()).await,
            record(&store, dead.outbox_id()).await,
        ],
        before
    );
    store.close().await;
}

#[tokio::test]
async fn claim_due_never_claims_a_natural_key_that_has_a_row_in_flight() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    // The create of "Partner 1" is in flight (its request is still attempting it). Another
    // partner, whose create is done, has an older waiting row under the same key (a rename
    // that used to hold the name, say): older, but the key is busy.
    let other = create(&repo, 3, tenant(), at(-300)).await;
    finish_first(&repo, &other, delivered_as("graph-3")).await;
    let created = create(&repo, 1, tenant(), at(-100)).await;
    let same_key = Uuid::from_u128(0xbeef);
    insert_pending_row(&store, same_key, &other, "partner 1", at(-250), at(-250)).await;
    let bystander = queued(&repo, 2, tenant(), at(-100), WaitingState::Pending, at(-10)).await;

    let claimed = claim(&repo, 10).await;

    assert_eq!(ids(&claimed), [bystander.outbox_id()]);
    assert_eq!(record(&store, same_key).await.state, "pending");
    assert_eq!(record(&store, created.outbox_id()).await.state, "in_flight");
    store.close().await;
}

#[tokio::test]
async fn a_row_in_flight_in_another_tenant_does_not_block_the_same_natural_key() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    // "Partner 1" in both tenants: two partners, two Graph tenants, no shared order.
    let theirs = create(&repo, 1, other_tenant(), at(-100)).await;
    let ours = Created {
        partner: plain_partner(2, "partner 1", now()),
        write: write_for(&plain_partner(2, "partner 1", now()), tenant(), 200),
    };
    repo.partners
        .insert_partner(&ours.partner, &ours.write)
        .await
        .expect("insert");
    finish_first(
        &repo,
        &ours,
        Transition::Retry {
            state: WaitingState::Pending,
            next_attempt_at: at(-10),
        },
    )
    .await;
    assert_eq!(record(&store, theirs.outbox_id()).await.state, "in_flight");

    let claimed = claim(&repo, 10).await;

    assert_eq!(ids(&claimed), [ours.outbox_id()]);
    store.close().await;
}

#[tokio::test]
async fn claim_due_never_takes_two_rows_of_one_natural_key_in_one_claim() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = queued(&repo, 1, tenant(), at(-300), WaitingState::Pending, at(-20)).await;
    let second = Uuid::from_u128(0xbeef);
    insert_pending_row(&store, second, &created, "partner 1", at(-10), at(-200)).await;

    let claimed = claim(&repo, 10).await;

    assert_eq!(ids(&claimed), [created.outbox_id()], "only the first due");
    assert_eq!(
        claim(&repo, 10).await,
        [],
        "the key has a row in flight now"
    );
    store.close().await;
}

#[tokio::test]
async fn claim_due_leases_the_rows_to_the_owner_until_the_given_expiry() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = queued(&repo, 1, tenant(), at(-300), WaitingState::Unknown, at(-20)).await;
    let before = record(&store, created.outbox_id()).await;

    let claimed = repo
        .outbox
        .claim_due(
            tenant(),
            now(),
            &LeaseOwner::from_stored("dispatcher:7".to_owned()),
            at(170),
            10,
        )
        .await
        .expect("claim");

    assert_eq!(ids(&claimed), [created.outbox_id()]);
    assert_eq!(
        record(&store, created.outbox_id()).await,
        QueueRecord {
            state: "in_flight".into(),
            lease_owner: Some("dispatcher:7".into()),
            lease_expires_at: Some(at(170).unix_ticks()),
            updated_at: now().unix_ticks(),
            ..before
        },
        "leased; attempts, due time and last outcome unchanged"
    );
    store.close().await;
}

#[tokio::test]
async fn claim_due_fails_and_claims_nothing_when_a_claimed_partner_cannot_be_read() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let fine = queued(&repo, 1, tenant(), at(-300), WaitingState::Pending, at(-30)).await;
    let broken = queued(&repo, 2, tenant(), at(-300), WaitingState::Pending, at(-20)).await;
    sqlx::query("UPDATE partners SET display_name = '   ' WHERE id = ?")
        .bind(broken.partner.id().to_string())
        .execute(&mut side_connection(&store).await)
        .await
        .expect("corrupt the partner");
    let before = [
        record(&store, fine.outbox_id()).await,
        record(&store, broken.outbox_id()).await,
    ];

    let result = repo
        .outbox
        .claim_due(tenant(), now(), &dispatcher_a(), at(160), 10)
        .await;

    match result {
        Err(StoreError::Unexpected(error)) => {
            let chain = format!("{error:#}");
            assert!(chain.contains("no longer parses"), "{chain}");
        }
        other => panic!("expected Unexpected, got {other:?}"),
    }
    assert_eq!(
        [
            record(&store, fine.outbox_id()).await,
            record(&store, broken.outbox_id()).await,
        ],
        before,
        "the whole claim rolled back"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_claims_never_return_the_same_row() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    for n in 1..=20 {
        queued(&repo, n, tenant(), at(-600), WaitingState::Pending, at(-10)).await;
    }
    let claim_as = |owner: &'static str| {
        let repo = store.ports();
        tokio::spawn(async move {
            repo.outbox
                .claim_due(
                    tenant(),
                    now(),
                    &LeaseOwner::from_stored(owner.to_owned()),
                    at(160),
                    15,
                )
                .await
        })
    };

    let (a, b) = tokio::join!(claim_as("dispatcher:a"), claim_as("dispatcher:b"));

    let a = a.expect("task a").expect("claim a");
    let b = b.expect("task b").expect("claim b");
    let a: HashSet<_> = ids(&a).into_iter().collect();
    let b: HashSet<_> = ids(&b).into_iter().collect();
    assert!(a.is_disjoint(&b), "a: {a:?}, b: {b:?}");
    assert_eq!(
        a.len() + b.len(),
        20,
        "one claim got 15, the other the 5 left"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_from_two_stores_on_one_file_never_return_the_same_row() {
    // Two stores are two writer connections, as two processes would have: only SQLite's
    // write lock, taken at BEGIN IMMEDIATE, keeps their claims apart.
    let dir = TempDir::new().expect("temp dir");
    let first = SqliteStore::open(&settings(&dir)).await.expect("open");
    let second = SqliteStore::open(&settings(&dir))
        .await
        .expect("open again");
    let repo = first.ports();
    for n in 1..=20 {
        queued(&repo, n, tenant(), at(-600), WaitingState::Pending, at(-10)).await;
    }
    let claim_on = |store: &SqliteStore, owner: &'static str| {
        let repo = store.ports();
        tokio::spawn(async move {
            repo.outbox
                .claim_due(
                    tenant(),
                    now(),
                    &LeaseOwner::from_stored(owner.to_owned()),
                    at(160),
                    15,
                )
                .await
        })
    };

    let (a, b) = tokio::join!(
        claim_on(&first, "dispatcher:a"),
        claim_on(&second, "dispatcher:b")
    );

    let a = a.expect("task a").expect("claim a");
    let b = b.expect("task b").expect("claim b");
    let a: HashSet<_> = ids(&a).into_iter().collect();
    let b: HashSet<_> = ids(&b).into_iter().collect();
    assert!(a.is_disjoint(&b), "a: {a:?}, b: {b:?}");
    assert_eq!(a.len() + b.len(), 20);
    second.close().await;
    first.close().await;
}

#[tokio::test]
async fn claim_due_with_a_limit_of_zero_claims_nothing() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = queued(&repo, 1, tenant(), at(-300), WaitingState::Pending, at(-20)).await;

    let claimed = claim(&repo, 0).await;

    assert_eq!(claimed, []);
    assert_eq!(record(&store, created.outbox_id()).await.state, "pending");
    store.close().await;
}

#[tokio::test]
async fn release_hands_a_claimed_row_back_unleased_in_the_given_state_and_due_time() {
    for state in [WaitingState::Pending, WaitingState::Unknown] {
        let (_dir, store) = open_store().await;
        let repo = store.ports();
        let created = queued(&repo, 1, tenant(), at(-300), WaitingState::Pending, at(-20)).await;
        claim(&repo, 10).await;

        repo.outbox
            .release(created.outbox_id(), state, at(30))
            .await
            .expect("release");

        let case = state.as_str();
        let row = record(&store, created.outbox_id()).await;
        assert_eq!(row.state, case);
        assert_eq!(row.next_attempt_at, at(30).unix_ticks(), "{case}");
        assert_eq!(row.lease_owner, None, "{case}");
        assert_eq!(row.lease_expires_at, None, "{case}");
        assert_eq!(row.attempts, 1, "{case}: no attempt made");
        store.close().await;
    }
}

#[tokio::test]
async fn release_refuses_a_row_not_in_flight_and_a_state_other_than_pending_or_unknown() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let waiting = queued(&repo, 1, tenant(), at(-300), WaitingState::Pending, at(20)).await;
    let in_flight = create(&repo, 2, tenant(), at(-100)).await;
    // A release to `dead` or `in_flight` cannot be asked for: the port takes a WaitingState.
    let cases = [
        ("a pending row", waiting.outbox_id(), WaitingState::Unknown),
        ("no row", Uuid::from_u128(0xdead), WaitingState::Pending),
    ];
    let before = [
        record(&store, waiting.outbox_id()).await,
        record(&store, in_flight.outbox_id()).await,
    ];

    for (case, outbox_id, state) in cases {
        let result = repo.outbox.release(outbox_id, state, at(30)).await;

        assert!(
            matches!(result, Err(StoreError::Unexpected(_))),
            "case {case}: {result:?}"
        );
    }
    assert_eq!(
        [
            record(&store, waiting.outbox_id()).await,
            record(&store, in_flight.outbox_id()).await,
        ],
        before
    );
    store.close().await;
}

#[tokio::test]
async fn start_delivery_records_the_attempt_and_counts_it_on_the_row() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = queued(&repo, 1, tenant(), at(-300), WaitingState::Pending, at(-20)).await;
    let claimed = claim(&repo, 10).await;
    let start = DeliveryStart {
        outbox_id: created.outbox_id(),
        attempt: claimed[0].attempts + 1,
        client_request_id: Uuid::from_u128(0xc11e),
        started_at: at(1),
        lease: Lease {
            owner: dispatcher_a(),
            expires_at: at(161),
        },
    };

    repo.outbox.start_delivery(&start).await.expect("start");

    let row = record(&store, created.outbox_id()).await;
    assert_eq!(row.attempts, 2);
    assert_eq!(
        row.last_client_request_id,
        Some(start.client_request_id.to_string())
    );
    assert_eq!(
        row.first_attempt_at,
        Some(at(-300).unix_ticks()),
        "the first attempt's start is kept"
    );
    assert_eq!(row.updated_at, at(1).unix_ticks());
    assert_eq!(row.state, "in_flight");
    let history = repo
        .outbox
        .sync_state(created.partner.id())
        .await
        .expect("read")
        .expect("a row")
        .deliveries;
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[1],
        DeliveryRecord {
            attempt: 2,
            client_request_id: start.client_request_id.to_string(),
            started_at: at(1),
            finished_at: None,
            http_status: None,
            graph_error_code: None,
            graph_request_id: None,
            outcome: None,
        }
    );
    store.close().await;
}

#[tokio::test]
async fn start_delivery_sets_first_attempt_at_when_unset() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = create(&repo, 1, tenant(), at(-300)).await;
    finish_first(&repo, &created, delivered_as("graph-1")).await;
    // A row no attempt has started for yet.
    let never_tried = Uuid::from_u128(0xbeef);
    insert_pending_row(
        &store,
        never_tried,
        &created,
        "partner 1",
        at(-10),
        at(-100),
    )
    .await;
    assert_eq!(ids(&claim(&repo, 10).await), [never_tried]);

    repo.outbox
        .start_delivery(&DeliveryStart {
            outbox_id: never_tried,
            attempt: 1,
            client_request_id: Uuid::from_u128(0xc11e),
            started_at: at(2),
            lease: Lease {
                owner: dispatcher_a(),
                expires_at: at(162),
            },
        })
        .await
        .expect("start");

    let row = record(&store, never_tried).await;
    assert_eq!(row.first_attempt_at, Some(at(2).unix_ticks()));
    assert_eq!(row.attempts, 1);
    store.close().await;
}

#[tokio::test]
async fn start_delivery_returns_lease_lost_and_records_nothing_unless_the_row_is_in_flight_and_leased_to_the_caller()
 {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let waiting = queued(&repo, 1, tenant(), at(-300), WaitingState::Pending, at(-20)).await;
    // In flight, leased to its creating request.
    let held = create(&repo, 2, tenant(), at(-100)).await;
    let delivered = create(&repo, 3, tenant(), at(-300)).await;
    finish_first(&repo, &delivered, delivered_as("graph-3")).await;
    let rows = [waiting.outbox_id(), held.outbox_id(), delivered.outbox_id()];
    let mut before = Vec::new();
    for id in rows {
        before.push(record(&store, id).await);
    }
    let cases = [
        ("a pending row", waiting.outbox_id(), "dispatcher:a"),
        (
            "a row leased to another owner",
            held.outbox_id(),
            "dispatcher:a",
        ),
        ("a delivered row", delivered.outbox_id(), "dispatcher:a"),
        ("no row", Uuid::from_u128(0xdead), "dispatcher:a"),
    ];

    for (case, outbox_id, owner) in cases {
        let result = repo
            .outbox
            .start_delivery(&DeliveryStart {
                outbox_id,
                attempt: 2,
                client_request_id: Uuid::from_u128(0xc11e),
                started_at: at(1),
                lease: Lease {
                    owner: LeaseOwner::from_stored(owner.to_owned()),
                    expires_at: at(161),
                },
            })
            .await;

        assert!(
            matches!(result, Err(StoreError::LeaseLost)),
            "case {case}: expected LeaseLost, got {result:?}"
        );
    }
    let mut after = Vec::new();
    for id in rows {
        after.push(record(&store, id).await);
    }
    assert_eq!(after, before, "nothing written, the lease not renewed");
    for id in rows {
        assert_eq!(attempt_count(&store, id).await, 1, "no attempt recorded");
    }
    store.close().await;
}

#[tokio::test]
async fn start_delivery_renews_the_lease_of_its_holder_to_the_given_expiry() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = queued(&repo, 1, tenant(), at(-300), WaitingState::Unknown, at(-20)).await;
    // Claimed at now() until at(160); the attempt starts later, at(100), with a fresh lease.
    claim(&repo, 10).await;

    repo.outbox
        .start_delivery(&DeliveryStart {
            outbox_id: created.outbox_id(),
            attempt: 2,
            client_request_id: Uuid::from_u128(0xc11e),
            started_at: at(100),
            lease: Lease {
                owner: dispatcher_a(),
                expires_at: at(260),
            },
        })
        .await
        .expect("start");

    let row = record(&store, created.outbox_id()).await;
    assert_eq!(row.state, "in_flight");
    assert_eq!(
        row.lease_owner.as_deref(),
        Some("dispatcher:a"),
        "same holder"
    );
    assert_eq!(row.lease_expires_at, Some(at(260).unix_ticks()), "renewed");
    assert_eq!(
        repo.outbox
            .recover_expired_leases(at(200))
            .await
            .expect("recover"),
        0,
        "the old expiry no longer applies"
    );
    assert_eq!(
        repo.outbox
            .recover_expired_leases(at(260))
            .await
            .expect("recover"),
        1,
        "the renewed one does"
    );
    store.close().await;
}

#[tokio::test]
async fn start_delivery_refuses_an_attempt_number_already_used_and_records_nothing() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    // In flight with attempt 1 already started by the creating request.
    let created = create(&repo, 1, tenant(), at(-100)).await;
    let before = record(&store, created.outbox_id()).await;

    let result = repo
        .outbox
        .start_delivery(&DeliveryStart {
            outbox_id: created.outbox_id(),
            attempt: 1,
            client_request_id: Uuid::from_u128(0xc11e),
            started_at: at(1),
            lease: Lease {
                owner: created.write.delivery.lease.owner.clone(),
                expires_at: at(161),
            },
        })
        .await;

    assert!(
        matches!(result, Err(StoreError::Unexpected(_))),
        "{result:?}"
    );
    assert_eq!(
        record(&store, created.outbox_id()).await,
        before,
        "rolled back"
    );
    assert_eq!(attempt_count(&store, created.outbox_id()).await, 1);
    store.close().await;
}

#[tokio::test]
async fn sync_state_returns_the_row_with_its_attempts_in_order() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = queued(&repo, 1, tenant(), at(-300), WaitingState::Unknown, at(-20)).await;
    claim(&repo, 10).await;
    let second = Uuid::from_u128(0xc11e);
    repo.outbox
        .start_delivery(&DeliveryStart {
            outbox_id: created.outbox_id(),
            attempt: 2,
            client_request_id: second,
            started_at: at(1),
            lease: Lease {
                owner: dispatcher_a(),
                expires_at: at(161),
            },
        })
        .await
        .expect("start");
    repo.outbox
        .finish_delivery(&DeliveryEnd {
            outbox_id: created.outbox_id(),
            partner_id: created.partner.id(),
            client_request_id: second,
            finished_at: at(2),
            meta: GraphResponseMeta::default(),
            outcome: DeliveryOutcome::DuplicateInGraph,
            transition: Transition::Dead {
                reason: "duplicate in Graph".into(),
            },
        })
        .await
        .expect("finish");

    let state = repo
        .outbox
        .sync_state(created.partner.id())
        .await
        .expect("read");

    assert_eq!(
        state,
        Some(OutboxRecord {
            outbox_id: created.outbox_id(),
            partner_id: created.partner.id(),
            operation: Operation::Create,
            natural_key: NaturalKey::fold("partner 1"),
            state: OutboxState::Dead,
            attempts: 2,
            next_attempt_at: at(-20),
            last_status: None,
            last_error_code: None,
            last_client_request_id: Some(second.to_string()),
            graph_id: None,
            dead_reason: Some("duplicate in Graph".into()),
            created_at: at(-300),
            updated_at: at(2),
            first_attempt_at: Some(at(-300)),
            deliveries: vec![
                DeliveryRecord {
                    attempt: 1,
                    client_request_id: created.write.delivery.client_request_id.to_string(),
                    started_at: at(-300),
                    finished_at: Some(at(-299)),
                    http_status: Some(503),
                    graph_error_code: Some("ServiceUnavailable".into()),
                    graph_request_id: Some("graph-request-1".into()),
                    outcome: Some(DeliveryOutcome::Unknown),
                },
                DeliveryRecord {
                    attempt: 2,
                    client_request_id: second.to_string(),
                    started_at: at(1),
                    finished_at: Some(at(2)),
                    http_status: None,
                    graph_error_code: None,
                    graph_request_id: None,
                    outcome: Some(DeliveryOutcome::DuplicateInGraph),
                },
            ],
        })
    );
    store.close().await;
}

#[tokio::test]
async fn sync_state_reads_the_partners_latest_row() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = create(&repo, 1, tenant(), at(-300)).await;
    finish_first(&repo, &created, delivered_as("graph-1")).await;
    let later = Uuid::from_u128(0xbeef);
    insert_pending_row(&store, later, &created, "partner 1", at(10), at(-100)).await;

    let state = repo
        .outbox
        .sync_state(created.partner.id())
        .await
        .expect("read")
        .expect("a row");

    assert_eq!(state.outbox_id, later);
    assert_eq!(state.state, OutboxState::Pending);
    assert_eq!(state.deliveries, [], "the later row has no attempt yet");
    store.close().await;
}

#[tokio::test]
async fn sync_state_returns_none_for_a_partner_without_a_row() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    create(&repo, 1, tenant(), at(-300)).await;

    let state = repo
        .outbox
        .sync_state(PartnerId::from_uuid(Uuid::from_u128(42)))
        .await;

    assert!(matches!(state, Ok(None)), "{state:?}");
    store.close().await;
}

#[tokio::test]
async fn list_rows_returns_rows_oldest_first_filtered_by_state_and_limited_without_history() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    // Inserted in another order than written.
    let p3 = queued(&repo, 3, tenant(), at(-100), WaitingState::Pending, at(50)).await;
    let f2 = create(&repo, 2, other_tenant(), at(-200)).await;
    let p1 = queued(&repo, 1, tenant(), at(-300), WaitingState::Pending, at(50)).await;
    let u4 = queued(&repo, 4, tenant(), at(-50), WaitingState::Unknown, at(50)).await;
    let cases: [(&str, Option<OutboxState>, u32, Vec<Uuid>); 5] = [
        (
            "all",
            None,
            10,
            vec![
                p1.outbox_id(),
                f2.outbox_id(),
                p3.outbox_id(),
                u4.outbox_id(),
            ],
        ),
        (
            "all, limited",
            None,
            2,
            vec![p1.outbox_id(), f2.outbox_id()],
        ),
        (
            "pending",
            Some(OutboxState::Pending),
            10,
            vec![p1.outbox_id(), p3.outbox_id()],
        ),
        (
            "pending, limited",
            Some(OutboxState::Pending),
            1,
            vec![p1.outbox_id()],
        ),
        ("dead", Some(OutboxState::Dead), 10, vec![]),
    ];

    for (case, state, limit, expected) in cases {
        let rows = repo.outbox.list_rows(state, limit).await.expect("list");

        assert_eq!(
            rows.iter().map(|r| r.outbox_id).collect::<Vec<_>>(),
            expected,
            "case {case}"
        );
        assert!(
            rows.iter().all(|r| r.deliveries.is_empty()),
            "case {case}: no history in listings"
        );
        if let Some(state) = state {
            assert!(rows.iter().all(|r| r.state == state), "case {case}");
        }
    }
    store.close().await;
}

#[tokio::test]
async fn count_rows_counts_every_state_including_empty_ones() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    assert_eq!(
        repo.outbox.count_rows().await.expect("count"),
        OutboxCounts::default(),
        "an empty outbox counts zero everywhere"
    );
    create(&repo, 1, tenant(), at(-100)).await;
    queued(&repo, 2, tenant(), at(-100), WaitingState::Pending, at(10)).await;
    queued(&repo, 3, tenant(), at(-100), WaitingState::Pending, at(10)).await;
    queued(
        &repo,
        4,
        other_tenant(),
        at(-100),
        WaitingState::Unknown,
        at(10),
    )
    .await;
    let dead = create(&repo, 5, tenant(), at(-100)).await;
    finish_first(
        &repo,
        &dead,
        Transition::Dead {
            reason: "refused".into(),
        },
    )
    .await;

    let counts = repo.outbox.count_rows().await.expect("count");

    assert_eq!(
        counts,
        OutboxCounts {
            pending: 2,
            in_flight: 1,
            delivered: 0,
            unknown: 1,
            dead: 1,
        }
    );
    store.close().await;
}

#[tokio::test]
async fn oldest_waiting_created_at_is_that_of_the_oldest_pending_or_unknown_row() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let nothing_waits = repo.outbox.oldest_waiting_created_at().await.expect("read");
    // Older rows that do not wait: one in flight, one dead.
    create(&repo, 1, tenant(), at(-500)).await;
    let dead = create(&repo, 2, tenant(), at(-400)).await;
    finish_first(
        &repo,
        &dead,
        Transition::Dead {
            reason: "refused".into(),
        },
    )
    .await;
    queued(&repo, 3, tenant(), at(-100), WaitingState::Pending, at(10)).await;
    queued(
        &repo,
        4,
        other_tenant(),
        at(-300),
        WaitingState::Unknown,
        at(10),
    )
    .await;

    let oldest = repo.outbox.oldest_waiting_created_at().await.expect("read");

    assert_eq!(nothing_waits, None);
    assert_eq!(oldest, Some(at(-300)), "the unknown row, of any tenant");
    store.close().await;
}

#[tokio::test]
async fn requeue_dead_moves_a_dead_row_to_unknown_due_now_with_a_new_window_and_keeps_its_history()
{
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let dead = create(&repo, 1, tenant(), at(-300)).await;
    finish_first(
        &repo,
        &dead,
        Transition::Dead {
            reason: "refused".into(),
        },
    )
    .await;
    let before = record(&store, dead.outbox_id()).await;

    let requeued = repo
        .outbox
        .requeue_dead(dead.outbox_id(), now())
        .await
        .expect("requeue");

    assert!(requeued);
    assert_eq!(
        record(&store, dead.outbox_id()).await,
        QueueRecord {
            state: "unknown".into(),
            next_attempt_at: now().unix_ticks(),
            dead_reason: None,
            updated_at: now().unix_ticks(),
            first_attempt_at: Some(now().unix_ticks()),
            ..before
        }
    );
    assert_eq!(attempt_count(&store, dead.outbox_id()).await, 1);
    let claimed = claim(&repo, 10).await;
    assert_eq!(
        ids(&claimed),
        [dead.outbox_id()],
        "due for the dispatcher again"
    );
    assert_eq!(
        claimed[0].previous_state,
        WaitingState::Unknown,
        "reconciled before any resend"
    );
    assert_eq!(claimed[0].attempts, 1, "attempt numbers continue");
    assert_eq!(
        claimed[0].attempts_in_window, 0,
        "the give-up limits start afresh"
    );
    store.close().await;
}

#[tokio::test]
async fn requeue_dead_reports_false_and_changes_nothing_for_a_row_that_is_not_dead() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let in_flight = create(&repo, 1, tenant(), at(-300)).await;
    let pending = queued(&repo, 2, tenant(), at(-300), WaitingState::Pending, at(10)).await;
    let unknown = queued(&repo, 3, tenant(), at(-300), WaitingState::Unknown, at(10)).await;
    let delivered = create(&repo, 4, tenant(), at(-300)).await;
    finish_first(&repo, &delivered, delivered_as("graph-4")).await;
    let rows = [
        ("in flight", in_flight.outbox_id()),
        ("pending", pending.outbox_id()),
        ("unknown", unknown.outbox_id()),
        ("delivered", delivered.outbox_id()),
    ];
    let mut before = Vec::new();
    for (_, id) in rows {
        before.push(record(&store, id).await);
    }

    for (case, id) in rows
        .into_iter()
        .chain([("no row", Uuid::from_u128(0xdead))])
    {
        let requeued = repo.outbox.requeue_dead(id, now()).await.expect("requeue");

        assert!(!requeued, "case {case}");
    }
    let mut after = Vec::new();
    for (_, id) in rows {
        after.push(record(&store, id).await);
    }
    assert_eq!(after, before);
    store.close().await;
}

#[tokio::test]
async fn the_schema_keeps_a_dead_reason_exactly_on_dead_rows() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let pending = queued(&repo, 1, tenant(), at(-300), WaitingState::Pending, at(10)).await;
    let dead = create(&repo, 2, tenant(), at(-300)).await;
    finish_first(
        &repo,
        &dead,
        Transition::Dead {
            reason: "refused".into(),
        },
    )
    .await;
    let cases: [(&str, &'static str, Uuid); 3] = [
        (
            "a live row with a reason",
            "UPDATE outbox SET dead_reason = 'x' WHERE id = ?",
            pending.outbox_id(),
        ),
        (
            "a dead row without a reason",
            "UPDATE outbox SET dead_reason = NULL WHERE id = ?",
            dead.outbox_id(),
        ),
        (
            "leaving dead without clearing the reason",
            "UPDATE outbox SET state = 'pending' WHERE id = ?",
            dead.outbox_id(),
        ),
    ];

    for (case, sql, id) in cases {
        let result = sqlx::query(sql)
            .bind(id.hyphenated().to_string())
            .execute(&mut side_connection(&store).await)
            .await;

        assert!(result.is_err(), "case: {case}");
    }
    store.close().await;
}

#[tokio::test]
async fn the_claim_reads_the_outbox_through_its_indexes_only() {
    let (_dir, store) = open_store().await;

    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {CLAIM_CANDIDATES}"
    )))
    .bind(tenant().to_string())
    .bind(now().unix_ticks())
    .bind(10_i64)
    .fetch_all(&store.connections.reader)
    .await
    .expect("query plan");

    let steps: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
    let uses = |index: &str| steps.iter().any(|step| step.contains(index));
    assert!(uses("outbox_tenant_state_next_attempt_at"), "{steps:#?}");
    assert!(
        uses("COVERING INDEX outbox_tenant_natural_key_state_created_at"),
        "the key probe answers from the index alone: {steps:#?}"
    );
    assert!(
        uses("INDEX outbox_partner_id_created_at (partner_id=?)"),
        "the partner probe reads only the partner's rows: {steps:#?}"
    );
    assert!(
        !steps.iter().any(|step| step.starts_with("SCAN candidate")
            || step.starts_with("SCAN ahead_by_key")
            || step.starts_with("SCAN ahead_for_partner")),
        "no full scan of the outbox: {steps:#?}"
    );
    store.close().await;
}

/// Starts the next attempt of `claimed` as `dispatcher:a` at `when` and finishes it with
/// `transition`.
async fn attempt(repo: &Ports, claimed: &ClaimedRow, when: Timestamp, transition: Transition) {
    let client_request_id = Uuid::from_u128(0xc000 + u128::from(claimed.attempts));
    repo.outbox
        .start_delivery(&DeliveryStart {
            outbox_id: claimed.outbox_id,
            attempt: claimed.attempts + 1,
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
            outbox_id: claimed.outbox_id,
            partner_id: claimed.partner.id(),
            client_request_id,
            finished_at: when.saturating_add(Duration::from_secs(1)),
            meta: GraphResponseMeta::default(),
            outcome: DeliveryOutcome::Applied,
            transition,
        })
        .await
        .expect("finish");
}

#[tokio::test]
async fn an_update_row_waits_behind_its_partners_create_even_when_due_first() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = create(&repo, 1, tenant(), at(-300)).await;
    // Updated while the create's first attempt ran: an update row, due at once.
    let updated = renamed(&created.partner, "Partner 1 renamed");
    let write = change_write(updated.id(), tenant(), 500, AuditAction::Updated, at(-200));
    assert_eq!(
        repo.update_to(&updated, &write).await.expect("update"),
        ChangeQueued::Queued
    );
    // The create was not applied and backs off until at(100).
    finish_first(
        &repo,
        &created,
        Transition::Retry {
            state: WaitingState::Pending,
            next_attempt_at: at(100),
        },
    )
    .await;

    let while_create_waits = claim(&repo, 10).await;
    let when_create_is_due = claim_at(&repo, at(100), 10).await;
    attempt(
        &repo,
        &when_create_is_due[0],
        at(101),
        delivered_as("graph-1"),
    )
    .await;
    let after_create = claim_at(&repo, at(110), 10).await;

    assert_eq!(
        while_create_waits,
        [],
        "the update never jumps ahead of its create"
    );
    assert_eq!(
        ids(&when_create_is_due),
        [created.outbox_id()],
        "the create alone, not the update with it"
    );
    assert_eq!(
        when_create_is_due[0].partner, updated,
        "the create carries the partner as stored now"
    );
    assert_eq!(ids(&after_create), [write.outbox_id]);
    assert_eq!(after_create[0].operation, Operation::Update);
    assert_eq!(
        after_create[0].in_graph,
        Some(InGraph::Object("graph-1".into()))
    );
    assert_eq!(
        after_create[0].natural_key,
        NaturalKey::fold("partner 1 renamed")
    );
    store.close().await;
}

#[tokio::test]
async fn a_delete_row_waits_behind_an_in_flight_update_and_is_claimed_with_its_deleted_partner() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = create(&repo, 1, tenant(), at(-300)).await;
    finish_first(&repo, &created, delivered_as("graph-1")).await;
    let updated = renamed(&created.partner, "Partner 1 renamed");
    let update = change_write(updated.id(), tenant(), 500, AuditAction::Updated, at(-200));
    repo.update_to(&updated, &update).await.expect("update");
    let in_flight = claim(&repo, 10).await;
    assert_eq!(ids(&in_flight), [update.outbox_id]);
    let delete = change_write(updated.id(), tenant(), 600, AuditAction::Deleted, at(-100));
    assert_eq!(
        repo.partners
            .delete_partner(updated.id(), &delete)
            .await
            .expect("delete"),
        ChangeQueued::Queued
    );

    let while_update_runs = claim(&repo, 10).await;
    attempt(&repo, &in_flight[0], at(1), delivered_as("graph-1")).await;
    let after_update = claim_at(&repo, at(5), 10).await;

    assert_eq!(
        while_update_runs,
        [],
        "one attempt per partner at a time, in order"
    );
    assert_eq!(ids(&after_update), [delete.outbox_id]);
    let row = &after_update[0];
    assert_eq!(row.operation, Operation::Delete);
    assert_eq!(row.in_graph, Some(InGraph::Object("graph-1".into())));
    assert_eq!(
        row.partner, updated,
        "the deleted partner is still read for its delete"
    );
    assert_eq!(row.natural_key, NaturalKey::fold("partner 1 renamed"));
    store.close().await;
}

#[tokio::test]
async fn a_younger_row_of_a_natural_key_waits_behind_an_older_row_of_another_partner() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    // Two partners, each with a row under one name (say, one gave the name up in a rename and
    // the other took it). The older row backs off until at(100); the younger is due.
    let first = create(&repo, 1, tenant(), at(-600)).await;
    let second = create(&repo, 2, tenant(), at(-600)).await;
    for (created, graph_id) in [(&first, "graph-1"), (&second, "graph-2")] {
        finish_first(
            &repo,
            created,
            Transition::Delivered {
                in_graph: InGraph::Object(graph_id.into()),
            },
        )
        .await;
    }
    let older = Uuid::from_u128(0xa1);
    insert_pending_row(&store, older, &first, "shared", at(100), at(-200)).await;
    let younger = Uuid::from_u128(0xa2);
    insert_pending_row(&store, younger, &second, "shared", at(-50), at(-100)).await;
    let bystander = queued(&repo, 3, tenant(), at(-600), WaitingState::Pending, at(-10)).await;

    let claimed = claim(&repo, 10).await;
    let later = repo
        .outbox
        .claim_due(
            tenant(),
            at(100),
            &LeaseOwner::from_stored("dispatcher:b".to_owned()),
            at(260),
            10,
        )
        .await
        .expect("claim");

    assert_eq!(
        ids(&claimed),
        [bystander.outbox_id()],
        "the younger row waits"
    );
    assert_eq!(ids(&later), [older], "then the older row goes first, alone");
    store.close().await;
}

#[tokio::test]
async fn a_dead_row_holds_no_younger_row_back() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let created = create(&repo, 1, tenant(), at(-300)).await;
    let updated = renamed(&created.partner, "Partner 1 renamed");
    let update = change_write(updated.id(), tenant(), 500, AuditAction::Updated, at(-200));
    repo.update_to(&updated, &update).await.expect("update");
    finish_first(
        &repo,
        &created,
        Transition::Dead {
            reason: "refused".into(),
        },
    )
    .await;

    let claimed = claim(&repo, 10).await;

    assert_eq!(ids(&claimed), [update.outbox_id]);
    assert_eq!(
        claimed[0].in_graph, None,
        "the dispatcher decides what an update of it means"
    );
    store.close().await;
}
