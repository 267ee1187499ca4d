//! The driving HTTP adapter: Microsoft Graph's beta `complianceManagementPartners` resource,
//! served with axum so that an official Graph SDK pointed at our base URL works unchanged.
//!
//! It depends on the application (through [`PartnerUseCases`]), the domain and the Graph wire
//! model; it knows no SQL and no outbound HTTP. Every error leaves through [`ApiError`] in
//! Graph's error shape, with `request-id` and `client-request-id` on every response.
//!
//! # Layout
//! - [`settings`]: [`HttpSettings`], the adapter's configuration.
//! - [`envelope`]: request ids, the Graph error body, one log line per request.
//! - [`error`]: [`ApiError`], the one mapping of use-case errors to HTTP.
//! - [`auth`]: the bearer-header gate (token verification comes later).
//! - [`partners`]: the resource's handlers.
//! - [`router`] and [`serve`]: assembling and running the server.

pub mod auth;
pub mod envelope;
pub mod error;
pub mod partners;
pub mod settings;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use cmp_application::PartnerUseCases;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

pub use error::ApiError;
pub use settings::HttpSettings;

/// The path of the resource collection below the root.
pub const COLLECTION_PATH: &str = "/deviceManagement/complianceManagementPartners";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub partners: Arc<dyn PartnerUseCases>,
    /// The public root URL callers use, e.g. `https://onboarding.example.com/beta`; the
    /// `@odata.context` and `Location` values are built from it, never guessed from headers.
    pub public_root: Arc<str>,
    /// Largest accepted request body, in bytes, quoted in the 413 message.
    pub body_limit_bytes: usize,
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Whole-request time limit.
    pub request_timeout: Duration,
}

/// Builds the router: the resource under `root_path` (e.g. `/beta`), Graph-shaped errors for
/// everything else.
pub fn router(state: AppState, root_path: &str, limits: RequestLimits) -> Router {
    let item_path = format!("{COLLECTION_PATH}/{{id}}");
    let resource = Router::new()
        .route(
            COLLECTION_PATH,
            post(partners::create_partner).fallback(partners::collection_method_not_allowed),
        )
        .route(
            &item_path,
            get(partners::get_partner).fallback(partners::item_method_not_allowed),
        )
        .with_state(state);
    let routed = if root_path.is_empty() || root_path == "/" {
        resource
    } else {
        Router::new().nest(root_path, resource)
    };
    routed
        .fallback(partners::unknown_route)
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .layer(axum::middleware::from_fn(auth::require_bearer_header))
        // A request that outlives the limit is cut short; 408 is not retried by Graph SDKs, so a
        // slow create is never re-sent into a duplicate-name conflict.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(envelope::panic_response))
        .layer(axum::middleware::from_fn(envelope::graph_envelope))
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight finish.
///
/// # Errors
/// The listener's I/O error, if serving fails.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
