//! The outbox port and its vocabulary: the durable queue of Graph operations owed, from the
//! moment a row is enqueued with its partner to the moment Graph confirms it (or an operator
//! gives up on it).
//!
//! Words, used the same way in types, SQL, logs and `docs/delivery.md`:
//! - **outbox row**: one Graph operation owed for one partner ([`Operation`]), with its
//!   [`OutboxState`];
//! - **delivery**: one attempt to carry a row to Graph, recorded before the call
//!   ([`DeliveryStart`]) and after it ([`DeliveryEnd`]), with its [`DeliveryOutcome`];
//! - **dispatcher**: the background worker that claims due rows and makes their deliveries.
//!
//! # The lifecycle, and who owns each step
//! 1. *Enqueue*, inside the partner's own transaction: the [`PartnerStore`] writes a create row
//!    (leased to the creating request, its first delivery started: [`InlineDelivery`]) with a
//!    new partner, and an update or delete row with a change. Enqueueing outside a partner
//!    write would let the two disagree, so it has no method of its own here.
//! 2. *Claim*, *start*, *finish*, *release*: [`Outbox::claim_due`], [`Outbox::start_delivery`],
//!    [`Outbox::finish_delivery`] (which also dead-letters), [`Outbox::release`].
//! 3. *Recover*: [`Outbox::recover_expired_leases`] turns lapsed leases `unknown`.
//! 4. *Undo*: [`Outbox::undo_rejected_create`] when Graph refuses a create for good.
//! 5. *Requeue*: [`Outbox::requeue_dead`], an operator's decision.
//! 6. Operator reads: [`Outbox::sync_state`], [`Outbox::list_rows`], [`Outbox::count_rows`],
//!    [`Outbox::history`]; and for the metrics, [`Outbox::oldest_waiting_created_at`].
//!
//! [`PartnerStore`]: crate::PartnerStore

use std::fmt;

use cmp_domain::{NaturalKey, Partner, PartnerId, TenantId, Timestamp};
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::names::stored_names;
use crate::ports::graph_gateway::GraphResponseMeta;
use crate::ports::partner_store::StoreError;

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    /// Waiting for a delivery at `next_attempt_at`; safe to send.
    Pending,
    /// Leased to one delivery (the creating request's or a dispatcher's).
    InFlight,
    /// Graph holds the result (or holds nothing, and need not: see [`InGraph::Nothing`]).
    Delivered,
    /// A delivery may or may not have reached Graph; Graph is asked before anything is resent.
    Unknown,
    /// Given up; waits for an operator.
    Dead,
}

stored_names!(OutboxState, "an outbox state", {
    Pending => "pending",
    InFlight => "in_flight",
    Delivered => "delivered",
    Unknown => "unknown",
    Dead => "dead",
});

/// The two states a row waits in for its next delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitingState {
    /// Safe to send.
    Pending,
    /// Reconcile with Graph first.
    Unknown,
}

impl From<WaitingState> for OutboxState {
    fn from(state: WaitingState) -> Self {
        match state {
            WaitingState::Pending => Self::Pending,
            WaitingState::Unknown => Self::Unknown,
        }
    }
}

impl WaitingState {
    /// The name stored and shown to operators (that of the [`OutboxState`]).
    pub fn as_str(&self) -> &'static str {
        OutboxState::from(*self).as_str()
    }
}

/// What an outbox row does in Graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// POST the partner.
    Create,
    /// PATCH the partner with its stored state.
    Update,
    /// DELETE the partner.
    Delete,
}

stored_names!(Operation, "an outbox operation", {
    Create => "create",
    Update => "update",
    Delete => "delete",
});

/// How one delivery ended, kept on its record for operators and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryOutcome {
    /// Graph created the partner (2xx to the POST).
    Created,
    /// Reconciliation found the partner in Graph already: adopted, nothing sent.
    Adopted,
    /// Graph applied an update or a delete (2xx, or 404 to a delete).
    Applied,
    /// Graph did not apply the request (429, or it never left): safe to resend.
    NotApplied,
    /// Our own credentials or permissions failed; an operator must act, nothing is lost.
    AuthFailure,
    /// Graph may or may not have applied the request (5xx, a timeout after sending).
    Unknown,
    /// Graph answered 409 to a create: it may hold the name already.
    Conflict,
    /// Graph refused the request for good.
    Rejected,
    /// Graph holds no object to update.
    NotFound,
    /// The inline delivery of a create was cut off by its deadline after the request went out.
    DeadlinePassed,
    /// Nothing was sent: the tenant's pacer had no write slot before the deadline (or a
    /// `Retry-After` pause began just before the request would have gone out).
    NotSent,
    /// The partner is not in Graph and need not be: a deleted partner's create, or a delete
    /// that found nothing to delete.
    AbsentInGraph,
    /// Graph holds several objects of the partner's name: an operator must choose.
    DuplicateInGraph,
    /// Reconciliation could not finish (a store failure, or Graph's list unreadable for a day).
    ReconcileFailed,
}

