//! Unit tests of the create-partner and get-partner use cases, over mocked ports.
//!
//! Time and identity are pinned: the clock always answers [`now`], and the id source hands
//! out `Uuid::from_u128(1)`, `2`, `3`, ... in call order. A create asks for them as partner id,
//! outbox id, `client-request-id`, the `Created` audit entry and, when Graph refuses the
//! partner, the `CreateRejectedByGraph` audit entry, so every id below is known in advance.

use std::time::Duration;

use cmp_domain::{DisplayName, PartnerError, PartnerState, Platforms, Timestamp};
use mockall::Sequence;
use mockall::predicate::eq;
use uuid::Uuid;

use super::*;
use crate::ports::{
    CreateOutcome, GraphCallResult, GraphResponseMeta, InGraph, MockGraphGateway, MockOutbox,
    MockPartnerStore, MockSleeper, UpdatedPartner, WaitingState,
};
use crate::test_support::{
    fixed_clock, graph_meta, now, policy_with_batch, seconds_after_now, sequential_ids, tenant_id,
    unspaced_pacer,
};

const REQUEST_ID: &str = "req-42";
const CALLER: &str =
    "app:7e577e57-0000-0000-0000-000000000000/0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11";
const DISPLAY_NAME: &str = "Contoso";
const GRAPH_ID: &str = "graph-partner-1";

fn partner_id() -> PartnerId {
    PartnerId::from_uuid(Uuid::from_u128(1))
}

fn outbox_id() -> Uuid {
    Uuid::from_u128(2)
}

fn client_request_id() -> Uuid {
    Uuid::from_u128(3)
}

fn created_audit_id() -> Uuid {
    Uuid::from_u128(4)
}

fn rejected_audit_id() -> Uuid {
    Uuid::from_u128(5)
}

fn context() -> RequestContext {
    RequestContext {
        request_id: REQUEST_ID.to_owned(),
        caller: CALLER.to_owned(),
    }
}

fn command_with_heartbeat(last_heartbeat: Timestamp) -> NewPartner {
    NewPartner {
        display_name: DisplayName::parse(DISPLAY_NAME).expect("a valid display name"),
        state: PartnerState::Enabled,
        last_heartbeat,
        platforms: Platforms::none(),
    }
}

fn command() -> NewPartner {
    command_with_heartbeat(now())
}

/// The partner a create of [`command`] builds: the first id, the fixed clock.
fn expected_partner() -> Partner {
    Partner::create(partner_id(), command(), now()).expect("the command is valid")
}

/// Everything the create transaction must write besides the partner.
fn expected_write() -> NewPartnerWrite {
    NewPartnerWrite {
        tenant_id: tenant_id(),
        delivery: InlineDelivery {
            outbox_id: outbox_id(),
            lease: Lease {
                owner: LeaseOwner::request(REQUEST_ID),
                expires_at: seconds_after_now(160),
            },
            client_request_id: client_request_id(),
        },
        now: now(),
        audit: AuditEntry {
            id: created_audit_id(),
            partner_id: partner_id(),
            action: AuditAction::Created,
            request_id: REQUEST_ID.to_owned(),
            caller: CALLER.to_owned(),
            at: now(),
            detail: format!("created partner '{DISPLAY_NAME}'"),
        },
    }
}

/// The delivery record the inline delivery must leave for `transition`.
fn expected_finish(
    meta: GraphResponseMeta,
    outcome: DeliveryOutcome,
    transition: Transition,
) -> DeliveryEnd {
    DeliveryEnd {
        outbox_id: outbox_id(),
        partner_id: partner_id(),
        client_request_id: client_request_id(),
        finished_at: now(),
        meta,
        outcome,
        transition,
    }
}

fn retry(state: WaitingState, seconds_later: i64) -> Transition {
    Transition::Retry {
        state,
        next_attempt_at: seconds_after_now(seconds_later),
    }
}

