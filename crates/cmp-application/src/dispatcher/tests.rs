//! Unit tests of the dispatcher and the delivery rules it applies, over mocked ports (the
//! rules are written down in `docs/delivery.md`).
//!
//! Time, identity and chance are pinned, so every value below is known in advance:
//! - the clock always answers [`now`] (a test that moves time on uses a [`SteppedClock`]);
//! - the id source hands out `Uuid::from_u128(1)`, `2`, `3`, ... in call order: `1` names the
//!   dispatcher in its leases ([`OWNER`]), `2`, `3`, ... are the `client-request-id`s of its
//!   deliveries, in the order the rows are attempted;
//! - every jitter draw is [`FRACTION`], so a back-off is exactly [`backoff`] of the attempt.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use cmp_domain::{NaturalKey, Partner};
use mockall::Sequence;
use mockall::predicate::eq;

use super::*;
use crate::delivery;
use crate::pacer::InProcessPacer;
use crate::ports::{
    Booking, Budget, ClaimedRow, CreateOutcome, DeliveryEnd, DeliveryOutcome, DeliveryStart,
    GraphCallResult, GraphReadError, GraphResponseMeta, InGraph, Lease, MockGraphGateway,
    MockJitter, MockOutbox, MockPartnerStore, Operation, PacerError, PacerRates, PacerState,
    RemotePartner, Slot, WaitingState,
};
use crate::test_support::{
    NoWait, fixed_clock, graph_meta, now, partner_named, policy_with_batch, seconds_after_now,
    sequential_ids, tenant_id, unspaced_pacer,
};
use cmp_domain::Timestamp;
use uuid::Uuid;

/// The lease owner of the dispatcher: the first id it is given.
const OWNER: &str = "dispatcher:00000000-0000-0000-0000-000000000001";
/// Every jitter draw.
const FRACTION: f64 = 0.5;
const DISPLAY_NAME: &str = "Contoso";
const NATURAL_KEY: &str = "contoso";
const GRAPH_ID: &str = "graph-partner-1";
/// Attempts a row has behind it when claimed (the inline one and one dispatcher attempt), so
/// the dispatcher makes attempt 3.
const ATTEMPTS_BEFORE: u32 = 2;
const ATTEMPT: u32 = ATTEMPTS_BEFORE + 1;

fn after(delay: Duration) -> Timestamp {
    now().saturating_add(delay)
}

/// The numbers of `config/default.toml`, but for a batch of 16 rows.
fn policy() -> OutboxPolicy {
    policy_with_batch(16)
}

/// The back-off the dispatcher must choose for `attempt`, given the pinned jitter draw.
fn backoff(attempt: u32) -> Duration {
    delivery::full_jitter(policy().retry_base, policy().backoff_cap, attempt, FRACTION)
}

/// `client-request-id` of the first attempt of a pass.
fn first_request_id() -> Uuid {
    Uuid::from_u128(2)
}

fn outbox_id() -> Uuid {
    Uuid::from_u128(0xb0)
}

fn other_outbox_id() -> Uuid {
    Uuid::from_u128(0xb1)
}

fn partner() -> Partner {
    partner_named(0xa0, DISPLAY_NAME)
}

/// A `pending` row of [`partner`], first attempted an hour ago, with [`ATTEMPTS_BEFORE`]
/// attempts behind it.
fn pending_row() -> ClaimedRow {
    ClaimedRow {
        partner_deleted: false,
        due_at: now(),
        operation: Operation::Create,
        in_graph: None,
        outbox_id: outbox_id(),
        partner: partner(),
        natural_key: NaturalKey::fold(NATURAL_KEY),
        previous_state: WaitingState::Pending,
        attempts: ATTEMPTS_BEFORE,
        attempts_in_window: ATTEMPTS_BEFORE,
        first_attempt_at: Some(seconds_after_now(-3600)),
        created_at: seconds_after_now(-3600),
    }
}

/// The same row after an attempt whose outcome is unknown: it must be reconciled first.
fn unknown_row() -> ClaimedRow {
    ClaimedRow {
        partner_deleted: false,
        due_at: now(),
        operation: Operation::Create,
        in_graph: None,
        previous_state: WaitingState::Unknown,
        ..pending_row()
    }
}

fn remote(graph_id: &str, display_name: Option<&str>) -> RemotePartner {
    RemotePartner {
        graph_id: graph_id.to_owned(),
        display_name: display_name.map(str::to_owned),
    }
}

fn retry(state: WaitingState, next_attempt_at: Timestamp) -> Transition {
    Transition::Retry {
        state,
        next_attempt_at,
    }
}

/// A dead transition whose reason is left out; see [`expect_dead_finish`].
fn dead() -> Transition {
    Transition::Dead {
        reason: String::new(),
    }
}

/// The record the attempt on `row` with the pass's first `client-request-id` must leave.
fn expected_finish(
    row: &ClaimedRow,
    meta: GraphResponseMeta,
    outcome: DeliveryOutcome,
    transition: Transition,
) -> DeliveryEnd {
    DeliveryEnd {
        outbox_id: row.outbox_id,
        partner_id: row.partner.id(),
        client_request_id: first_request_id(),
        finished_at: now(),
        meta,
        outcome,
        transition,
    }
}

/// The start record of the attempt on `row` with the pass's first `client-request-id`.
fn expected_start(row: &ClaimedRow) -> DeliveryStart {
    DeliveryStart {
        outbox_id: row.outbox_id,
        attempt: row.attempts + 1,
        client_request_id: first_request_id(),
        started_at: now(),
        lease: Lease {
            owner: LeaseOwner::from_stored(OWNER.to_owned()),
            expires_at: now().saturating_add(Duration::from_secs(160)),
        },
    }
}

// ---- test doubles -------------------------------------------------------------------------

/// A clock the test moves on by hand; it starts at [`now`].
struct SteppedClock {
    ticks: AtomicI64,
}