stored_names!(DeliveryOutcome, "a delivery outcome", {
    Created => "created",
    Adopted => "adopted",
    Applied => "applied",
    NotApplied => "not_applied",
    AuthFailure => "auth_failure",
    Unknown => "unknown",
    Conflict => "conflict",
    Rejected => "rejected",
    NotFound => "not_found",
    DeadlinePassed => "deadline_passed",
    NotSent => "not_sent",
    AbsentInGraph => "absent_in_graph",
    DuplicateInGraph => "duplicate_in_graph",
    ReconcileFailed => "reconcile_failed",
});

/// What Graph holds for a partner once a row of it was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InGraph {
    /// The object Graph assigned this id.
    Object(String),
    /// Nothing, and rightly so: the partner was deleted before its create reached Graph, or a
    /// delete found nothing to delete.
    Nothing,
}

impl InGraph {
    /// Graph's id, when Graph holds an object.
    pub fn graph_id(&self) -> Option<&str> {
        match self {
            Self::Object(id) => Some(id),
            Self::Nothing => None,
        }
    }
}

/// Who holds an outbox row's lease: a creating request (`request:<request-id>`) or a dispatcher
/// worker (`dispatcher:<worker id>`). A lease shows operators who holds a row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner(String);

impl LeaseOwner {
    /// The creating request with our `request-id`.
    pub fn request(request_id: &str) -> Self {
        Self(format!("request:{request_id}"))
    }

    /// A dispatcher worker, named by a fresh id.
    pub fn dispatcher(worker: Uuid) -> Self {
        Self(format!("dispatcher:{worker}"))
    }

    /// An owner read back from storage, where it was written by [`LeaseOwner::as_str`].
    pub fn from_stored(owner: String) -> Self {
        Self(owner)
    }

    /// The owner as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lease on an outbox row: who holds it, and until when. A row whose lease lapses turns
/// `unknown` (its holder may have sent something before it died).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who holds the row.
    pub owner: LeaseOwner,
    /// When the lease lapses unless renewed.
    pub expires_at: Timestamp,
}

/// The create row enqueued with a new partner: leased to the creating request, with its first
/// delivery started (recorded before the request calls Graph inline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineDelivery {
    /// Id of the outbox row, also its idempotency handle.
    pub outbox_id: Uuid,
    /// The creating request's lease.
    pub lease: Lease,
    /// `client-request-id` of the first Graph call, recorded before the call is made.
    pub client_request_id: Uuid,
}

/// An outbox row claimed by a dispatcher (state `in_flight`, leased to it), with the partner it
/// delivers as stored now: a later change folds into the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRow {
    /// The outbox row.
    pub outbox_id: Uuid,
    /// What the row does in Graph.
    pub operation: Operation,
    /// What Graph holds for the partner, once one of its rows was delivered; `None` while
    /// nobody knows (its create never confirmed).
    pub in_graph: Option<InGraph>,
    /// A caller deleted the partner (its delete row may follow this row).
    pub partner_deleted: bool,
    /// The partner to deliver.
    pub partner: Partner,
    /// The natural key reconciliation matches on.
    pub natural_key: NaturalKey,
    /// The state before the claim: `Pending` (send) or `Unknown` (reconcile first).
    pub previous_state: WaitingState,
    /// Deliveries made before this one, in all (delivery numbers continue from it).
    pub attempts: u32,
    /// Deliveries made since `first_attempt_at`: what the give-up limit counts. Equal to
    /// `attempts` unless an operator re-queued the row, which opens a new window.
    pub attempts_in_window: u32,
    /// When the first delivery of the current window started (the inline one, usually).
    pub first_attempt_at: Option<Timestamp>,
    /// When the row was written.
    pub created_at: Timestamp,
    /// When the row became due (its `next_attempt_at`). For a row whose last delivery had an
    /// unknown outcome this lies past that delivery's settle time: a list of Graph read at or
    /// after it shows whatever that delivery did.
    pub due_at: Timestamp,
}

/// The start of a delivery, committed before Graph is called so that a crash mid-call leaves
/// evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryStart {
    /// The outbox row.
    pub outbox_id: Uuid,
    /// 1-based delivery number.
    pub attempt: u32,
    /// The `client-request-id` the delivery sends.
    pub client_request_id: Uuid,
    /// When it starts.
    pub started_at: Timestamp,
    /// The lease the caller must hold, renewed to cover the call.
    pub lease: Lease,
}

