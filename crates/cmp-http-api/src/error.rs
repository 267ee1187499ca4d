//! [`ApiError`]: every error response, mapped once from the use-case errors.

use std::sync::Arc;

use axum::http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cmp_application::ListPartnersError;
use cmp_application::{
    CreatePartnerError, DeletePartnerError, GetPartnerError, UpdatePartnerError,
};
use cmp_domain::PartnerError;
use cmp_graph_model::WireError;

/// The parts of a Graph error body that the handler decides; the envelope adds the request
/// ids and the date, renders the body and logs server errors.
#[derive(Debug, Clone)]
pub struct GraphError {
    /// HTTP status.
    pub status: StatusCode,
    /// Graph's `error.code`, which clients branch on.
    pub code: String,
    /// Human-readable, safe to show: never SQL, a token, or a stack trace.
    pub message: String,
    /// The offending member, for request-body errors.
    pub target: Option<String>,
    /// A code from further down (Graph's own `error.code` when Graph refused a partner).
    pub inner_code: Option<String>,
    /// For 5xx: the cause, logged once by the envelope and never sent.
    pub cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// An error answer in Graph's shape.
#[derive(Debug)]
pub struct ApiError {
    /// Boxed: the error travels in every handler's `Result`, whose `Ok` side is small.
    error: Box<GraphError>,
    allow: Option<&'static str>,
    /// The `WWW-Authenticate` challenge of a 401 or 403.
    challenge: Option<&'static str>,
    /// Whole seconds for `Retry-After` on 429 and 503.
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            error: Box::new(GraphError {
                status,
                code: code.to_owned(),
                message: message.into(),
                target: None,
                inner_code: None,
                cause: None,
            }),
            allow: None,
            challenge: None,
            retry_after_seconds: None,
        }
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401 `InvalidAuthenticationToken` with a bare `WWW-Authenticate: Bearer`: no usable
    /// `Authorization` header was sent, so there is no token to say anything about.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        let mut api = Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        );
        api.challenge = Some("Bearer");
        api
    }

    /// 401 `InvalidAuthenticationToken` with `WWW-Authenticate: Bearer error="invalid_token"`.
    pub fn invalid_token(message: impl Into<String>) -> Self {
        let mut api = Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        );
        api.challenge = Some("Bearer error=\"invalid_token\"");
        api
    }

    /// 403 `Authorization_RequestDenied` with `WWW-Authenticate: Bearer error="insufficient_scope"`.
    pub fn insufficient_scope(needed: &str) -> Self {
        let message =
            format!("Insufficient privileges to complete the operation; the token needs {needed}");
        let mut api = Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            message,
        );
        api.challenge = Some("Bearer error=\"insufficient_scope\"");
        api
    }

    /// 429 `activityLimitReached` with `Retry-After` in whole seconds.
    pub fn too_many_requests(retry_after_seconds: u64) -> Self {
        let message =
            format!("too many writes from this caller; retry after {retry_after_seconds} s");
        let mut api = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "activityLimitReached",
            message,
        );
        api.retry_after_seconds = Some(retry_after_seconds);
        api
    }

    /// 503 `serviceNotAvailable` with `Retry-After` in whole seconds: the service is at its cap
    /// of requests in flight.
    pub fn overloaded(retry_after_seconds: u64) -> Self {
        let message = "the service is busy; retry shortly";
        let mut api = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            message,
        );
        api.retry_after_seconds = Some(retry_after_seconds);
        api
    }

    /// 404 `ResourceNotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFound", message)
    }

    /// 404 `ResourceNotFound` for a partner id (as the client wrote it) that names no partner.
    pub fn no_such_partner(id: impl std::fmt::Display) -> Self {
        Self::not_found(format!("no complianceManagementPartner has id '{id}'"))
    }

    /// 405 with the `Allow` header. Intune documents no code for it, so the code is our choice:
    /// `BadRequest`, as the request is wrong and repeating it cannot help
    /// (`docs/wire-contract.md`, "Errors").
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let message = format!("the method is not allowed here; allowed: {allow}");
        let mut api = Self::new(StatusCode::METHOD_NOT_ALLOWED, "BadRequest", message);
        api.allow = Some(allow);
        api
    }

    /// 409 `Conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// 413 `RequestEntityTooLarge`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the request body must be at most {limit} bytes"),
        )
    }

    /// 408 `RequestTimeout`: the body did not arrive in time (or at all).
    pub fn body_not_received() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            "the request body was not received in time",
        )
    }

    /// 415 `UnsupportedMediaType`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "the request body must be sent as Content-Type: application/json",
        )
    }

    /// 500 `InternalServerError`; the cause is logged, never shown.
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        let mut api = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "an internal error occurred",
        );
        api.error.cause = Some(Arc::new(cause));
        api
    }

    /// Names the offending member in `error.target`.
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.error.target = Some(target.into());
        self
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.error.status
    }
}

