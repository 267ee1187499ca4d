//! The driving HTTP adapter: Microsoft Graph's beta `complianceManagementPartners` resource,
//! served with axum so that an official Graph SDK pointed at our base URL works unchanged.
//!
//! It depends on the application (its driving ports [`PartnerUseCases`] and
//! [`OperatorUseCases`], and the [`CallerAuthenticator`] port), the domain and the Graph wire
//! model; it knows no SQL and no outbound HTTP. The wire rules it serves are in
//! `docs/wire-contract.md`, the token checks in `docs/auth.md`, the API document in
//! `docs/api.md`. Every error leaves through [`ApiError`] in
//! Graph's error shape, with `request-id` and `client-request-id` on every response.
//!
//! # Layout
//! - [`settings`]: [`HttpSettings`], the adapter's configuration.
//! - [`envelope`]: request ids, the Graph error body, one log line per request.
//! - [`error`]: [`ApiError`], the one mapping of use-case errors to HTTP.
//! - [`auth`]: bearer-token verification (through the port) and permissions.
//! - [`limits`]: load shedding and the per-caller write rate.
//! - [`odata`]: the OData query options (`$filter`, `$orderby`, `$select`, paging) parsed
//!   into the application's typed listing query.
//! - [`partners`]: the resource's handlers.
//! - [`admin`]: the operator endpoints under `/admin/`.
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the code, served at
//!   [`openapi::OPENAPI_PATH`].
//! - [`probes`]: `/healthz` and `/readyz`, outside every layer, over the [`ReadinessCheck`] port.
//! - [`request_metrics`]: requests counted and timed, refusals counted.
//! - [`router`] assembles the layers; [`serve()`] runs the accept loop.

pub mod admin;
pub mod auth;
pub mod envelope;
pub mod error;
pub mod limits;
pub mod odata;
pub mod openapi;
pub mod partners;
pub mod probes;
pub mod request_metrics;
pub mod serve;
pub mod settings;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::{MethodRouter, get};
use cmp_application::{CallerAuthenticator, OperatorUseCases, PartnerUseCases};
use tokio_util::task::TaskTracker;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

pub use error::ApiError;
pub use probes::{CheckStatus, Readiness, ReadinessCheck, probes_router};
pub use serve::{ConnectionLimits, serve};
pub use settings::HttpSettings;

/// The path of the resource collection below the root.
pub const COLLECTION_PATH: &str = "/deviceManagement/complianceManagementPartners";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub partners: Arc<dyn PartnerUseCases>,
    /// The operator use cases.
    pub operations: Arc<dyn OperatorUseCases>,
    /// Verifies bearer tokens.
    pub authenticator: Arc<dyn CallerAuthenticator>,
    /// The public root URL callers use, e.g. `https://onboarding.example.com/beta`; the
    /// `@odata.context` and `Location` values are built from it, never guessed from headers.
    pub public_root: Arc<str>,
    /// Largest accepted request body, in bytes, quoted in the 413 message.
    pub body_limit_bytes: usize,
    /// The creates that run to their end even when their request is dropped (the client went
    /// away, the request timed out). Shutdown waits for them before it closes the store, or
    /// their outbox rows would stay leased until a restart reconciled them.
    pub detached_creates: TaskTracker,
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Whole-request time limit.
    pub request_timeout: Duration,
    /// Time limit for receiving the body.
    pub body_read_timeout: Duration,
    /// Requests served at once; more are shed with 503.
    pub max_concurrent_requests: usize,
    /// Writes per second per caller.
    pub writes_per_caller_per_second: f64,
    /// Write burst per caller.
    pub write_burst: u32,
}

impl RequestLimits {
    /// The limits configured in `settings`.
    pub fn from_settings(settings: &HttpSettings) -> Self {
        Self {
            body_limit_bytes: settings.body_limit_bytes,
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            body_read_timeout: Duration::from_millis(settings.body_read_timeout_ms),
            max_concurrent_requests: settings.max_concurrent_requests,
            writes_per_caller_per_second: settings.writes_per_caller_per_second,
            write_burst: settings.write_burst,
        }
    }
}