/// A sleeper whose every sleep is over at once: the inline deadline is always ready.
fn instant_sleeper() -> MockSleeper {
    let mut sleeper = MockSleeper::new();
    sleeper.expect_sleep().returning(|_| ());
    sleeper
}

fn untouched_sleeper() -> MockSleeper {
    let mut sleeper = MockSleeper::new();
    sleeper.expect_sleep().never();
    sleeper
}

fn untouched_graph() -> MockGraphGateway {
    let mut graph = MockGraphGateway::new();
    graph.expect_create_partner().never();
    graph
}

/// Graph answering `outcome` to exactly one call, made with the stored partner and the
/// `client-request-id` recorded in the outbox write.
fn graph_answering(outcome: CreateOutcome, meta: GraphResponseMeta) -> MockGraphGateway {
    let answer = GraphCallResult { outcome, meta };
    let mut graph = MockGraphGateway::new();
    graph
        .expect_create_partner()
        .withf(|partner, id| partner == &expected_partner() && *id == client_request_id())
        .times(1)
        .returning(move |_, _| answer.clone());
    graph
}

/// The two store ports a partner use case writes through.
#[derive(Default)]
struct Stores {
    partners: MockPartnerStore,
    outbox: MockOutbox,
}

/// Stores expecting exactly the create transaction of [`command`], committing it.
fn stores_committing_the_insert() -> Stores {
    let mut stores = Stores::default();
    stores
        .partners
        .expect_insert_partner()
        .withf(|partner, write| partner == &expected_partner() && write == &expected_write())
        .times(1)
        .returning(|_, _| Ok(()));
    stores
}

/// Stores committing the insert, then expecting exactly one delivery record equal to `end`
/// and no undo.
fn stores_recording(end: DeliveryEnd) -> Stores {
    let mut stores = stores_committing_the_insert();
    stores
        .outbox
        .expect_finish_delivery()
        .withf(move |recorded| recorded == &end)
        .times(1)
        .returning(|_| Ok(()));
    stores.outbox.expect_undo_rejected_create().never();
    stores
}

/// The numbers of `config/default.toml`.
fn policy() -> OutboxPolicy {
    policy_with_batch(1)
}

fn service_over(stores: Stores, graph: impl GraphGateway, sleeper: MockSleeper) -> PartnerService {
    PartnerService::new(
        Arc::new(stores.partners),
        Arc::new(stores.outbox),
        Arc::new(graph),
        Arc::new(fixed_clock()),
        Arc::new(sequential_ids()),
        Arc::new(sleeper),
        unspaced_pacer(),
        tenant_id(),
        policy(),
    )
}

/// A Graph that never answers, so that only the inline deadline can end the attempt. It
/// records the `client-request-id` of each call it receives.
#[derive(Default)]
struct SilentGraph {
    calls: Arc<std::sync::Mutex<Vec<Uuid>>>,
}

#[async_trait::async_trait]
impl GraphGateway for SilentGraph {
    async fn create_partner(&self, _partner: &Partner, client_request_id: Uuid) -> GraphCallResult {
        self.calls
            .lock()
            .expect("no test thread panicked while holding the lock")
            .push(client_request_id);
        std::future::pending().await
    }

    async fn get_partner(
        &self,
        _graph_id: &str,
    ) -> Result<Option<crate::RemotePartner>, crate::GraphReadError> {
        std::future::pending().await
    }

    async fn list_partners(&self) -> Result<Vec<crate::RemotePartner>, crate::GraphReadError> {
        std::future::pending().await
    }

    async fn find_partners_named(
        &self,
        _display_name: &str,
    ) -> Result<crate::NamedPartners, crate::GraphReadError> {
        std::future::pending().await
    }

    async fn update_partner(
        &self,
        _graph_id: &str,
        _partner: &Partner,
        _id: Uuid,
    ) -> crate::GraphWriteResult {
        std::future::pending().await
    }