/// Where an outbox row goes after a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Done: Graph holds the result.
    Delivered {
        /// What Graph holds now.
        in_graph: InGraph,
    },
    /// Back to wait for another delivery.
    Retry {
        /// `Pending` (safe to resend) or `Unknown` (reconcile first).
        state: WaitingState,
        /// Not before this instant.
        next_attempt_at: Timestamp,
    },
    /// Given up (dead-lettered): an operator must look, and may re-queue.
    Dead {
        /// Why, for operators: Graph's refusal, "duplicate in Graph", attempts exhausted.
        reason: String,
    },
}

/// The end of a delivery: what Graph said and where the row goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryEnd {
    /// The outbox row.
    pub outbox_id: Uuid,
    /// The partner the row delivers.
    pub partner_id: PartnerId,
    /// The `client-request-id` the delivery was started with.
    pub client_request_id: Uuid,
    /// When the delivery ended.
    pub finished_at: Timestamp,
    /// What Graph said.
    pub meta: GraphResponseMeta,
    /// How the delivery ended.
    pub outcome: DeliveryOutcome,
    /// Where the row goes.
    pub transition: Transition,
}

/// One recorded delivery, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// 1-based delivery number.
    pub attempt: u32,
    /// The `client-request-id` it sent.
    pub client_request_id: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended; `None` while in flight (or when the process died mid-call).
    pub finished_at: Option<Timestamp>,
    /// Graph's HTTP status.
    pub http_status: Option<u16>,
    /// Graph's `error.code`.
    pub graph_error_code: Option<String>,
    /// Graph's `request-id`.
    pub graph_request_id: Option<String>,
    /// How it ended; `None` while in flight.
    pub outcome: Option<DeliveryOutcome>,
}

/// An outbox row as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// The outbox row.
    pub outbox_id: Uuid,
    /// The partner.
    pub partner_id: PartnerId,
    /// What the row does in Graph.
    pub operation: Operation,
    /// Its display name's natural key.
    pub natural_key: NaturalKey,
    /// Where the row stands.
    pub state: OutboxState,
    /// Deliveries made.
    pub attempts: u32,
    /// When the next delivery is due.
    pub next_attempt_at: Timestamp,
    /// Status of the last delivery.
    pub last_status: Option<u16>,
    /// Graph's error code of the last delivery.
    pub last_error_code: Option<String>,
    /// `client-request-id` of the last delivery.
    pub last_client_request_id: Option<String>,
    /// Graph's id once delivered (none when Graph rightly holds nothing).
    pub graph_id: Option<String>,
    /// Why the row is dead.
    pub dead_reason: Option<String>,
    /// When the row was written.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When the first delivery started.
    pub first_attempt_at: Option<Timestamp>,
    /// Every delivery, oldest first (empty in listings).
    pub deliveries: Vec<DeliveryRecord>,
}

/// Everything recorded about a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerHistory {
    /// Audit entries, oldest first.
    pub audit: Vec<AuditEntry>,
    /// Its outbox rows (creates, updates, deletes), oldest first, each with its deliveries.
    pub rows: Vec<OutboxRecord>,
}

/// How many outbox rows are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// `pending`.
    pub pending: u64,
    /// `in_flight`.
    pub in_flight: u64,
    /// `delivered`.
    pub delivered: u64,
    /// `unknown`.
    pub unknown: u64,
    /// `dead`.
    pub dead: u64,
}

impl OutboxCounts {
    /// The count of `state`, to change in place.
    pub fn of_mut(&mut self, state: OutboxState) -> &mut u64 {
        match state {
            OutboxState::Pending => &mut self.pending,
            OutboxState::InFlight => &mut self.in_flight,
            OutboxState::Delivered => &mut self.delivered,
            OutboxState::Unknown => &mut self.unknown,
            OutboxState::Dead => &mut self.dead,
        }
    }
}