impl IntoResponse for ApiError {
    /// Produces a bodiless response carrying the [`GraphError`] as an extension; the envelope
    /// middleware renders it. Converting has no side effects (no logging here).
    fn into_response(self) -> Response {
        let mut response = self.error.status.into_response();
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(challenge) = self.challenge {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(*self.error);
        response
    }
}

impl From<WireError> for ApiError {
    fn from(error: WireError) -> Self {
        let target = (!error.target.is_empty()).then(|| error.target.clone());
        let mut api = Self::bad_request(error.to_string());
        if error.target.is_empty() {
            api.error.message = error.message;
        }
        api.error.target = target;
        api
    }
}

impl From<CreatePartnerError> for ApiError {
    fn from(error: CreatePartnerError) -> Self {
        match error {
            CreatePartnerError::Invalid(invalid) => Self::from(invalid),
            CreatePartnerError::DuplicateDisplayName { display_name } => Self::new(
                StatusCode::CONFLICT,
                "nameAlreadyExists",
                format!("a partner named '{display_name}' already exists"),
            ),
            CreatePartnerError::GraphRejected {
                status,
                code,
                message,
            } => {
                // A payload Graph refuses is the caller's to fix (400); anything else Graph
                // refused is Graph's or our configuration's problem (502).
                let (status, code_here) = if matches!(status, 400 | 422) {
                    (StatusCode::BAD_REQUEST, "BadRequest")
                } else {
                    (StatusCode::BAD_GATEWAY, "BadGateway")
                };
                let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
                let mut api = Self::new(
                    status,
                    code_here,
                    format!("Microsoft Graph refused the partner{detail}"),
                );
                api.error.inner_code = code;
                api
            }
            CreatePartnerError::Unexpected(cause) => Self::internal(AnyhowCause(cause)),
        }
    }
}

impl From<PartnerError> for ApiError {
    fn from(invalid: PartnerError) -> Self {
        let target = match &invalid {
            PartnerError::HeartbeatInFuture { .. } => "lastHeartbeatDateTime".to_owned(),
            PartnerError::Platform { platform, .. } => format!("{platform}EnrollmentAssignments"),
        };
        let mut api = Self::bad_request(invalid.to_string());
        api.error.target = Some(target);
        api
    }
}

impl From<UpdatePartnerError> for ApiError {
    fn from(error: UpdatePartnerError) -> Self {
        match error {
            UpdatePartnerError::NotFound(id) => Self::no_such_partner(id),
            UpdatePartnerError::Invalid(invalid) => Self::from(invalid),
            UpdatePartnerError::DuplicateDisplayName { display_name } => Self::new(
                StatusCode::CONFLICT,
                "nameAlreadyExists",
                format!("a partner named '{display_name}' already exists"),
            ),
            UpdatePartnerError::Unexpected(cause) => Self::internal(AnyhowCause(cause)),
        }
    }
}

impl From<DeletePartnerError> for ApiError {
    fn from(error: DeletePartnerError) -> Self {
        match error {
            DeletePartnerError::NotFound(id) => Self::no_such_partner(id),
            DeletePartnerError::Unexpected(cause) => Self::internal(AnyhowCause(cause)),
        }
    }
}

impl From<ListPartnersError> for ApiError {
    fn from(error: ListPartnersError) -> Self {
        match error {
            ListPartnersError::BadCursor => {
                Self::bad_request("the $skiptoken does not belong to this query")
            }
            ListPartnersError::Unexpected(cause) => Self::internal(AnyhowCause(cause)),
        }
    }
}

impl From<GetPartnerError> for ApiError {
    fn from(error: GetPartnerError) -> Self {
        match error {
            GetPartnerError::NotFound(id) => Self::no_such_partner(id),
            GetPartnerError::Unexpected(cause) => Self::internal(AnyhowCause(cause)),
        }
    }
}

/// Carries an `anyhow`-style error from a use case to the log as a standard error, keeping
/// its whole chain of causes.
#[derive(Debug)]
pub(crate) struct AnyhowCause<E>(pub(crate) E);

impl<E: std::fmt::Display> std::fmt::Display for AnyhowCause<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `{:#}` prints anyhow's whole context chain on one line.
        write!(f, "{:#}", self.0)
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for AnyhowCause<E> {}