    async fn delete_partner(&self, _graph_id: &str, _id: Uuid) -> crate::GraphWriteResult {
        std::future::pending().await
    }
}

/// The create of a partner whose inline delivery ends with `outcome` and must be recorded as
/// `recorded` moving the row to `transition`; answers what the create returned.
async fn create_when_graph_answers(
    outcome: CreateOutcome,
    meta: GraphResponseMeta,
    recorded: DeliveryOutcome,
    transition: Transition,
) -> Result<CreatePartnerOutput, CreatePartnerError> {
    let stores = stores_recording(expected_finish(meta.clone(), recorded, transition));
    let service = service_over(stores, graph_answering(outcome, meta), instant_sleeper());
    service.create_partner(command(), &context()).await
}

// ---- create: success ----------------------------------------------------------------------

#[tokio::test]
async fn create_answers_created_when_graph_creates_the_partner() {
    let meta = graph_meta(201, None);
    let stores = stores_recording(expected_finish(
        meta.clone(),
        DeliveryOutcome::Created,
        Transition::Delivered {
            in_graph: InGraph::Object(GRAPH_ID.to_owned()),
        },
    ));
    let graph = graph_answering(
        CreateOutcome::Created {
            graph_id: GRAPH_ID.to_owned(),
        },
        meta,
    );
    let service = service_over(stores, graph, instant_sleeper());

    let result = service.create_partner(command(), &context()).await;

    assert_eq!(
        result.expect("a create Graph accepted succeeds"),
        CreatePartnerOutput::Created(expected_partner())
    );
}

#[tokio::test]
async fn create_commits_the_partner_before_calling_graph_and_records_the_attempt_after() {
    let mut order = Sequence::new();
    let mut stores = Stores::default();
    let mut graph = MockGraphGateway::new();
    stores
        .partners
        .expect_insert_partner()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
    graph
        .expect_create_partner()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| GraphCallResult {
            outcome: CreateOutcome::Created {
                graph_id: GRAPH_ID.to_owned(),
            },
            meta: GraphResponseMeta::default(),
        });
    stores
        .outbox
        .expect_finish_delivery()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    let service = service_over(stores, graph, instant_sleeper());

    let result = service.create_partner(command(), &context()).await;

    assert_eq!(
        result.expect("a create Graph accepted succeeds"),
        CreatePartnerOutput::Created(expected_partner())
    );
}

// ---- create: refused before Graph ---------------------------------------------------------

#[tokio::test]
async fn create_reports_a_duplicate_name_and_never_calls_graph_when_the_name_is_taken() {
    let mut stores = Stores::default();
    stores
        .partners
        .expect_insert_partner()
        .withf(|partner, write| partner == &expected_partner() && write == &expected_write())
        .times(1)
        .returning(|_, _| {
            Err(StoreError::DuplicateDisplayName {
                display_name: DISPLAY_NAME.to_owned(),
            })
        });
    stores.outbox.expect_finish_delivery().never();
    stores.outbox.expect_undo_rejected_create().never();
    let service = service_over(stores, untouched_graph(), untouched_sleeper());

    let result = service.create_partner(command(), &context()).await;

    match result {
        Err(CreatePartnerError::DuplicateDisplayName { display_name }) => {
            assert_eq!(display_name, DISPLAY_NAME);
        }
        other => panic!("expected DuplicateDisplayName, got {other:?}"),
    }
}

