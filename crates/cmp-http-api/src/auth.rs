//! The bearer-header gate. Like Graph, every request needs `Authorization: Bearer <token>`;
//! verifying the token itself is a separate, later layer.

use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Refuses a request whose `Authorization` header is missing or not a non-empty Bearer token.
pub async fn require_bearer_header(request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or(""));
    match header {
        None => ApiError::unauthenticated("Access token is empty.").into_response(),
        Some(value) => match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                next.run(request).await
            }
            _ => ApiError::unauthenticated("Authorization header must be 'Bearer <token>'.")
                .into_response(),
        },
    }
}
