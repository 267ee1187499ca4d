//! Driven ports: what the use cases need from the outside world, and the records they pass.

use std::time::Duration;

use cmp_domain::{NaturalKey, Partner, PartnerId, TenantId, Timestamp};

use crate::query::{Filter, ListQuery, PartnerPage};
use uuid::Uuid;

/// Where "now" comes from. The domain never reads a clock; tests pin this one.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync + 'static {
    /// The current UTC instant.
    fn now(&self) -> Timestamp;
}

/// Where new identifiers come from (partner ids, outbox ids, client-request-ids).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait IdSource: Send + Sync + 'static {
    /// A fresh, unique UUID.
    fn new_uuid(&self) -> Uuid;
}

/// Random draws for back-off jitter, injected so that delays can be asserted.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Jitter: Send + Sync + 'static {
    /// A uniformly random number in `0.0..1.0`.
    fn fraction(&self) -> f64;
}

/// Waiting, injected so that deadlines and back-off can be tested without sleeping.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait Sleeper: Send + Sync + 'static {
    /// Completes after `duration`.
    async fn sleep(&self, duration: Duration);
}

/// Delivery state of an outbox row (graph-client-behaviour §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for a dispatcher attempt at `next_attempt_at`.
    Pending,
    /// Leased to one attempt (the creating request or a dispatcher).
    InFlight,
    /// Graph holds the object; its id is recorded.
    Delivered,
    /// An attempt may or may not have reached Graph; reconcile before resending.
    Unknown,
    /// Given up; needs an operator.
    Dead,
}

impl DeliveryState {
    /// The name stored and shown to operators.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Delivered => "delivered",
            Self::Unknown => "unknown",
            Self::Dead => "dead",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;

    /// The state of a stored name (`pending`, `in_flight`, `delivered`, `unknown`, `dead`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            Self::Pending,
            Self::InFlight,
            Self::Delivered,
            Self::Unknown,
            Self::Dead,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| format!("'{text}' is not a delivery state"))
    }
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// A partner was accepted and stored.
    Created,
    /// Graph refused the partner for good; the local write was undone.
    CreateRejectedByGraph,
    /// A caller changed the partner.
    Updated,
    /// A caller deleted the partner.
    Deleted,
    /// Graph confirmed the deletion; the display name is free again.
    DeletedInGraph,
}

impl AuditAction {
    /// The name stored in the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::CreateRejectedByGraph => "create_rejected_by_graph",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::DeletedInGraph => "deleted_in_graph",
        }
    }
}

/// One audit-log entry. Kept even when the partner it names is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unique id of the entry.
    pub id: Uuid,
    /// The partner concerned.
    pub partner_id: PartnerId,
    /// What happened.
    pub action: AuditAction,
    /// Our `request-id` of the HTTP request that caused it.
    pub request_id: String,
    /// Who caused it (see [`crate::Caller`]'s display form); never a name or e-mail.
    pub caller: String,
    /// When it happened.
    pub at: Timestamp,
    /// Human-readable detail (what changed, Graph's error code, ...).
    pub detail: String,
}

/// Everything the create transaction writes besides the partner itself: its outbox row
/// (leased to the creating request), the first attempt's start record, and the audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartnerWrite {
    /// The tenant the partner is provisioned into; names are unique per tenant.
    pub tenant_id: TenantId,
    /// Id of the outbox row, also its idempotency handle.
    pub outbox_id: Uuid,
    /// Who holds the lease: the creating request (`request:<request-id>`).
    pub lease_owner: String,
    /// When the lease lapses if the request dies; a lapsed lease turns the row `unknown`.
    pub lease_expires_at: Timestamp,
    /// `client-request-id` of the first Graph call, recorded before the call is made.
    pub client_request_id: Uuid,
    /// When the write happens (also the first attempt's start).
    pub now: Timestamp,
    /// The audit entry of the create.
    pub audit: AuditEntry,
}

/// What Graph said, for the record: kept on the attempt and the outbox row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphResponseMeta {
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// Graph's `error.code` (the innermost `innerError` code when nested).
    pub error_code: Option<String>,
    /// Graph's `error.message`.
    pub error_message: Option<String>,
    /// Graph's `request-id` response header.
    pub request_id: Option<String>,
}

