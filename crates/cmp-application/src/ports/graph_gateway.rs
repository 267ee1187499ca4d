//! The Graph gateway port: Microsoft Graph's `complianceManagementPartners` collection of the
//! configured tenant, and the outcome classes its answers fall into.
//!
//! The classes decide what the outbox does next (see `docs/delivery.md`): a create that may
//! have reached Graph is never sent again before Graph has been asked; a write refused for good
//! is dead at once; a throttled write waits out `Retry-After`.

use std::time::Duration;

use cmp_domain::Partner;
use uuid::Uuid;

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

/// The outcome classes of one create call.
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

/// A partner as Graph holds it, as far as reconciliation needs: Graph's id and display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePartner {
    /// The id Graph assigned.
    pub graph_id: String,
    /// Graph's `displayName` (nullable in Graph's model).
    pub display_name: Option<String>,
}

/// What Graph answered to a query by display name: one request, no paging followed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamedPartners {
    /// The objects of the answer, as Graph gave them: the caller checks they carry the name
    /// (Intune's `$filter` is unreliable on some collections and may answer unfiltered).
    pub partners: Vec<RemotePartner>,
    /// Graph announced more pages (`@odata.nextLink`): the answer is not the whole match.
    pub more: bool,
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

    /// Reads the objects named `display_name` with one request,
    /// `$filter=displayName eq '…'`, without following any next link.
    ///
    /// # Errors
    /// [`GraphReadError`] once the in-call retries are spent; [`GraphReadError::Refused`] when
    /// Graph does not take the filter.
    async fn find_partners_named(
        &self,
        display_name: &str,
    ) -> Result<NamedPartners, GraphReadError>;

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