/// The outbox: every step of a row's life after it was enqueued with its partner (see the
/// module documentation), and the operators' reads.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Turns every `in_flight` row whose lease lapsed by `now` into `unknown`, due at once
    /// (its delivery may or may not have reached Graph). Returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn recover_expired_leases(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Atomically claims up to `limit` rows of `tenant` that are `pending` or `unknown` and due
    /// by `now`, oldest due first, leasing them to `owner` until `lease_expires_at`. Rows run in
    /// order: a row is claimed only when it is the oldest live (`pending`, `unknown`,
    /// `in_flight`) row of its partner and of its natural key; so it MUST NOT claim a row whose
    /// key or partner has a row `in_flight`, nor two rows of one key or partner.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails or a claimed partner cannot be read.
    async fn claim_due(
        &self,
        tenant: TenantId,
        now: Timestamp,
        owner: &LeaseOwner,
        lease_expires_at: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedRow>, StoreError>;

    /// Hands a claimed row back without a delivery: `in_flight` -> `state`, due at
    /// `next_attempt_at`, lease cleared. Used when the tenant's queue is paused by a
    /// `Retry-After`, or Graph's list could not be read, after the row was claimed.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails or the row is not `in_flight`.
    async fn release(
        &self,
        outbox_id: Uuid,
        state: WaitingState,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Records the start of a delivery (its record, the row's delivery count,
    /// `last_client_request_id`, `first_attempt_at` when unset) and renews the lease to
    /// `start.lease.expires_at`, committed before the call. MUST refuse, writing nothing, unless
    /// the row is `in_flight` and leased to `start.lease.owner`: a row whose lease lapsed may have
    /// been claimed by another worker, and two deliveries at once could POST twice.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the lease is not held; [`StoreError::Unexpected`] when
    /// the store fails.
    async fn start_delivery(&self, start: &DeliveryStart) -> Result<(), StoreError>;

    /// Records the end of a delivery and moves the row on, in one transaction; on `Delivered`
    /// also stores Graph's id on the partner, and for a `delete` row releases the deleted
    /// partner's display name (with a `deleted_in_graph` audit entry). A late end of a delivery
    /// that is no longer the row's latest (the row was taken over) MUST change nothing.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails, the row does not exist, or its latest
    /// delivery was not started with `end.client_request_id`.
    async fn finish_delivery(&self, end: &DeliveryEnd) -> Result<(), StoreError>;

    /// Undoes a create that Graph refused for good: removes the partner, its assignments, its
    /// outbox rows (the create and any update or delete queued behind it) and their
    /// deliveries, and writes `audit` (which keeps what Graph said), in one transaction.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn undo_rejected_create(
        &self,
        partner_id: PartnerId,
        outbox_id: Uuid,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;

    /// Puts a `dead` row back in the queue as `unknown` (so Graph is asked before anything is
    /// sent again), due at `now`, with a new give-up window starting at `now` and its history
    /// kept; `Ok(false)` when no dead row has that id.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn requeue_dead(&self, outbox_id: Uuid, now: Timestamp) -> Result<bool, StoreError>;

    /// The partner's latest outbox row with its deliveries; `None` when the partner has none.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn sync_state(&self, partner_id: PartnerId) -> Result<Option<OutboxRecord>, StoreError>;

    /// Rows in `state` (all rows when `None`), oldest first, at most `limit`, without
    /// deliveries.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn list_rows(
        &self,
        state: Option<OutboxState>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, StoreError>;

    /// How many rows are in each state.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn count_rows(&self) -> Result<OutboxCounts, StoreError>;

    /// When the oldest row waiting for a delivery (`pending` or `unknown`) was written; `None`
    /// when no row waits. What the queue's age gauge reports.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn oldest_waiting_created_at(&self) -> Result<Option<Timestamp>, StoreError>;

    /// The partner's history: its audit entries and every outbox row with its deliveries,
    /// oldest first. Deleted partners included.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn history(&self, partner_id: PartnerId) -> Result<PartnerHistory, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::UnknownName;

    #[test]
    fn every_value_of_the_vocabulary_reads_back_from_its_stored_name() {
        for state in OutboxState::ALL {
            assert_eq!(state.as_str().parse(), Ok(*state), "{state}");
        }
        for operation in Operation::ALL {
            assert_eq!(operation.as_str().parse(), Ok(*operation), "{operation}");
        }
        for outcome in DeliveryOutcome::ALL {
            assert_eq!(outcome.as_str().parse(), Ok(*outcome), "{outcome}");
        }
        assert_eq!(
            "sent".parse::<OutboxState>(),
            Err(UnknownName {
                text: "sent".to_owned(),
                what: "an outbox state"
            })
        );
    }

    #[test]
    fn waiting_states_are_the_outbox_states_of_the_same_name() {
        assert_eq!(
            OutboxState::from(WaitingState::Pending),
            OutboxState::Pending
        );
        assert_eq!(
            OutboxState::from(WaitingState::Unknown),
            OutboxState::Unknown
        );
        assert_eq!(WaitingState::Unknown.as_str(), "unknown");
    }

    #[test]
    fn lease_owners_name_the_request_or_the_worker() {
        assert_eq!(LeaseOwner::request("r-1").as_str(), "request:r-1");
        assert_eq!(
            LeaseOwner::dispatcher(Uuid::from_u128(1)).as_str(),
            "dispatcher:00000000-0000-0000-0000-000000000001"
        );
    }
}