/// The outcome classes of one create call (graph-client-behaviour §1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// 2xx with the new object's id.
    Created {
        /// The id Graph assigned.
        graph_id: String,
    },
    /// 429, or the request never left (connect/DNS/TLS failure): safe to resend.
    NotApplied {
        /// Graph's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// Our own credentials or permissions failed (token errors, 401 after a retry, 403).
    AuthFailure,
    /// 5xx, or a timeout or reset after the request was sent: Graph may hold the object.
    Unknown,
    /// 409: Graph may already hold an object of that name.
    Conflict,
    /// 400, 404, 405, 411 to 415, 422: Graph refuses this payload for good.
    Rejected,
}

/// The outcome of one create call plus what Graph said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphCallResult {
    /// The class that decides what happens next.
    pub outcome: CreateOutcome,
    /// Status, error code and request id for the attempt record.
    pub meta: GraphResponseMeta,
}

/// Where an outbox row goes after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxTransition {
    /// Graph holds the object under `graph_id`.
    Delivered {
        /// The id Graph assigned.
        graph_id: String,
    },
    /// Back to the dispatcher: `pending` (safe to resend) or `unknown` (reconcile first).
    Retry {
        /// `Pending` or `Unknown`.
        state: DeliveryState,
        /// Not before this instant.
        next_attempt_at: Timestamp,
    },
    /// Given up: an operator must look (and may re-queue).
    Dead {
        /// Why, for operators: Graph's refusal, "duplicate in Graph", attempts exhausted.
        reason: String,
    },
}

/// The end of one attempt: what Graph said and where the row goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFinish {
    /// The outbox row.
    pub outbox_id: Uuid,
    /// The partner the row delivers.
    pub partner_id: PartnerId,
    /// The `client-request-id` the attempt was started with.
    pub client_request_id: Uuid,
    /// When the attempt ended.
    pub finished_at: Timestamp,
    /// What Graph said.
    pub meta: GraphResponseMeta,
    /// How the attempt ended, in words for operators (`created`, `timeout`, `unknown`, ...).
    pub outcome_label: &'static str,
    /// Where the row goes.
    pub transition: OutboxTransition,
}

/// What an update or delete writes besides the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeWrite {
    /// The tenant.
    pub tenant_id: TenantId,
    /// For an update: the partner as it was read when the change was computed. The store
    /// MUST refuse the update with [`StoreError::Changed`] when the stored partner differs, so
    /// two concurrent PATCHes never silently lose one another's changes.
    pub expected: Option<Partner>,
    /// Id of the outbox row, should one be queued.
    pub outbox_id: Uuid,
    /// When the change happens.
    pub now: Timestamp,
    /// The audit entry of the change.
    pub audit: AuditEntry,
}

/// How a change goes to Graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeQueued {
    /// It folded into the partner's pending create (or, for a delete, cancelled it): Graph
    /// will only ever see the result, or nothing.
    Folded,
    /// A row was queued for the dispatcher.
    Queued,
}

