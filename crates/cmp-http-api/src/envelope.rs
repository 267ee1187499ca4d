//! The response envelope every request passes through: request ids in and out, Graph's
//! error body, and one log line per request.

use std::any::Any;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cmp_domain::Timestamp;
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, GraphError};

/// `request-id`: our id for a request, on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// `client-request-id`: the caller's id for a request, echoed (or ours when absent).
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");

/// The content type Graph sends with JSON; SDKs only look at the part before `;`.
pub const GRAPH_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// A caller's `client-request-id` longer than this is not echoed: an id, not a payload.
const CLIENT_REQUEST_ID_MAX_LEN: usize = 128;

/// What the span names as the route of a request no route matched.
const UNMATCHED_ROUTE: &str = "(unmatched)";

/// The ids of the request being served, put into the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestIds {
    /// Ours, a fresh GUID.
    pub request_id: String,
    /// The caller's `client-request-id`, or `request_id` when none (or an unusable one) came.
    pub client_request_id: String,
}

/// Graph's error body, the one shape of every error answer (Graph's SDKs read it as their
/// `ODataError`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ODataError {
    /// The error.
    pub error: MainError,
}

/// The error inside [`ODataError`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MainError {
    /// The stable code clients branch on, e.g. `BadRequest`, `nameAlreadyExists`.
    pub code: String,
    /// What went wrong, safe to show.
    pub message: String,
    /// The offending member of a request body, as a path
    /// (`macOsEnrollmentAssignments[0].target.groupId`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub target: Option<String>,
    /// When and for which request.
    #[serde(rename = "innerError")]
    pub inner_error: InnerError,
}

/// The request identification of an error, and Graph's own code when Graph refused a partner.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InnerError {
    /// When the error was answered, in UTC without fraction or offset, as Graph writes it.
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")]
    pub date: String,
    /// Our id of the request, also in the `request-id` header.
    #[serde(rename = "request-id")]
    #[schema(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub request_id: String,
    /// The caller's `client-request-id`, or the `request-id` when none (or an unusable one)
    /// came.
    #[serde(rename = "client-request-id")]
    pub client_request_id: String,
    /// Microsoft Graph's `error.code`, when Graph refused the partner.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub code: Option<String>,
}

/// Assigns the request ids, runs the request in a span, renders any [`GraphError`] (or a bare
/// error status from the framework) as Graph's error body, sets the id headers and logs one
/// line, plus the cause of any server error, once.
pub async fn graph_envelope(mut request: Request, next: Next) -> Response {
    let request_id = Uuid::new_v4().to_string();
    let client_request_id = request
        .headers()
        .get(&CLIENT_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= CLIENT_REQUEST_ID_MAX_LEN)
        .map_or_else(|| request_id.clone(), str::to_owned);
    let ids = RequestIds {
        request_id: request_id.clone(),
        client_request_id,
    };
    request.extensions_mut().insert(ids.clone());

    let route = route_template(&request).to_owned();
    let span = tracing::info_span!(
        "http_request",
        http.method = %request.method(),
        http.route = %route,
        request.id = %request_id,
        http.status = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let mut response = render_error(response, &ids);

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&ids.request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if let Ok(value) = HeaderValue::from_str(&ids.client_request_id) {
        headers.insert(CLIENT_REQUEST_ID, value);
    }
    span.record("http.status", response.status().as_u16());
    tracing::info!(parent: &span, latency_ms = started.elapsed().as_millis() as u64, "request served");
    response
}

/// The route template a request matched (`/beta/deviceManagement/complianceManagementPartners/{id}`),
/// never the raw path: ids and query strings stay out of logs and metric labels, and both group
/// by route.
pub(crate) fn route_template(request: &Request) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
}

/// Turns a panic inside a handler into a plain 500 in Graph's shape; the payload is logged,
/// never sent.
pub fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let detail = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a handler panicked");
    ApiError::internal(Panicked(detail.to_owned())).into_response()
}

/// A handler's panic message, as an error for the log.
#[derive(Debug)]
struct Panicked(String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "handler panicked: {}", self.0)
    }
}

impl std::error::Error for Panicked {}

fn render_error(response: Response, ids: &RequestIds) -> Response {
    let (mut parts, body) = response.into_parts();
    let error = match parts.extensions.remove::<GraphError>() {
        Some(error) => error,
        None if is_bare_error(parts.status, &parts.headers) => fallback_error(parts.status),
        None => return Response::from_parts(parts, body),
    };
    if let Some(cause) = &error.cause {
        tracing::error!(error.message = %cause, error.cause_chain = ?cause, "request failed");
    }
    let body = ODataError {
        error: MainError {
            code: error.code.clone(),
            message: error.message.clone(),
            target: error.target.clone(),
            inner_error: InnerError {
                date: error_date(),
                request_id: ids.request_id.clone(),
                client_request_id: ids.client_request_id.clone(),
                code: error.inner_code.clone(),
            },
        },
    };
    // Strings only: serialising cannot fail, and an empty body would still carry the status.
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.status = error.status;
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

/// An error status produced outside our handlers (the framework's 405, the timeout's 408, ...)
/// that has no JSON body yet.
fn is_bare_error(status: StatusCode, headers: &axum::http::HeaderMap) -> bool {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    (status.is_client_error() || status.is_server_error()) && !json
}

fn fallback_error(status: StatusCode) -> GraphError {
    let code = match status {
        StatusCode::UNAUTHORIZED => "InvalidAuthenticationToken",
        StatusCode::NOT_FOUND => "ResourceNotFound",
        StatusCode::REQUEST_TIMEOUT => "RequestTimeout",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        s if s.is_server_error() => "InternalServerError",
        _ => "BadRequest",
    };
    GraphError {
        status,
        code: code.to_owned(),
        message: status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
        target: None,
        inner_code: None,
        cause: None,
    }
}

fn error_date() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let instant = i64::try_from(seconds)
        .ok()
        .and_then(|s| Timestamp::from_unix_seconds(s, 0).ok())
        .unwrap_or(Timestamp::MIN);
    cmp_graph_model::datetime::format_error_date(instant)
}