impl SteppedClock {
    fn starting_now() -> Self {
        Self {
            ticks: AtomicI64::new(now().unix_ticks()),
        }
    }

    fn set(&self, instant: Timestamp) {
        self.ticks.store(instant.unix_ticks(), Ordering::SeqCst);
    }
}

impl Clock for SteppedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ticks(self.ticks.load(Ordering::SeqCst))
            .expect("the test only sets instants in range")
    }
}

fn fixed_jitter() -> MockJitter {
    let mut jitter = MockJitter::new();
    jitter.expect_fraction().return_const(FRACTION);
    jitter
}

/// An outbox expecting one pass at [`now`]: no lapsed lease, then exactly one claim (this
/// tenant, [`OWNER`], the policy's lease and batch size) that hands out `rows`.
fn outbox_handing_out(rows: Vec<ClaimedRow>) -> MockOutbox {
    let mut outbox = MockOutbox::new();
    outbox
        .expect_recover_expired_leases()
        .with(eq(now()))
        .times(1)
        .returning(|_| Ok(0));
    expect_claim_at(&mut outbox, now(), rows);
    outbox
}

/// Expects exactly one claim made at `at`, answering `rows`.
fn expect_claim_at(outbox: &mut MockOutbox, at: Timestamp, rows: Vec<ClaimedRow>) {
    outbox
        .expect_claim_due()
        .withf(move |tenant, claimed_at, owner, lease_expires_at, limit| {
            *tenant == tenant_id()
                && *claimed_at == at
                && owner.as_str() == OWNER
                && *lease_expires_at == at.saturating_add(Duration::from_secs(160))
                && *limit == policy().batch_size
        })
        .times(1)
        .returning(move |_, _, _, _, _| Ok(rows.clone()));
}

/// An outbox handing out `row` and expecting exactly its delivery start, committed.
fn outbox_attempting(row: &ClaimedRow) -> MockOutbox {
    let mut outbox = outbox_handing_out(vec![row.clone()]);
    let start = expected_start(row);
    outbox
        .expect_start_delivery()
        .withf(move |recorded| recorded == &start)
        .times(1)
        .returning(|_| Ok(()));
    outbox.expect_release().never();
    outbox
}

/// An outbox handing out `row` that expects it back, unattempted, in `state` due `at` (Graph's
/// list could not be read, so nothing was sent and no delivery is recorded).
fn outbox_releasing(row: &ClaimedRow, state: WaitingState, at: Timestamp) -> MockOutbox {
    let mut outbox = outbox_handing_out(vec![row.clone()]);
    let outbox_id = row.outbox_id;
    outbox
        .expect_release()
        .withf(move |id, released, due| *id == outbox_id && *released == state && *due == at)
        .times(1)
        .returning(|_, _, _| Ok(()));
    outbox.expect_start_delivery().never();
    outbox.expect_finish_delivery().never();
    outbox
}

/// Expects exactly one delivery end, equal to `end`.
fn expect_finish(outbox: &mut MockOutbox, end: DeliveryEnd) {
    outbox
        .expect_finish_delivery()
        .withf(move |recorded| recorded == &end)
        .times(1)
        .returning(|_| Ok(()));
}

/// Expects exactly one delivery end equal to `end` (whose transition is [`dead`]) except for
/// the dead reason, which must contain every one of `needles`.
fn expect_dead_finish(outbox: &mut MockOutbox, end: DeliveryEnd, needles: &'static [&'static str]) {
    outbox
        .expect_finish_delivery()
        .withf(move |recorded| match &recorded.transition {
            Transition::Dead { reason } => {
                let without_reason = DeliveryEnd {
                    transition: dead(),
                    ..recorded.clone()
                };
                without_reason == end && needles.iter().all(|needle| reason.contains(needle))
            }
            _ => false,
        })
        .times(1)
        .returning(|_| Ok(()));
}

/// Expects exactly one delivery end, of [`outbox_id`] with the pass's first
/// `client-request-id`, that `check` accepts.
fn expect_finish_where(
    outbox: &mut MockOutbox,
    check: impl Fn(&DeliveryEnd) -> bool + Send + 'static,
) {
    outbox
        .expect_finish_delivery()
        .withf(move |recorded| {
            recorded.outbox_id == outbox_id()
                && recorded.client_request_id == first_request_id()
                && check(recorded)
        })
        .times(1)
        .returning(|_| Ok(()));
}

/// Graph answering `outcome` to exactly one POST of `row`'s partner with the pass's first
/// `client-request-id`; never listed.
fn graph_answering(
    row: &ClaimedRow,
    outcome: CreateOutcome,
    meta: GraphResponseMeta,
) -> MockGraphGateway {
    let mut graph = MockGraphGateway::new();
    expect_post(&mut graph, row, GraphCallResult { outcome, meta });
    graph.expect_list_partners().never();
    graph
}

/// Graph's answer to a POST it created as [`GRAPH_ID`].
fn created(meta: GraphResponseMeta) -> GraphCallResult {
    GraphCallResult {
        outcome: CreateOutcome::Created {
            graph_id: GRAPH_ID.to_owned(),
        },
        meta,
    }
}

/// A row delivered as Graph's object [`GRAPH_ID`].
fn delivered() -> Transition {
    Transition::Delivered {
        in_graph: InGraph::Object(GRAPH_ID.to_owned()),
    }
}

/// Expects exactly one POST of `row`'s partner with the pass's first `client-request-id`, next
/// in `order`, answering `answer`.
fn expect_post_in_order(
    graph: &mut MockGraphGateway,
    row: &ClaimedRow,
    answer: GraphCallResult,
    order: &mut Sequence,
) {
    let partner = row.partner.clone();
    graph
        .expect_create_partner()
        .withf(move |posted, client_request_id| {
            posted == &partner && *client_request_id == first_request_id()
        })
        .times(1)
        .in_sequence(order)
        .returning(move |_, _| answer.clone());
}