/// Errors of the repository port.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such partner (or it is deleted).
    #[error("no such partner")]
    NotFound,
    /// The partner changed since it was read (a concurrent update).
    #[error("the partner changed since it was read")]
    Changed,
    /// The outbox row is no longer leased to the caller (another worker holds it now).
    #[error("the outbox row's lease is held by someone else")]
    LeaseLost,
    /// Another partner of the tenant has the same natural key (trimmed, case-insensitive name).
    #[error("a partner named '{display_name}' already exists")]
    DuplicateDisplayName {
        /// The name that collided, as given.
        display_name: String,
    },
    /// The store failed; the source says how.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Durable storage of partners, their outbox rows, attempts and audit log.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait PartnerRepository: Send + Sync + 'static {
    /// Writes the partner, its assignments, its outbox row (state `in_flight`, leased as
    /// `write` says), the first attempt's start record and the audit entry, in one
    /// transaction: all of them or none.
    ///
    /// # Errors
    /// MUST return [`StoreError::DuplicateDisplayName`] when a partner of the same tenant has the
    /// same natural key, and then write nothing. [`StoreError::Unexpected`] otherwise.
    async fn insert_new_partner(
        &self,
        partner: &Partner,
        write: &NewPartnerWrite,
    ) -> Result<(), StoreError>;

    /// Reads one partner. A partner deleted by a caller (its delete perhaps still on its way to
    /// Graph) is gone for readers: `Ok(None)`.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails; an unknown id is `Ok(None)`.
    async fn get_partner(&self, id: PartnerId) -> Result<Option<Partner>, StoreError>;

    /// One page of the tenant's (not deleted) partners as `query` says: filter, order with `id`
    /// as the final tie-breaker, `skip` on a first page, keyset position after a cursor, and a
    /// total when asked. MUST set `next` exactly when more items follow the page.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails or a cursor does not fit the sort keys.
    async fn list_partners(
        &self,
        tenant_id: TenantId,
        query: &ListQuery,
    ) -> Result<PartnerPage, StoreError>;

    /// How many of the tenant's (not deleted) partners `filter` matches.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn count_partners(
        &self,
        tenant_id: TenantId,
        filter: Option<Filter>,
    ) -> Result<u64, StoreError>;

    /// Stores `partner` (an existing, not deleted partner, already patched) in one transaction
    /// with `write.audit`, and queues the change for Graph: when the partner's create is
    /// `pending` (never sent, or certainly not applied), the change folds into it (the payload
    /// is rendered from the stored partner at delivery) and no row is added; otherwise (an
    /// `unknown` create included: Graph may hold the old version, which reconciliation adopts
    /// as it is) an `update` row (`pending`, id `write.outbox_id`) is queued behind the
    /// partner's earlier rows.
    ///
    /// # Errors
    /// MUST return [`StoreError::DuplicateDisplayName`] when another partner of the tenant has
    /// the new natural key, [`StoreError::NotFound`] when the partner does not exist or is
    /// deleted, and [`StoreError::Changed`] when it differs from `write.expected`; then nothing
    /// is written.
    async fn update_partner(
        &self,
        partner: &Partner,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError>;

    /// Deletes a partner for callers, in one transaction with `write.audit`. When it never
    /// reached Graph (no graph id, and every one of its rows `pending`: never sent, or sent and
    /// certainly not applied), the partner and its rows are removed outright and nothing reaches
    /// Graph. Otherwise the
    /// partner is marked deleted (gone for readers, its display name still reserved) and a
    /// `delete` row is queued behind its earlier rows; the name is freed when Graph confirms.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] when the partner does not exist or is deleted.
    async fn delete_partner(
        &self,
        id: PartnerId,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError>;

    /// Records the end of an attempt and moves the outbox row on, in one transaction; on
    /// `Delivered` also stores Graph's id on the partner, and for a `delete` row releases the
    /// deleted partner's display name (with a `deleted_in_graph` audit entry).
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails or the outbox row does not exist.
    async fn finish_attempt(&self, finish: &AttemptFinish) -> Result<(), StoreError>;

    /// Undoes a create that Graph refused for good: removes the partner, its assignments, its
    /// outbox rows (the create and any update or delete queued behind it) and their attempts,
    /// and writes `audit` (which keeps what Graph said), in one transaction.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn undo_rejected_create(
        &self,
        partner_id: PartnerId,
        outbox_id: Uuid,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
}

/// A partner as Graph holds it, as far as reconciliation needs: Graph's id and display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePartner {
    /// The id Graph assigned.
    pub graph_id: String,
    /// Graph's `displayName` (nullable in Graph's model).
    pub display_name: Option<String>,
}

/// Why a read from Graph (get or list) failed after the in-call retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphReadError {
    /// 429, 5xx, timeouts, transport errors: try again later.
    #[error("Microsoft Graph is unavailable (status {:?}, code {:?})", .0.status, .0.error_code)]
    Transient(GraphResponseMeta),
    /// Our credentials or permissions failed (token errors, 401 after a retry, 403).
    #[error("Microsoft Graph refused our credentials (status {:?}, code {:?})", .0.status, .0.error_code)]
    AuthFailure(GraphResponseMeta),
    /// Any other refusal (400, 404 on a collection, ...).
    #[error("Microsoft Graph refused the read (status {:?}, code {:?})", .0.status, .0.error_code)]
    Refused(GraphResponseMeta),
    /// The collection's paging went wrong: a `@odata.nextLink` repeated, or too many pages.
    #[error("paging through Microsoft Graph failed: {0}")]
    Paging(String),
    /// A 2xx whose body is not the JSON Graph promises.
    #[error("Microsoft Graph answered with an unreadable body: {0}")]
    Malformed(String),
}

/// The outcome classes of one update (PATCH) or delete (DELETE) call. Both are idempotent, so
/// an unknown outcome is simply retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// 2xx; for a delete also 404 (the object is gone either way).
    Applied,
    /// 429 or the request never left: resend after `retry_after`.
    NotApplied {
        /// Graph's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// Our own credentials or permissions failed.
    AuthFailure,
    /// 5xx or a timeout after sending: resend (the call is idempotent).
    Unknown,
    /// 404 on an update: the object is not in Graph.
    NotFound,
    /// Graph refuses this request for good.
    Rejected,
}