/// Builds the router: the resource under `root_path` (e.g. `/beta`), the operator endpoints,
/// the OpenAPI document (without authentication), Graph-shaped errors for everything else, and
/// the layers every request passes, outermost first: metrics, ids and error envelope, panic
/// catcher, load shedding, whole-request timeout, body timeout; then, for all but the document,
/// bearer
/// token and permission, per-caller write rate, body size.
pub fn router(state: AppState, root_path: &str, limits: RequestLimits) -> Router {
    let item_path = format!("{COLLECTION_PATH}/{{id}}");
    // A static segment outranks the `{id}` capture, so `$count` is never read as an id.
    let count_path = format!("{COLLECTION_PATH}/$count");
    let resource = Router::new()
        .route(
            COLLECTION_PATH,
            get(partners::list_partners)
                .post(partners::create_partner)
                .fallback(partners::collection_method_not_allowed),
        )
        .route(
            &count_path,
            get(partners::count_partners).fallback(partners::only_get_allowed),
        )
        .route(
            &item_path,
            get(partners::get_partner)
                .patch(partners::update_partner)
                .delete(partners::delete_partner)
                .fallback(partners::item_method_not_allowed),
        )
        .with_state(state.clone());
    let routed = if root_path.is_empty() || root_path == "/" {
        resource
    } else {
        Router::new().nest(root_path, resource)
    };
    let write_limiter = Arc::new(limits::WriteRateLimiter::new(
        limits.writes_per_caller_per_second,
        limits.write_burst,
    ));
    // Unknown routes pass the token check too: without a token nothing says what exists.
    let protected = routed
        .merge(admin::routes(state.clone()))
        .fallback(partners::unknown_route)
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(
            write_limiter,
            limits::limit_writes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::authenticate,
        ));
    let public = Router::new().route(openapi::OPENAPI_PATH, api_description(root_path));
    protected
        .merge(public)
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        // A request that outlives the limit is cut short; 408 is not retried by Graph SDKs, so a
        // slow create is never re-sent into a duplicate-name conflict.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits::ConcurrencyGate::new(limits.max_concurrent_requests),
            limits::shed_load,
        ))
        .layer(CatchPanicLayer::custom(envelope::panic_response))
        .layer(axum::middleware::from_fn(envelope::graph_envelope))
        // Outermost, so that it sees the status every other layer finally answered with.
        .layer(axum::middleware::from_fn(request_metrics::record))
}

/// The path the development signing key set is served at (development mode only).
pub const DEVELOPMENT_KEYS_PATH: &str = "/development/keys";

/// A router serving `jwks` at [`DEVELOPMENT_KEYS_PATH`] without authentication, so tools can
/// verify the tokens a development instance accepts. Merge it only in development mode. It
/// carries its own envelope (it is merged beside [`router`]'s layers, not under them), so its
/// answers have request ids and a wrong method gets Graph's error body.
pub fn development_keys_router(jwks: serde_json::Value) -> Router {
    Router::new()
        .route(
            DEVELOPMENT_KEYS_PATH,
            static_json(Bytes::from(jwks.to_string())),
        )
        .layer(axum::middleware::from_fn(envelope::graph_envelope))
}

/// `GET` of the API description, built on its first request rather than at startup: building
/// it goes through about 1.3 MiB of short-lived JSON values, and made at startup they left the
/// main thread's heap that much larger for the life of the process (`docs/benchmarks.md`).
fn api_description(root_path: &str) -> MethodRouter {
    let root_path: Arc<str> = root_path.into();
    let built: Arc<OnceLock<Bytes>> = Arc::default();
    get(move || async move {
        // Built from static tables and the root path, so it always serialises; an empty
        // document would only ever be served if that stopped being true.
        let body = built
            .get_or_init(|| {
                openapi::document_json(&root_path)
                    .unwrap_or_default()
                    .into()
            })
            .clone();
        ([(CONTENT_TYPE, "application/json")], body)
    })
    .fallback(partners::only_get_allowed)
}

/// A GET-only route answering `body` as JSON; other methods get 405.
fn static_json(body: Bytes) -> MethodRouter {
    get(move || async move { ([(CONTENT_TYPE, "application/json")], body) })
        .fallback(partners::only_get_allowed)
}