/// Expects exactly one delivery end equal to `end`, next in `order`.
fn expect_finish_in_order(outbox: &mut MockOutbox, end: DeliveryEnd, order: &mut Sequence) {
    outbox
        .expect_finish_delivery()
        .withf(move |recorded| recorded == &end)
        .times(1)
        .in_sequence(order)
        .returning(|_| Ok(()));
}

fn expect_post(graph: &mut MockGraphGateway, row: &ClaimedRow, answer: GraphCallResult) {
    let partner = row.partner.clone();
    graph
        .expect_create_partner()
        .withf(move |posted, client_request_id| {
            posted == &partner && *client_request_id == first_request_id()
        })
        .times(1)
        .returning(move |_, _| answer.clone());
}

/// Graph answering the list once with `listed` (or its error), and never POSTed to.
fn graph_listing(
    listed: Result<Vec<RemotePartner>, GraphReadError>,
    order: &mut Sequence,
) -> MockGraphGateway {
    let mut graph = MockGraphGateway::new();
    graph
        .expect_list_partners()
        .times(1)
        .in_sequence(order)
        .returning(move || listed.clone());
    graph.expect_create_partner().never();
    graph
}

fn untouched_graph() -> MockGraphGateway {
    let mut graph = MockGraphGateway::new();
    graph.expect_create_partner().never();
    graph.expect_list_partners().never();
    graph
}

/// A partner store in which no Graph object is held by another partner.
fn partners_holding_nothing() -> MockPartnerStore {
    let mut partners = MockPartnerStore::new();
    partners
        .expect_graph_id_held_by_another()
        .returning(|_, _| Ok(false));
    partners
}

fn dispatcher_over(outbox: MockOutbox, graph: MockGraphGateway) -> Dispatcher {
    dispatcher_with(
        partners_holding_nothing(),
        outbox,
        graph,
        Arc::new(fixed_clock()),
    )
}

fn dispatcher_with(
    partners: MockPartnerStore,
    outbox: MockOutbox,
    graph: MockGraphGateway,
    clock: Arc<dyn Clock>,
) -> Dispatcher {
    Dispatcher::new(
        Arc::new(outbox),
        Arc::new(partners),
        Arc::new(graph),
        clock,
        Arc::new(sequential_ids()),
        Arc::new(fixed_jitter()),
        unspaced_pacer(),
        Arc::new(NoWait),
        tenant_id(),
        policy(),
    )
}

/// The pass of a batch of one row whose delivery moved it on as `transition` says.
fn pass_of_one(transition: &Transition) -> DispatchPass {
    let mut pass = DispatchPass {
        claimed: 1,
        ..DispatchPass::default()
    };
    match transition {
        Transition::Delivered { .. } => pass.delivered = 1,
        Transition::Retry { .. } => pass.retried = 1,
        Transition::Dead { .. } => pass.dead = 1,
    }
    pass
}

/// One pass over an outbox holding `row`, whose POST Graph answers with `outcome`; the
/// delivery must be recorded as `recorded` moving the row to `transition`.
async fn attempt_pending_row_when_graph_answers(
    row: ClaimedRow,
    outcome: CreateOutcome,
    meta: GraphResponseMeta,
    recorded: DeliveryOutcome,
    transition: Transition,
) -> Result<DispatchPass, DispatchError> {
    let mut outbox = outbox_attempting(&row);
    expect_finish(
        &mut outbox,
        expected_finish(&row, meta.clone(), recorded, transition),
    );
    let dispatcher = dispatcher_over(outbox, graph_answering(&row, outcome, meta));
    dispatcher.run_once().await
}

// ---- claiming -----------------------------------------------------------------------------

#[tokio::test]
async fn a_pass_recovers_lapsed_leases_first_then_claims_the_tenants_due_rows_under_its_own_lease()
{
    let mut order = Sequence::new();
    let mut outbox = MockOutbox::new();
    outbox
        .expect_recover_expired_leases()
        .with(eq(now()))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(2));
    outbox
        .expect_claim_due()
        .with(
            eq(tenant_id()),
            eq(now()),
            eq(LeaseOwner::from_stored(OWNER.to_owned())),
            eq(after(policy().lease)),
            eq(policy().batch_size),
        )
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _, _, _| Ok(Vec::new()));
    outbox.expect_start_delivery().never();
    let dispatcher = dispatcher_over(outbox, untouched_graph());

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a pass over a healthy store succeeds"),
        DispatchPass {
            recovered: 2,
            ..DispatchPass::default()
        }
    );
}

// ---- a pending row: one POST ----------------------------------------------------------------

#[tokio::test]
async fn a_pending_row_is_started_before_the_post_with_the_same_client_request_id_and_delivered_when_graph_creates_it()
 {
    let row = pending_row();
    let meta = graph_meta(201, None);
    let mut order = Sequence::new();
    let mut outbox = outbox_handing_out(vec![row.clone()]);
    let start = expected_start(&row);
    outbox
        .expect_start_delivery()
        .withf(move |recorded| recorded == &start)
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    let mut graph = MockGraphGateway::new();
    let answer = created(meta.clone());
    expect_post_in_order(&mut graph, &row, answer, &mut order);
    graph.expect_list_partners().never();
    let finish = expected_finish(&row, meta, DeliveryOutcome::Created, delivered());
    expect_finish_in_order(&mut outbox, finish, &mut order);
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a delivered row makes a successful pass"),
        DispatchPass {
            claimed: 1,
            delivered: 1,
            ..DispatchPass::default()
        }
    );
}

// ---- throttling: the whole tenant waits -----------------------------------------------------