/// The outcome of one update or delete call plus what Graph said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphWriteResult {
    /// The class that decides what happens next.
    pub outcome: WriteOutcome,
    /// Status, error code and request id for the attempt record.
    pub meta: GraphResponseMeta,
}

/// Microsoft Graph's `complianceManagementPartners` collection of the configured tenant.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait GraphGateway: Send + Sync + 'static {
    /// POSTs `partner` with the given `client-request-id`, and classifies the answer. Never
    /// fails: every failure is an outcome. MUST NOT resend the POST after an unknown outcome.
    async fn create_partner(&self, partner: &Partner, client_request_id: Uuid) -> GraphCallResult;

    /// Reads one object by Graph's id; `Ok(None)` when Graph answers 404.
    ///
    /// # Errors
    /// [`GraphReadError`] once the in-call retries are spent.
    async fn get_partner(&self, graph_id: &str) -> Result<Option<RemotePartner>, GraphReadError>;

    /// Lists every object, following each `@odata.nextLink` verbatim.
    ///
    /// # Errors
    /// [`GraphReadError`] once the in-call retries are spent, or when a link repeats or the
    /// page cap is reached.
    async fn list_partners(&self) -> Result<Vec<RemotePartner>, GraphReadError>;

    /// PATCHes Graph's object `graph_id` with every property of `partner`.
    async fn update_partner(
        &self,
        graph_id: &str,
        partner: &Partner,
        client_request_id: Uuid,
    ) -> GraphWriteResult;

    /// DELETEs Graph's object `graph_id`.
    async fn delete_partner(&self, graph_id: &str, client_request_id: Uuid) -> GraphWriteResult;
}

/// What an outbox row does in Graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// POST the partner.
    Create,
    /// PATCH the partner with its stored state.
    Update,
    /// DELETE the partner.
    Delete,
}

impl Operation {
    /// The name stored in the outbox.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// An outbox row claimed by a dispatcher (state `in_flight`, leased to it), with the partner
/// it delivers as stored now: a later change folds into the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    /// The outbox row.
    pub outbox_id: Uuid,
    /// What the row does in Graph.
    pub operation: Operation,
    /// Graph's id of the partner, once its create was delivered.
    pub graph_id: Option<String>,
    /// A caller deleted the partner (its delete row may follow this row).
    pub partner_deleted: bool,
    /// The partner to deliver.
    pub partner: Partner,
    /// The natural key reconciliation matches on (trimmed, lower-cased display name).
    pub natural_key: NaturalKey,
    /// The state before the claim: `Pending` (send) or `Unknown` (reconcile first).
    pub previous_state: DeliveryState,
    /// Attempts made before this one, in all (attempt numbers continue from it).
    pub attempts: u32,
    /// Attempts made since `first_attempt_at`: what the give-up limit counts. Equal to
    /// `attempts` unless an operator re-queued the row, which opens a new window.
    pub attempts_in_window: u32,
    /// When the first attempt of the current window started (the inline one, usually).
    pub first_attempt_at: Option<Timestamp>,
    /// When the row was written.
    pub created_at: Timestamp,
    /// When the row became due (its `next_attempt_at`). For a row whose last attempt had an
    /// unknown outcome this lies past that attempt's settle time: a list of Graph read at or
    /// after it shows whatever that attempt did.
    pub due_at: Timestamp,
}

/// The start of an attempt, committed before Graph is called so that a crash mid-call
/// leaves evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptStart {
    /// The outbox row.
    pub outbox_id: Uuid,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The `client-request-id` the attempt sends.
    pub client_request_id: Uuid,
    /// When it starts.
    pub started_at: Timestamp,
    /// Who must hold the row's lease for the attempt to start.
    pub lease_owner: String,
    /// The lease, renewed to cover the call.
    pub lease_expires_at: Timestamp,
}

/// One recorded attempt, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// 1-based attempt number.
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
    /// How it ended (`created`, `adopted`, `unknown`, ...).
    pub outcome: Option<String>,
}

