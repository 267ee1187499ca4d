//! The Graph client's metrics: requests by operation and status, throttling, the tenant's
//! `Retry-After` pause, token requests. Listed for operators in `docs/operations.md`.
//!
//! They go through the `metrics` facade: without a recorder every call is a no-op; the binary
//! installs the Prometheus one.

/// Counter: requests sent to Graph (each resend counts), labelled `operation` and `status`
/// (the HTTP status, or `transport` when no answer came).
pub const REQUESTS_TOTAL: &str = "cmp_graph_requests_total";

/// Counter: Graph's 429 answers.
pub const THROTTLED_TOTAL: &str = "cmp_graph_throttled_total";

/// Gauge: seconds left in the tenant's current `Retry-After` pause; 0 when none.
pub const TENANT_PAUSE_SECONDS: &str = "cmp_graph_tenant_pause_seconds";

/// Counter: access tokens obtained from the token endpoint.
pub const TOKEN_REFRESHES_TOTAL: &str = "cmp_graph_token_refreshes_total";

/// Counter: token requests that failed, labelled `kind`: `transient` (throttled, unavailable,
/// unreachable) or `configuration` (our credentials refused).
pub const TOKEN_FAILURES_TOTAL: &str = "cmp_graph_token_failures_total";

/// What a request to Graph does, the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GraphOperation {
    /// POST a partner.
    Create,
    /// GET one partner.
    Get,
    /// GET a page of the collection.
    List,
    /// PATCH a partner.
    Update,
    /// DELETE a partner.
    Delete,
}

impl GraphOperation {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Get => "get",
            Self::List => "list",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// Describes this crate's metrics to the installed recorder (Prometheus' `# HELP` lines).
pub fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "Requests sent to Microsoft Graph, by operation and HTTP status (transport: no answer)."
    );
    metrics::describe_counter!(THROTTLED_TOTAL, "429 answers from Microsoft Graph.");
    metrics::describe_gauge!(
        TENANT_PAUSE_SECONDS,
        metrics::Unit::Seconds,
        "Time left in the tenant's current Retry-After pause."
    );
    metrics::describe_counter!(
        TOKEN_REFRESHES_TOTAL,
        "Access tokens obtained for Microsoft Graph."
    );
    metrics::describe_counter!(
        TOKEN_FAILURES_TOTAL,
        "Failed token requests for Microsoft Graph, by kind (transient, configuration)."
    );
}

/// Counts a request Graph answered with `status`; a 429 also counts as throttling.
pub(crate) fn count_answer(operation: GraphOperation, status: u16) {
    metrics::counter!(REQUESTS_TOTAL, "operation" => operation.as_str(), "status" => status.to_string())
        .increment(1);
    if status == 429 {
        metrics::counter!(THROTTLED_TOTAL).increment(1);
    }
}

/// Counts a request that got no answer (connection failed or lost, timeout, redirect refused).
pub(crate) fn count_transport_failure(operation: GraphOperation) {
    metrics::counter!(REQUESTS_TOTAL, "operation" => operation.as_str(), "status" => "transport")
        .increment(1);
}

/// Why a request to the token endpoint failed, as the failure metric names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenFailureKind {
    /// The endpoint may answer later (5xx, 429, no answer).
    Transient,
    /// Our credentials or configuration were refused; retrying the same will not help.
    Configuration,
}

impl TokenFailureKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Configuration => "configuration",
        }
    }
}

/// Counts the outcome of one request to the token endpoint: `None` when a token came back.
pub(crate) fn count_token_request(failure: Option<TokenFailureKind>) {
    match failure {
        None => metrics::counter!(TOKEN_REFRESHES_TOTAL).increment(1),
        Some(kind) => {
            metrics::counter!(TOKEN_FAILURES_TOTAL, "kind" => kind.as_str()).increment(1);
        }
    }
}