#[tokio::test]
async fn a_429_with_retry_after_queues_the_row_until_then_and_pauses_the_tenant_until_retry_after_has_passed()
 {
    let row = pending_row();
    let retry_after = Duration::from_secs(300);
    let pause_end = after(retry_after);
    let meta = graph_meta(429, Some("TooManyRequests"));
    let clock = Arc::new(SteppedClock::starting_now());
    let mut outbox = MockOutbox::new();
    outbox
        .expect_recover_expired_leases()
        .with(eq(now()))
        .times(2)
        .returning(|_| Ok(0));
    outbox
        .expect_recover_expired_leases()
        .with(eq(pause_end))
        .times(1)
        .returning(|_| Ok(0));
    // One claim at `now` and one once the pause is over; none in between.
    expect_claim_at(&mut outbox, now(), vec![row.clone()]);
    expect_claim_at(&mut outbox, pause_end, Vec::new());
    let start = expected_start(&row);
    outbox
        .expect_start_delivery()
        .withf(move |recorded| recorded == &start)
        .times(1)
        .returning(|_| Ok(()));
    let graph = graph_answering(
        &row,
        CreateOutcome::NotApplied {
            retry_after: Some(retry_after),
        },
        meta.clone(),
    );
    expect_finish(
        &mut outbox,
        expected_finish(
            &row,
            meta,
            DeliveryOutcome::NotApplied,
            retry(
                WaitingState::Pending,
                after(retry_after.max(backoff(ATTEMPT))),
            ),
        ),
    );
    let dispatcher = dispatcher_with(partners_holding_nothing(), outbox, graph, clock.clone());

    let throttled = dispatcher.run_once().await;
    let while_paused = dispatcher.run_once().await;
    clock.set(pause_end);
    let once_retry_after_passed = dispatcher.run_once().await;

    assert_eq!(
        throttled.expect("a throttled row makes a successful pass"),
        DispatchPass {
            claimed: 1,
            retried: 1,
            ..DispatchPass::default()
        }
    );
    assert_eq!(
        while_paused.expect("a paused pass succeeds"),
        DispatchPass {
            paused: true,
            ..DispatchPass::default()
        },
        "nothing is claimed before Retry-After has passed"
    );
    assert_eq!(
        once_retry_after_passed.expect("a pass after the pause succeeds"),
        DispatchPass::default(),
        "the tenant's queue is claimed again once Retry-After has passed"
    );
}

#[tokio::test]
async fn a_429_with_retry_after_hands_the_rest_of_the_batch_back_unattempted_until_the_pause_ends()
{
    let throttled = pending_row();
    let waiting = ClaimedRow {
        operation: Operation::Create,
        in_graph: None,
        outbox_id: other_outbox_id(),
        partner: partner_named(0xa1, "Fabrikam"),
        natural_key: NaturalKey::fold("fabrikam"),
        previous_state: WaitingState::Unknown,
        attempts: 5,
        ..pending_row()
    };
    let retry_after = Duration::from_secs(300);
    let meta = graph_meta(429, Some("TooManyRequests"));
    let mut outbox = outbox_handing_out(vec![throttled.clone(), waiting.clone()]);
    let start = expected_start(&throttled);
    outbox
        .expect_start_delivery()
        .withf(move |recorded| recorded == &start)
        .times(1)
        .returning(|_| Ok(()));
    outbox
        .expect_start_delivery()
        .withf(|recorded| recorded.outbox_id == other_outbox_id())
        .never();
    outbox
        .expect_release()
        .with(
            eq(other_outbox_id()),
            eq(WaitingState::Unknown),
            eq(after(retry_after)),
        )
        .times(1)
        .returning(|_, _, _| Ok(()));
    let graph = graph_answering(
        &throttled,
        CreateOutcome::NotApplied {
            retry_after: Some(retry_after),
        },
        meta.clone(),
    );
    expect_finish(
        &mut outbox,
        expected_finish(
            &throttled,
            meta,
            DeliveryOutcome::NotApplied,
            retry(
                WaitingState::Pending,
                after(retry_after.max(backoff(ATTEMPT))),
            ),
        ),
    );
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a throttled batch makes a successful pass"),
        DispatchPass {
            claimed: 2,
            retried: 2,
            ..DispatchPass::default()
        }
    );
}

#[tokio::test]
async fn a_429_without_retry_after_queues_the_row_pending_after_the_full_jitter_back_off() {
    let transition = retry(WaitingState::Pending, after(backoff(ATTEMPT)));

    let pass = attempt_pending_row_when_graph_answers(
        pending_row(),
        CreateOutcome::NotApplied { retry_after: None },
        graph_meta(429, Some("TooManyRequests")),
        DeliveryOutcome::NotApplied,
        transition.clone(),
    )
    .await;

    assert_eq!(
        pass.expect("a throttled row makes a successful pass"),
        pass_of_one(&transition)
    );
}

// ---- the other outcome classes of a POST ----------------------------------------------------

#[tokio::test]
async fn an_unknown_outcome_queues_the_row_unknown_after_the_settle_delay() {
    let transition = retry(WaitingState::Unknown, after(policy().settle));

    let pass = attempt_pending_row_when_graph_answers(
        pending_row(),
        CreateOutcome::Unknown,
        graph_meta(503, Some("ServiceUnavailable")),
        DeliveryOutcome::Unknown,
        transition.clone(),
    )
    .await;

    assert_eq!(
        pass.expect("an unknown outcome makes a successful pass"),
        pass_of_one(&transition)
    );
}

#[tokio::test]
async fn a_conflict_queues_the_row_unknown_for_reconciliation_at_once() {
    let transition = retry(WaitingState::Unknown, now());

    let pass = attempt_pending_row_when_graph_answers(
        pending_row(),
        CreateOutcome::Conflict,
        graph_meta(409, Some("Conflict")),
        DeliveryOutcome::Conflict,
        transition.clone(),
    )
    .await;

    assert_eq!(
        pass.expect("a conflict makes a successful pass"),
        pass_of_one(&transition)
    );
}