/// Where a partner stands on its way to Graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    /// The outbox row.
    pub outbox_id: Uuid,
    /// The partner.
    pub partner_id: PartnerId,
    /// What the row does (`create`).
    pub operation: String,
    /// Its display name's natural key.
    pub natural_key: NaturalKey,
    /// Delivery state.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: Timestamp,
    /// Status of the last attempt.
    pub last_status: Option<u16>,
    /// Graph's error code of the last attempt.
    pub last_error_code: Option<String>,
    /// `client-request-id` of the last attempt.
    pub last_client_request_id: Option<String>,
    /// Graph's id once delivered.
    pub graph_id: Option<String>,
    /// Why the row is dead.
    pub dead_reason: Option<String>,
    /// When the row was written.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When the first attempt started.
    pub first_attempt_at: Option<Timestamp>,
    /// Every attempt, oldest first (empty in listings).
    pub history: Vec<AttemptRecord>,
}

/// A recorded audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// What happened (`created`, `updated`, `deleted`, ...).
    pub action: String,
    /// Our `request-id` of the request that caused it.
    pub request_id: String,
    /// Who caused it.
    pub caller: String,
    /// When.
    pub at: Timestamp,
    /// What changed, or what Graph said.
    pub detail: String,
}

/// Everything recorded about a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerHistory {
    /// Audit entries, oldest first.
    pub audit: Vec<AuditRecord>,
    /// Its outbox rows (creates, updates, deletes), oldest first, each with its attempts.
    pub deliveries: Vec<SyncState>,
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

/// The outbox as the dispatcher and operators see it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Turns every `in_flight` row whose lease lapsed by `now` into `unknown`, due at once
    /// (its attempt may or may not have reached Graph). Returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn recover_expired_leases(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Atomically claims up to `limit` rows of `tenant` that are `pending` or `unknown` and due
    /// by `now`, oldest due first, leasing them to `owner` until `lease_expires_at`. Jobs run in
    /// order: a row is claimed only when it is the oldest live (`pending`, `unknown`,
    /// `in_flight`) row of its partner and of its natural key; so MUST NOT claim a row whose
    /// key or partner has a row `in_flight`, nor two rows of one key or partner.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails or a claimed partner cannot be read.
    async fn claim_due(
        &self,
        tenant: TenantId,
        now: Timestamp,
        owner: &str,
        lease_expires_at: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Hands a claimed row back without an attempt: `in_flight` → `state` (`pending` or
    /// `unknown`), due at `next_attempt_at`, lease cleared. Used when the tenant's queue is
    /// paused by a `Retry-After` after the row was claimed.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails or the row is not `in_flight`.
    async fn release(
        &self,
        outbox_id: Uuid,
        state: DeliveryState,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Records the start of an attempt (attempt row, attempt count, `last_client_request_id`,
    /// `first_attempt_at` when unset) and renews the lease to `lease_expires_at`, committed
    /// before the call. MUST refuse, writing nothing, unless the row is `in_flight` and leased to
    /// `lease_owner`: a row whose lease lapsed while it waited in a batch may have been claimed
    /// by another worker, and two attempts at once could POST twice.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the lease is not held; [`StoreError::Unexpected`] when
    /// the store fails.
    async fn start_attempt(&self, start: &AttemptStart) -> Result<(), StoreError>;

    /// The sync state and attempt history of a partner's latest outbox row; `None` when the
    /// partner has none.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn sync_state(&self, partner_id: PartnerId) -> Result<Option<SyncState>, StoreError>;

    /// Rows in `state` (all rows when `None`), oldest first, at most `limit`, without history.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn list_rows(
        &self,
        state: Option<DeliveryState>,
        limit: u32,
    ) -> Result<Vec<SyncState>, StoreError>;

    /// How many rows are in each state.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn count_rows(&self) -> Result<OutboxCounts, StoreError>;

    /// Whether a partner other than `except` already holds Graph's object `graph_id`: such an
    /// object is never adopted for another partner, whatever its display name says.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn graph_id_held_by_another(
        &self,
        graph_id: &str,
        except: PartnerId,
    ) -> Result<bool, StoreError>;

    /// The partner's history: its audit entries and every outbox row with its attempts, oldest
    /// first. Deleted partners included.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn history(&self, partner_id: PartnerId) -> Result<PartnerHistory, StoreError>;

    /// Puts a `dead` row back in the queue as `unknown` (so Graph is asked before anything is
    /// sent again), due at `now`, with a new give-up window starting at `now` and its history
    /// kept; `Ok(false)` when no dead row has that id.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn requeue_dead(&self, outbox_id: Uuid, now: Timestamp) -> Result<bool, StoreError>;
}
