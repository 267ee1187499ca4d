//! The HTTP adapter's metrics: every request by route template, method and status with its
//! duration, and the refusals made before a handler runs (authentication, write rate, load
//! shedding). Listed for operators in `docs/operations.md`.
//!
//! They go through the `metrics` facade: without a recorder every call is a no-op; the binary
//! installs the Prometheus one and serves it on a listener of its own.

use std::time::Instant;

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::envelope::route_template;

/// Counter: requests answered, labelled `route` (the matched route template, `(unmatched)` when
/// none matched), `method` and `status`.
pub const REQUESTS_TOTAL: &str = "cmp_http_requests_total";

/// Histogram: seconds from a request's arrival to its response's head, labelled `route` and
/// `method`.
pub const REQUEST_DURATION_SECONDS: &str = "cmp_http_request_duration_seconds";

/// The bucket bounds of [`REQUEST_DURATION_SECONDS`], in seconds: fine below the inline
/// deadline of a create (10 s by default), and up to the whole-request timeout (30 s).
pub const REQUEST_DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Counter: requests refused by authentication, labelled `reason` ([`RefusalReason`]).
pub const AUTH_REFUSALS_TOTAL: &str = "cmp_auth_refusals_total";

/// Counter: writes refused with 429 by the per-caller write rate.
pub const RATE_LIMITED_TOTAL: &str = "cmp_http_rate_limited_total";

/// Counter: requests shed with 503 because the cap of requests in flight was reached.
pub const LOAD_SHED_TOTAL: &str = "cmp_http_load_shed_total";

/// Why authentication refused a request: a closed set, so that a label never carries token
/// text or a verifier's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// No `Authorization` header (401).
    MissingToken,
    /// An `Authorization` header that is not `Bearer <token>` (401).
    MalformedHeader,
    /// A token that failed a check: signature, lifetime, audience, issuer, tenant (401).
    InvalidToken,
    /// The signing keys could not be had, so the token could not be checked (503).
    KeysUnavailable,
    /// A valid token without the permission the request needs (403).
    MissingPermission,
}

impl RefusalReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::MalformedHeader => "malformed_header",
            Self::InvalidToken => "invalid_token",
            Self::KeysUnavailable => "keys_unavailable",
            Self::MissingPermission => "missing_permission",
        }
    }
}

/// Describes this module's metrics to the installed recorder (Prometheus' `# HELP` lines).
pub fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "HTTP requests answered, by route template, method and status."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time from a request's arrival to its response, by route template and method."
    );
    metrics::describe_counter!(
        AUTH_REFUSALS_TOTAL,
        "Requests refused by authentication, by reason."
    );
    metrics::describe_counter!(
        RATE_LIMITED_TOTAL,
        "Writes refused with 429 by the per-caller write rate."
    );
    metrics::describe_counter!(
        LOAD_SHED_TOTAL,
        "Requests shed with 503 at the cap of requests in flight."
    );
}

/// Middleware (outermost): counts and times every request by route template, method and the
/// status it was finally answered with, refusals and errors included.
pub async fn record(request: Request, next: Next) -> Response {
    let route = route_template(&request).to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(REQUEST_DURATION_SECONDS, "route" => route.clone(), "method" => method)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(REQUESTS_TOTAL, "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// The method as a label: the methods the API knows by name, any other as `other`, so that a
/// client inventing methods cannot grow the number of series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts a request authentication refused.
pub(crate) fn count_refusal(reason: RefusalReason) {
    metrics::counter!(AUTH_REFUSALS_TOTAL, "reason" => reason.as_str()).increment(1);
}

/// Counts a write refused by the per-caller write rate.
pub(crate) fn count_rate_limited() {
    metrics::counter!(RATE_LIMITED_TOTAL).increment(1);
}

/// Counts a request shed at the cap of requests in flight.
pub(crate) fn count_load_shed() {
    metrics::counter!(LOAD_SHED_TOTAL).increment(1);
}