#[tokio::test]
async fn an_auth_failure_keeps_the_row_pending_with_back_off_and_never_dead_letters_it_even_past_both_limits()
 {
    let row = ClaimedRow {
        operation: Operation::Create,
        in_graph: None,
        attempts: policy().max_attempts,
        attempts_in_window: policy().max_attempts,
        first_attempt_at: Some(seconds_after_now(-2 * 24 * 3600)),
        ..pending_row()
    };
    let transition = retry(
        WaitingState::Pending,
        after(backoff(policy().max_attempts + 1)),
    );

    let pass = attempt_pending_row_when_graph_answers(
        row,
        CreateOutcome::AuthFailure,
        graph_meta(401, Some("InvalidAuthenticationToken")),
        DeliveryOutcome::AuthFailure,
        transition.clone(),
    )
    .await;

    assert_eq!(
        pass.expect("an auth failure makes a successful pass"),
        pass_of_one(&transition)
    );
}

#[tokio::test]
async fn a_rejection_dead_letters_the_row_with_a_reason_naming_graphs_status_and_code() {
    let row = pending_row();
    let meta = graph_meta(422, Some("ModelValidationFailure"));
    let mut outbox = outbox_attempting(&row);
    expect_dead_finish(
        &mut outbox,
        expected_finish(&row, meta.clone(), DeliveryOutcome::Rejected, dead()),
        &["422", "ModelValidationFailure"],
    );
    let dispatcher = dispatcher_over(outbox, graph_answering(&row, CreateOutcome::Rejected, meta));

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a rejected row makes a successful pass"),
        pass_of_one(&dead())
    );
}

#[tokio::test]
async fn a_recorded_dead_letter_is_counted_with_its_outcome_and_an_unrecorded_end_is_not() {
    let recording = crate::outbox_metrics::Recording::new();
    let _recording = recording.install();
    let row = pending_row();
    let meta = graph_meta(422, Some("ModelValidationFailure"));
    let mut recorded = outbox_attempting(&row);
    expect_dead_finish(
        &mut recorded,
        expected_finish(&row, meta.clone(), DeliveryOutcome::Rejected, dead()),
        &["422"],
    );
    let mut unrecorded = outbox_attempting(&row);
    unrecorded
        .expect_finish_delivery()
        .times(1)
        .returning(|_| Err(store_failure()));

    dispatcher_over(
        recorded,
        graph_answering(&row, CreateOutcome::Rejected, meta.clone()),
    )
    .run_once()
    .await
    .expect("a rejected row makes a successful pass");
    dispatcher_over(
        unrecorded,
        graph_answering(&row, CreateOutcome::Rejected, meta),
    )
    .run_once()
    .await
    .expect_err("a store failure fails the pass");

    assert_eq!(
        recording.sample(r#"cmp_outbox_deliveries_total{outcome="rejected"}"#),
        Some(1.0)
    );
    assert_eq!(recording.sample("cmp_outbox_dead_letters_total"), Some(1.0));
}

// ---- an unknown row: reconcile before any resend -------------------------------------------

#[tokio::test]
async fn an_unknown_row_found_once_in_graph_is_adopted_with_graphs_id_and_never_posted() {
    let row = unknown_row();
    let mut order = Sequence::new();
    // Graph's copy differs in case and surrounding blanks: the natural key still matches.
    // The list is read before the attempt starts: a list that fails sends nothing.
    let graph = graph_listing(
        Ok(vec![
            remote("graph-other", Some("Fabrikam")),
            remote(GRAPH_ID, Some("  CONTOSO ")),
            remote("graph-unnamed", None),
        ]),
        &mut order,
    );
    let mut outbox = outbox_handing_out(vec![row.clone()]);
    let start = expected_start(&row);
    outbox
        .expect_start_delivery()
        .withf(move |recorded| recorded == &start)
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    let finish = expected_finish(
        &row,
        GraphResponseMeta::default(),
        DeliveryOutcome::Adopted,
        delivered(),
    );
    expect_finish_in_order(&mut outbox, finish, &mut order);
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("an adopted row makes a successful pass"),
        DispatchPass {
            claimed: 1,
            delivered: 1,
            ..DispatchPass::default()
        }
    );
}

/// A real in-process pacer that also counts the write slots booked from it.
struct CountingPacer {
    pacer: InProcessPacer,
    write_bookings: AtomicUsize,
}