#[tokio::test]
async fn create_refuses_a_heartbeat_more_than_five_minutes_ahead_without_touching_store_or_graph() {
    let heartbeat = Timestamp::from_unix_seconds(1_700_000_300, 1).expect("in range");
    let mut stores = Stores::default();
    stores.partners.expect_insert_partner().never();
    stores.outbox.expect_finish_delivery().never();
    stores.outbox.expect_undo_rejected_create().never();
    let service = service_over(stores, untouched_graph(), untouched_sleeper());

    let result = service
        .create_partner(command_with_heartbeat(heartbeat), &context())
        .await;

    match result {
        Err(CreatePartnerError::Invalid(error)) => assert_eq!(
            error,
            PartnerError::HeartbeatInFuture {
                heartbeat,
                latest_allowed: seconds_after_now(300),
            }
        ),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn create_reports_unexpected_and_never_calls_graph_when_the_insert_fails() {
    let mut stores = Stores::default();
    stores
        .partners
        .expect_insert_partner()
        .times(1)
        .returning(|_, _| Err(StoreError::Unexpected(anyhow::anyhow!("disk I/O error"))));
    stores.outbox.expect_finish_delivery().never();
    stores.outbox.expect_undo_rejected_create().never();
    let service = service_over(stores, untouched_graph(), untouched_sleeper());

    let result = service.create_partner(command(), &context()).await;

    match result {
        Err(CreatePartnerError::Unexpected(error)) => {
            assert!(
                format!("{error:#}").contains("disk I/O error"),
                "the cause is kept: {error:#}"
            );
        }
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

// ---- create: Graph did not create it, the row goes back to the dispatcher -----------------

#[tokio::test]
async fn create_answers_accepted_and_hands_the_row_back_as_the_delivery_rules_say_when_graph_does_not_create_it()
 {
    let throttled = |retry_after: Option<u64>| CreateOutcome::NotApplied {
        retry_after: retry_after.map(Duration::from_secs),
    };
    let cases = [
        (
            "429 without Retry-After: pending after the base delay",
            throttled(None),
            graph_meta(429, Some("TooManyRequests")),
            DeliveryOutcome::NotApplied,
            retry(WaitingState::Pending, 10),
        ),
        (
            "429 asking for longer than the base delay: pending until Retry-After",
            throttled(Some(300)),
            graph_meta(429, Some("TooManyRequests")),
            DeliveryOutcome::NotApplied,
            retry(WaitingState::Pending, 300),
        ),
        (
            "429 asking for less than the base delay: pending after the base delay",
            throttled(Some(2)),
            graph_meta(429, Some("TooManyRequests")),
            DeliveryOutcome::NotApplied,
            retry(WaitingState::Pending, 10),
        ),
        (
            "our credentials fail: pending after the base delay",
            CreateOutcome::AuthFailure,
            graph_meta(403, Some("Forbidden")),
            DeliveryOutcome::AuthFailure,
            retry(WaitingState::Pending, 10),
        ),
        (
            "unknown outcome: unknown after the settle delay",
            CreateOutcome::Unknown,
            graph_meta(503, Some("ServiceUnavailable")),
            DeliveryOutcome::Unknown,
            retry(WaitingState::Unknown, 130),
        ),
        (
            "conflict: unknown, reconciled at once",
            CreateOutcome::Conflict,
            graph_meta(409, Some("Conflict")),
            DeliveryOutcome::Conflict,
            retry(WaitingState::Unknown, 0),
        ),
    ];
    for (case, outcome, meta, recorded, transition) in cases {
        let result = create_when_graph_answers(outcome, meta, recorded, transition).await;

        assert_eq!(
            result.unwrap_or_else(|error| panic!("case {case}: {error:?}")),
            CreatePartnerOutput::Accepted(expected_partner()),
            "case: {case}"
        );
    }
}

#[tokio::test]
async fn create_answers_accepted_and_records_deadline_passed_when_graph_is_slower_than_the_inline_deadline()
 {
    let stores = stores_recording(expected_finish(
        GraphResponseMeta::default(),
        DeliveryOutcome::DeadlinePassed,
        retry(WaitingState::Unknown, 130),
    ));
    let graph = SilentGraph::default();
    let graph_calls = Arc::clone(&graph.calls);
    let mut sleeper = MockSleeper::new();
    sleeper
        .expect_sleep()
        .with(eq(policy().inline_deadline))
        .times(1)
        .returning(|_| ());
    let service = service_over(stores, graph, sleeper);

    let result = service.create_partner(command(), &context()).await;

    assert_eq!(
        result.expect("a create past the deadline is accepted"),
        CreatePartnerOutput::Accepted(expected_partner())
    );
    assert_eq!(
        *graph_calls
            .lock()
            .expect("no test thread panicked while holding the lock"),
        vec![client_request_id()],
        "Graph is called once, with the recorded client-request-id"
    );
}

#[tokio::test]
async fn create_answers_accepted_when_recording_the_attempt_fails_after_graph_created_the_partner()
{
    let mut stores = stores_committing_the_insert();
    stores
        .outbox
        .expect_finish_delivery()
        .withf(|finish| {
            finish.outbox_id == outbox_id()
                && finish.client_request_id == client_request_id()
                && finish.transition
                    == Transition::Delivered {
                        in_graph: InGraph::Object(GRAPH_ID.to_owned()),
                    }
        })
        .times(1)
        .returning(|_| {
            Err(StoreError::Unexpected(anyhow::anyhow!(
                "database is locked"
            )))
        });
    stores.outbox.expect_undo_rejected_create().never();
    let graph = graph_answering(
        CreateOutcome::Created {
            graph_id: GRAPH_ID.to_owned(),
        },
        graph_meta(201, None),
    );
    let service = service_over(stores, graph, instant_sleeper());

    let result = service.create_partner(command(), &context()).await;

    assert_eq!(
        result.expect("a committed partner is never reported as a failure"),
        CreatePartnerOutput::Accepted(expected_partner())
    );
}

// ---- create: Graph refuses the partner for good -------------------------------------------

/// Stores committing the insert, then expecting exactly one undo of that create with a
/// `CreateRejectedByGraph` audit entry whose detail names `error_code`, answering `undo`.
fn stores_undoing(error_code: &'static str, undo: fn() -> Result<(), StoreError>) -> Stores {
    let mut stores = stores_committing_the_insert();
    stores.outbox.expect_finish_delivery().never();
    stores
        .outbox
        .expect_undo_rejected_create()
        .withf(move |partner, outbox, audit| {
            *partner == partner_id()
                && *outbox == outbox_id()
                && audit.id == rejected_audit_id()
                && audit.partner_id == partner_id()
                && audit.action == AuditAction::CreateRejectedByGraph
                && audit.request_id == REQUEST_ID
                && audit.caller == CALLER
                && audit.at == now()
                && audit.detail.contains(error_code)
        })
        .times(1)
        .returning(move |_, _, _| undo());
    stores
}

#[tokio::test]
async fn create_undoes_the_write_and_reports_graphs_error_when_graph_rejects_the_partner() {
    let meta = graph_meta(422, Some("ModelValidationFailure"));
    let stores = stores_undoing("ModelValidationFailure", || Ok(()));
    let graph = graph_answering(CreateOutcome::Rejected, meta);
    let service = service_over(stores, graph, instant_sleeper());

    let result = service.create_partner(command(), &context()).await;

    match result {
        Err(CreatePartnerError::GraphRejected {
            status,
            code,
            message,
        }) => {
            assert_eq!(status, 422);
            assert_eq!(code.as_deref(), Some("ModelValidationFailure"));
            assert_eq!(
                message.as_deref(),
                Some("ModelValidationFailure: the message of Graph")
            );
        }
        other => panic!("expected GraphRejected, got {other:?}"),
    }
}

#[tokio::test]
async fn the_inline_delivery_is_counted_by_its_outcome_and_a_rejected_create_is_no_dead_letter() {
    let recording = crate::outbox_metrics::Recording::new();
    let _recording = recording.install();
    let rejected = service_over(
        stores_undoing("ModelValidationFailure", || Ok(())),
        graph_answering(
            CreateOutcome::Rejected,
            graph_meta(422, Some("ModelValidationFailure")),
        ),
        instant_sleeper(),
    );

    let unknown = create_when_graph_answers(
        CreateOutcome::Unknown,
        graph_meta(503, None),
        DeliveryOutcome::Unknown,
        retry(WaitingState::Unknown, 130),
    )
    .await;
    let refused = rejected.create_partner(command(), &context()).await;

    assert!(matches!(unknown, Ok(CreatePartnerOutput::Accepted(_))));
    assert!(matches!(
        refused,
        Err(CreatePartnerError::GraphRejected { .. })
    ));
    for (series, expected) in [
        (
            r#"cmp_outbox_deliveries_total{outcome="unknown"}"#,
            Some(1.0),
        ),
        (
            r#"cmp_outbox_deliveries_total{outcome="rejected"}"#,
            Some(1.0),
        ),
        ("cmp_outbox_dead_letters_total", None),
    ] {
        assert_eq!(recording.sample(series), expected, "{series}");
    }
}

#[tokio::test]
async fn create_reports_status_400_when_graph_rejects_the_partner_without_a_status() {
    let meta = GraphResponseMeta {
        status: None,
        error_code: Some("BadRequest".to_owned()),
        error_message: None,
        request_id: None,
    };
    let stores = stores_undoing("BadRequest", || Ok(()));
    let graph = graph_answering(CreateOutcome::Rejected, meta);
    let service = service_over(stores, graph, instant_sleeper());

    let result = service.create_partner(command(), &context()).await;

    match result {
        Err(CreatePartnerError::GraphRejected {
            status,
            code,
            message,
        }) => {
            assert_eq!(status, 400);
            assert_eq!(code.as_deref(), Some("BadRequest"));
            assert_eq!(message, None);
        }
        other => panic!("expected GraphRejected, got {other:?}"),
    }
}

#[tokio::test]
async fn create_reports_unexpected_when_undoing_a_rejected_create_fails() {
    let meta = graph_meta(400, Some("InvalidRequest"));
    let stores = stores_undoing("InvalidRequest", || {
        Err(StoreError::Unexpected(anyhow::anyhow!("disk full")))
    });
    let graph = graph_answering(CreateOutcome::Rejected, meta);
    let service = service_over(stores, graph, instant_sleeper());

    let result = service.create_partner(command(), &context()).await;

    match result {
        Err(CreatePartnerError::Unexpected(error)) => {
            let chain = format!("{error:#}");
            assert!(
                chain.contains("undoing a create Graph refused") && chain.contains("disk full"),
                "the context and the cause are kept: {chain}"
            );
        }
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

// ---- get ----------------------------------------------------------------------------------

fn stores_reading(answer: fn() -> Result<Option<Partner>, StoreError>) -> Stores {
    let mut stores = Stores::default();
    stores
        .partners
        .expect_get_partner()
        .with(eq(partner_id()))
        .times(1)
        .returning(move |_| answer());
    stores
}

#[tokio::test]
async fn get_answers_the_stored_partner_when_it_exists() {
    let stores = stores_reading(|| Ok(Some(expected_partner())));
    let service = service_over(stores, untouched_graph(), untouched_sleeper());

    let result = service.get_partner(partner_id()).await;

    assert_eq!(
        result.expect("a stored partner is found"),
        expected_partner()
    );
}

#[tokio::test]
async fn get_reports_not_found_when_no_partner_has_the_id() {
    let stores = stores_reading(|| Ok(None));
    let service = service_over(stores, untouched_graph(), untouched_sleeper());

    let result = service.get_partner(partner_id()).await;

    match result {
        Err(GetPartnerError::NotFound(id)) => assert_eq!(id, partner_id()),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn get_reports_unexpected_when_the_store_fails() {
    let stores = stores_reading(|| Err(StoreError::Unexpected(anyhow::anyhow!("disk I/O error"))));
    let service = service_over(stores, untouched_graph(), untouched_sleeper());

    let result = service.get_partner(partner_id()).await;

    match result {
        Err(GetPartnerError::Unexpected(error)) => {
            let chain = format!("{error:#}");
            assert!(
                chain.contains("reading a partner") && chain.contains("disk I/O error"),
                "the context and the cause are kept: {chain}"
            );
        }
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

/// A partner store that applies an update's change to `stored`, as a store does under its
/// write lock, and answers what the change made of it (or its refusal).
fn stores_applying_updates_to(stored: Partner) -> Stores {
    let mut stores = Stores::default();
    stores
        .partners
        .expect_update_partner()
        .times(1)
        .returning(move |id, update| {
            assert_eq!(id, stored.id(), "the update names the stored partner");
            let changed = (update.change)(&stored).map_err(StoreError::Invalid)?;
            Ok(UpdatedPartner {
                partner: changed.partner,
                queued: ChangeQueued::Queued,
            })
        });
    stores.partners.expect_get_partner().never();
    stores
}

#[tokio::test]
async fn an_update_is_applied_to_the_partner_as_stored_when_the_write_runs_keeping_other_changes() {
    // Another PATCH landed between the caller's read and this write: the store holds it.
    let stored_now = expected_partner()
        .patched(
            &PartnerPatch {
                state: Some(PartnerState::Terminated),
                ..PartnerPatch::default()
            },
            now(),
        )
        .expect("valid");
    let service = service_over(
        stores_applying_updates_to(stored_now),
        MockGraphGateway::new(),
        MockSleeper::new(),
    );
    let rename = PartnerPatch {
        display_name: Some(DisplayName::parse("Renamed").expect("valid")),
        ..PartnerPatch::default()
    };

    let updated = service
        .update_partner(partner_id(), rename, &context())
        .await
        .expect("the update lands");

    assert_eq!(updated.display_name().as_str(), "Renamed");
    assert_eq!(
        updated.state(),
        PartnerState::Terminated,
        "the other update's change is kept"
    );
}

#[tokio::test]
async fn an_update_records_what_changed_in_its_audit_entry_with_the_callers_ids() {
    let mut stores = Stores::default();
    let stored = expected_partner();
    stores
        .partners
        .expect_update_partner()
        .times(1)
        .returning(move |_, update| {
            let changed = (update.change)(&stored).map_err(StoreError::Invalid)?;
            assert_eq!(changed.audit.action, AuditAction::Updated);
            assert_eq!(changed.audit.partner_id, partner_id());
            assert_eq!(changed.audit.request_id, REQUEST_ID);
            assert_eq!(changed.audit.caller, CALLER);
            assert_eq!(changed.audit.at, now());
            assert_eq!(
                changed.audit.detail,
                "displayName: 'Contoso' -> 'Renamed'; partnerState: enabled -> terminated"
            );
            assert_eq!(update.now, now());
            assert_eq!(update.tenant_id, tenant_id());
            Ok(UpdatedPartner {
                partner: changed.partner,
                queued: ChangeQueued::Folded,
            })
        });
    let service = service_over(stores, MockGraphGateway::new(), MockSleeper::new());
    let patch = PartnerPatch {
        display_name: Some(DisplayName::parse("Renamed").expect("valid")),
        state: Some(PartnerState::Terminated),
        ..PartnerPatch::default()
    };

    let updated = service
        .update_partner(partner_id(), patch, &context())
        .await;

    assert!(updated.is_ok(), "{updated:?}");
}

#[tokio::test]
async fn an_update_the_stored_partner_refuses_reports_the_broken_invariant() {
    let service = service_over(
        stores_applying_updates_to(expected_partner()),
        MockGraphGateway::new(),
        MockSleeper::new(),
    );
    let future = PartnerPatch {
        last_heartbeat: Some(seconds_after_now(3600)),
        ..PartnerPatch::default()
    };

    let updated = service
        .update_partner(partner_id(), future, &context())
        .await;

    match updated {
        Err(UpdatePartnerError::Invalid(PartnerError::HeartbeatInFuture { .. })) => {}
        other => panic!("expected Invalid, got {other:?}"),
    }
}