impl CountingPacer {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            pacer: InProcessPacer::new(PacerRates::steady(
                Duration::from_millis(250),
                Duration::ZERO,
            )),
            write_bookings: AtomicUsize::new(0),
        })
    }

    fn write_bookings(&self) -> usize {
        self.write_bookings.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Pacer for CountingPacer {
    async fn book(
        &self,
        budget: Budget,
        now: Timestamp,
        latest: Timestamp,
    ) -> Result<Booking, PacerError> {
        if budget == Budget::Write {
            self.write_bookings.fetch_add(1, Ordering::SeqCst);
        }
        self.pacer.book(budget, now, latest).await
    }

    async fn release(&self, slot: &Slot) -> Result<(), PacerError> {
        self.pacer.release(slot).await
    }

    async fn pause(&self, until: Timestamp) -> Result<(), PacerError> {
        self.pacer.pause(until).await
    }

    async fn is_valid(&self, slot: &Slot) -> Result<bool, PacerError> {
        self.pacer.is_valid(slot).await
    }

    async fn state(&self) -> Result<PacerState, PacerError> {
        self.pacer.state().await
    }
}

/// One pass over an unknown row whose name Graph's list shows as `listed`, on a pacer that
/// counts write bookings; answers how many write slots the delivery booked and the pass.
async fn write_slots_booked_reconciling(
    listed: Vec<RemotePartner>,
    posted: bool,
) -> (usize, DispatchPass) {
    let row = unknown_row();
    let mut graph = MockGraphGateway::new();
    graph
        .expect_list_partners()
        .times(1)
        .returning(move || Ok(listed.clone()));
    let meta = graph_meta(201, None);
    let mut outbox = outbox_attempting(&row);
    if posted {
        expect_post(&mut graph, &row, created(meta.clone()));
        expect_finish(
            &mut outbox,
            expected_finish(&row, meta, DeliveryOutcome::Created, delivered()),
        );
    } else {
        graph.expect_create_partner().never();
        expect_finish(
            &mut outbox,
            expected_finish(
                &row,
                GraphResponseMeta::default(),
                DeliveryOutcome::Adopted,
                delivered(),
            ),
        );
    }
    let pacer = CountingPacer::new();
    let dispatcher = Dispatcher::new(
        Arc::new(outbox),
        Arc::new(partners_holding_nothing()),
        Arc::new(graph),
        Arc::new(fixed_clock()),
        Arc::new(sequential_ids()),
        Arc::new(fixed_jitter()),
        pacer.clone(),
        Arc::new(NoWait),
        tenant_id(),
        policy(),
    );
    let pass = dispatcher.run_once().await.expect("a successful pass");
    (pacer.write_bookings(), pass)
}

/// A slot given back is booked again only when it is the latest one booked; with several
/// workers booking, a slot taken by a delivery that then writes nothing is mostly lost to the
/// budget. So what Graph's list holds is matched before any slot is taken, and a row adopted
/// from Graph takes none, while a row that Graph does not hold takes the one its POST needs.
#[tokio::test]
async fn an_unknown_row_adopted_from_graph_takes_no_write_slot_and_one_posted_again_takes_one() {
    let (adopting, pass) =
        write_slots_booked_reconciling(vec![remote(GRAPH_ID, Some(DISPLAY_NAME))], false).await;
    assert_eq!(pass.delivered, 1, "adopted");
    assert_eq!(
        adopting, 0,
        "an adoption writes nothing, so it books no write slot"
    );

    let (posting, pass) =
        write_slots_booked_reconciling(vec![remote("graph-other", Some("Fabrikam"))], true).await;
    assert_eq!(pass.delivered, 1, "posted");
    assert_eq!(posting, 1, "the POST went out on one write slot");
}

#[tokio::test]
async fn an_unknown_row_absent_from_graph_is_posted_once_with_the_attempts_client_request_id() {
    let row = unknown_row();
    let meta = graph_meta(201, None);
    let mut order = Sequence::new();
    let mut graph = MockGraphGateway::new();
    graph
        .expect_list_partners()
        .times(1)
        .in_sequence(&mut order)
        .returning(|| Ok(vec![remote("graph-other", Some("Fabrikam"))]));
    let mut outbox = outbox_handing_out(vec![row.clone()]);
    let start = expected_start(&row);
    outbox
        .expect_start_delivery()
        .withf(move |recorded| recorded == &start)
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    let answer = created(meta.clone());
    expect_post_in_order(&mut graph, &row, answer, &mut order);
    let finish = expected_finish(&row, meta, DeliveryOutcome::Created, delivered());
    expect_finish_in_order(&mut outbox, finish, &mut order);
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a row posted after reconciliation makes a successful pass"),
        DispatchPass {
            claimed: 1,
            delivered: 1,
            ..DispatchPass::default()
        }
    );
}

#[tokio::test]
async fn an_unknown_row_found_twice_in_graph_is_dead_lettered_as_a_duplicate_naming_both_ids_and_never_posted()
 {
    let row = unknown_row();
    let mut order = Sequence::new();
    let graph = graph_listing(
        Ok(vec![
            remote("graph-a", Some("Contoso")),
            remote("graph-b", Some("contoso ")),
        ]),
        &mut order,
    );
    let mut outbox = outbox_attempting(&row);
    expect_dead_finish(
        &mut outbox,
        expected_finish(
            &row,
            GraphResponseMeta::default(),
            DeliveryOutcome::DuplicateInGraph,
            dead(),
        ),
        &["duplicate in Graph", "graph-a", "graph-b"],
    );
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a duplicated row makes a successful pass"),
        pass_of_one(&dead())
    );
}

#[tokio::test]
async fn an_unknown_row_stays_unknown_with_back_off_and_is_not_posted_when_listing_graph_fails() {
    let row = unknown_row();
    let meta = graph_meta(503, Some("ServiceUnavailable"));
    let mut order = Sequence::new();
    let graph = graph_listing(Err(GraphReadError::Transient(meta)), &mut order);
    let transition = retry(WaitingState::Unknown, after(backoff(ATTEMPT)));
    // Nothing was sent: no attempt is recorded or counted, the row is handed back.
    let outbox = outbox_releasing(&row, WaitingState::Unknown, after(backoff(ATTEMPT)));
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a failed reconciliation makes a successful pass"),
        pass_of_one(&transition)
    );
}

// ---- giving up on transient failures --------------------------------------------------------

#[tokio::test]
async fn a_transient_failure_on_the_last_allowed_attempt_dead_letters_the_row() {
    let row = ClaimedRow {
        operation: Operation::Create,
        in_graph: None,
        attempts: policy().max_attempts - 1,
        attempts_in_window: policy().max_attempts - 1,
        ..pending_row()
    };
    let meta = graph_meta(503, Some("ServiceUnavailable"));
    let mut outbox = outbox_attempting(&row);
    expect_dead_finish(
        &mut outbox,
        expected_finish(&row, meta.clone(), DeliveryOutcome::Unknown, dead()),
        &["gave up after 50 attempts"],
    );
    let dispatcher = dispatcher_over(outbox, graph_answering(&row, CreateOutcome::Unknown, meta));

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a dead-lettered row makes a successful pass"),
        pass_of_one(&dead())
    );
}

#[tokio::test]
async fn a_transient_failure_more_than_max_age_after_the_first_attempt_dead_letters_the_row() {
    let max_age = i64::try_from(policy().max_age.as_secs()).expect("a day in seconds");
    let row = ClaimedRow {
        operation: Operation::Create,
        in_graph: None,
        first_attempt_at: Some(seconds_after_now(-max_age - 1)),
        ..pending_row()
    };
    let meta = graph_meta(503, Some("ServiceUnavailable"));
    let mut outbox = outbox_attempting(&row);
    expect_dead_finish(
        &mut outbox,
        expected_finish(&row, meta.clone(), DeliveryOutcome::Unknown, dead()),
        &["gave up", "86400 s after the first attempt"],
    );
    let dispatcher = dispatcher_over(outbox, graph_answering(&row, CreateOutcome::Unknown, meta));

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a dead-lettered row makes a successful pass"),
        pass_of_one(&dead())
    );
}

#[tokio::test]
async fn a_transient_failure_below_both_limits_is_retried() {
    let max_age = i64::try_from(policy().max_age.as_secs()).expect("a day in seconds");
    let row = ClaimedRow {
        operation: Operation::Create,
        in_graph: None,
        attempts: policy().max_attempts - 2,
        attempts_in_window: policy().max_attempts - 2,
        first_attempt_at: Some(seconds_after_now(-max_age + 1)),
        ..pending_row()
    };
    let transition = retry(WaitingState::Unknown, after(policy().settle));

    let pass = attempt_pending_row_when_graph_answers(
        row,
        CreateOutcome::Unknown,
        graph_meta(503, Some("ServiceUnavailable")),
        DeliveryOutcome::Unknown,
        transition.clone(),
    )
    .await;

    assert_eq!(
        pass.expect("a retried row makes a successful pass"),
        pass_of_one(&transition)
    );
}

#[tokio::test]
async fn a_re_queued_row_counts_only_the_attempts_of_its_new_window_towards_giving_up() {
    // Dead after 60 attempts, then re-queued: attempt numbers go on (61), the limits start afresh.
    let row = ClaimedRow {
        operation: Operation::Create,
        in_graph: None,
        attempts: policy().max_attempts + 10,
        attempts_in_window: 0,
        first_attempt_at: Some(seconds_after_now(-600)),
        ..unknown_row()
    };
    let meta = graph_meta(503, Some("ServiceUnavailable"));
    let mut order = Sequence::new();
    let graph = graph_listing(Err(GraphReadError::Transient(meta)), &mut order);
    let due = after(backoff(policy().max_attempts + 11));
    let transition = retry(WaitingState::Unknown, due);
    let outbox = outbox_releasing(&row, WaitingState::Unknown, due);
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a retried row makes a successful pass"),
        pass_of_one(&transition)
    );
}

// ---- store failures -------------------------------------------------------------------------

fn store_failure() -> StoreError {
    StoreError::Unexpected(anyhow::anyhow!("disk I/O error"))
}

#[tokio::test]
async fn a_store_failure_while_recovering_leases_fails_the_pass_before_anything_is_claimed() {
    let mut outbox = MockOutbox::new();
    outbox
        .expect_recover_expired_leases()
        .with(eq(now()))
        .times(1)
        .returning(|_| Err(store_failure()));
    outbox.expect_claim_due().never();
    let dispatcher = dispatcher_over(outbox, untouched_graph());

    let pass = dispatcher.run_once().await;

    let error = pass.expect_err("a store failure fails the pass");
    assert!(
        format!("{error:?}").contains("disk I/O error"),
        "the cause is kept: {error:?}"
    );
}

#[tokio::test]
async fn a_store_failure_while_claiming_fails_the_pass_and_sends_nothing() {
    let mut outbox = MockOutbox::new();
    outbox
        .expect_recover_expired_leases()
        .with(eq(now()))
        .times(1)
        .returning(|_| Ok(0));
    outbox
        .expect_claim_due()
        .times(1)
        .returning(|_, _, _, _, _| Err(store_failure()));
    outbox.expect_start_delivery().never();
    outbox.expect_release().never();
    let dispatcher = dispatcher_over(outbox, untouched_graph());

    let pass = dispatcher.run_once().await;

    let error = pass.expect_err("a store failure fails the pass");
    assert!(
        format!("{error:?}").contains("disk I/O error"),
        "the cause is kept: {error:?}"
    );
}

#[tokio::test]
async fn a_store_failure_while_starting_the_attempt_fails_the_pass_before_graph_is_called() {
    let row = pending_row();
    let mut outbox = outbox_handing_out(vec![row.clone()]);
    let start = expected_start(&row);
    outbox
        .expect_start_delivery()
        .withf(move |recorded| recorded == &start)
        .times(1)
        .returning(|_| Err(store_failure()));
    let dispatcher = dispatcher_over(outbox, untouched_graph());

    let pass = dispatcher.run_once().await;

    let error = pass.expect_err("a store failure fails the pass");
    assert!(
        format!("{error:?}").contains("disk I/O error"),
        "the cause is kept: {error:?}"
    );
}

#[tokio::test]
async fn a_store_failure_while_recording_the_end_of_the_attempt_fails_the_pass() {
    let row = pending_row();
    let meta = graph_meta(201, None);
    let mut outbox = outbox_attempting(&row);
    outbox
        .expect_finish_delivery()
        .withf(|recorded| recorded.outbox_id == outbox_id())
        .times(1)
        .returning(|_| Err(store_failure()));
    let graph = graph_answering(
        &row,
        CreateOutcome::Created {
            graph_id: GRAPH_ID.to_owned(),
        },
        meta,
    );
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    let error = pass.expect_err("a store failure fails the pass");
    assert!(
        format!("{error:?}").contains("disk I/O error"),
        "the cause is kept: {error:?}"
    );
}

// ---- known defects: these state the required behaviour and fail today ----------------------

#[tokio::test]
async fn an_unknown_row_whose_reconciliation_fails_on_our_credentials_is_never_dead_lettered_even_past_both_limits()
 {
    let row = ClaimedRow {
        operation: Operation::Create,
        in_graph: None,
        attempts: policy().max_attempts,
        attempts_in_window: policy().max_attempts,
        first_attempt_at: Some(seconds_after_now(-2 * 24 * 3600)),
        ..unknown_row()
    };
    let mut order = Sequence::new();
    let graph = graph_listing(
        Err(GraphReadError::AuthFailure(graph_meta(
            401,
            Some("InvalidAuthenticationToken"),
        ))),
        &mut order,
    );
    let due = after(backoff(policy().max_attempts + 1));
    let transition = retry(WaitingState::Unknown, due);
    let outbox = outbox_releasing(&row, WaitingState::Unknown, due);
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a failed reconciliation makes a successful pass"),
        pass_of_one(&transition)
    );
}

#[tokio::test]
async fn a_conflict_after_a_reconciliation_that_found_nothing_dead_letters_the_row_naming_the_status()
 {
    let row = unknown_row();
    let mut order = Sequence::new();
    let mut graph = MockGraphGateway::new();
    graph
        .expect_list_partners()
        .times(1)
        .in_sequence(&mut order)
        .returning(|| Ok(Vec::new()));
    let partner = row.partner.clone();
    graph
        .expect_create_partner()
        .withf(move |posted, client_request_id| {
            posted == &partner && *client_request_id == first_request_id()
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| GraphCallResult {
            outcome: CreateOutcome::Conflict,
            meta: graph_meta(409, Some("Conflict")),
        });
    let mut outbox = outbox_attempting(&row);
    expect_finish_where(
        &mut outbox,
        |recorded| matches!(&recorded.transition, Transition::Dead { reason } if reason.contains("409")),
    );
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    assert_eq!(
        pass.expect("a dead-lettered row makes a successful pass"),
        pass_of_one(&dead())
    );
}

// ---- one good list of Graph serves many rows -------------------------------------------------

/// Two passes, each claiming `second_due` unknown rows in turn (the first due now), with Graph
/// holding both; answers how many times Graph was listed.
async fn lists_for_two_unknown_rows(second_due: Timestamp) -> usize {
    let first = unknown_row();
    let second = ClaimedRow {
        outbox_id: Uuid::from_u128(0x5ec0_4d00),
        due_at: second_due,
        ..unknown_row()
    };
    let mut outbox = MockOutbox::new();
    outbox
        .expect_recover_expired_leases()
        .times(2)
        .returning(|_| Ok(0));
    expect_claim_at(&mut outbox, now(), vec![first]);
    expect_claim_at(&mut outbox, now(), vec![second]);
    outbox
        .expect_start_delivery()
        .times(2)
        .returning(|_| Ok(()));
    let lists = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = lists.clone();
    let mut graph = MockGraphGateway::new();
    graph.expect_list_partners().returning(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(vec![remote(GRAPH_ID, Some("Contoso"))])
    });
    graph.expect_create_partner().never();
    outbox
        .expect_finish_delivery()
        .withf(|finish| finish.outcome == DeliveryOutcome::Adopted)
        .times(2)
        .returning(|_| Ok(()));
    let dispatcher = dispatcher_over(outbox, graph);

    dispatcher.run_once().await.expect("first pass");
    dispatcher.run_once().await.expect("second pass");

    lists.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn one_good_list_of_graph_serves_a_later_row_that_was_due_before_it_was_read() {
    let lists = lists_for_two_unknown_rows(now()).await;

    assert_eq!(lists, 1, "the second row settled before the list was read");
}

#[tokio::test]
async fn a_row_that_became_due_after_the_last_list_was_read_gets_a_new_list() {
    let lists = lists_for_two_unknown_rows(seconds_after_now(1)).await;

    assert_eq!(
        lists, 2,
        "the old list may predate what the second row's last attempt did"
    );
}

// ---- deleted partners and objects held by other partners --------------------------------------

#[tokio::test]
async fn an_unknown_create_of_a_deleted_partner_absent_from_graph_is_never_posted() {
    let row = ClaimedRow {
        partner_deleted: true,
        ..unknown_row()
    };
    let mut order = Sequence::new();
    let graph = graph_listing(
        Ok(vec![remote("graph-other", Some("Fabrikam"))]),
        &mut order,
    );
    let transition = Transition::Delivered {
        in_graph: InGraph::Nothing,
    };
    let mut outbox = outbox_attempting(&row);
    expect_finish(
        &mut outbox,
        expected_finish(
            &row,
            GraphResponseMeta::default(),
            DeliveryOutcome::AbsentInGraph,
            transition.clone(),
        ),
    );
    let dispatcher = dispatcher_over(outbox, graph);

    let pass = dispatcher.run_once().await;

    assert_eq!(pass.expect("a successful pass"), pass_of_one(&transition));
}

#[tokio::test]
async fn an_object_another_partner_holds_is_never_adopted_even_under_the_same_name() {
    let row = unknown_row();
    let mut order = Sequence::new();
    let mut graph = MockGraphGateway::new();
    graph
        .expect_list_partners()
        .times(1)
        .in_sequence(&mut order)
        .returning(|| Ok(vec![remote("held-by-a-renamed-partner", Some("Contoso"))]));
    let answer = GraphCallResult {
        outcome: CreateOutcome::Created {
            graph_id: GRAPH_ID.to_owned(),
        },
        meta: graph_meta(201, None),
    };
    graph
        .expect_create_partner()
        .times(1)
        .returning(move |_, _| answer.clone());
    let mut partners = MockPartnerStore::new();
    partners
        .expect_graph_id_held_by_another()
        .withf(|graph_id, _| graph_id == "held-by-a-renamed-partner")
        .returning(|_, _| Ok(true));
    let mut outbox = MockOutbox::new();
    outbox.expect_recover_expired_leases().returning(|_| Ok(0));
    expect_claim_at(&mut outbox, now(), vec![row.clone()]);
    outbox
        .expect_start_delivery()
        .times(1)
        .returning(|_| Ok(()));
    outbox
        .expect_finish_delivery()
        .withf(|finish| finish.outcome == DeliveryOutcome::Created)
        .times(1)
        .returning(|_| Ok(()));
    let dispatcher = dispatcher_with(partners, outbox, graph, Arc::new(fixed_clock()));

    let pass = dispatcher.run_once().await;

    assert_eq!(pass.expect("a successful pass").delivered, 1);
}
