//! Who may call: the bearer token is verified through the [`CallerAuthenticator`] port, then the
//! caller's permissions are checked against what the request needs, as Graph does
//! (`docs/auth.md`: the checks, then "Permissions").
//!
//! [`CallerAuthenticator`]: cmp_application::CallerAuthenticator

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::request_metrics::{RefusalReason, count_refusal};

/// Permissions that allow writing partners, as Graph's create/update/delete pages list them.
pub const WRITE_PERMISSIONS: [&str; 2] = [
    "DeviceManagementServiceConfig.ReadWrite.All",
    "DeviceManagementConfiguration.ReadWrite.All",
];

/// Permissions that allow reading partners: the write permissions or their read-only forms.
pub const READ_PERMISSIONS: [&str; 4] = [
    "DeviceManagementServiceConfig.ReadWrite.All",
    "DeviceManagementConfiguration.ReadWrite.All",
    "DeviceManagementServiceConfig.Read.All",
    "DeviceManagementConfiguration.Read.All",
];

/// Our own app role for the operator endpoints; Graph's permissions do not grant it.
pub const OPERATOR_ROLE: &str = "CompliancePartners.Operate";

/// The path prefix of the operator endpoints (outside the Graph-shaped resource).
pub const OPERATOR_PATH_PREFIX: &str = "/admin/";

/// Verifies the bearer token, checks the permission the request needs, and puts the [`Caller`]
/// into the request's extensions. Refuses with 401 (bad or missing token) or 403 (missing
/// permission) before any handler runs, so a refused request writes nothing.
///
/// [`Caller`]: cmp_application::Caller
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = match bearer_token(&request) {
        Ok(token) => token.to_owned(),
        Err(error) => {
            count_refusal(if request.headers().contains_key(AUTHORIZATION) {
                RefusalReason::MalformedHeader
            } else {
                RefusalReason::MissingToken
            });
            return error.into_response();
        }
    };
    let caller = match state.authenticator.authenticate(&token).await {
        Ok(caller) => caller,
        Err(error) if error.keys_unavailable => {
            tracing::warn!(auth.reason = %error.reason, "bearer token could not be checked");
            count_refusal(RefusalReason::KeysUnavailable);
            return ApiError::overloaded(30).into_response();
        }
        Err(error) => {
            tracing::info!(auth.reason = %error.reason, "bearer token refused");
            count_refusal(RefusalReason::InvalidToken);
            return ApiError::invalid_token(format!(
                "Access token validation failure: {}.",
                error.reason
            ))
            .into_response();
        }
    };
    let (needed, name) = needed_permissions(request.method(), request.uri().path());
    if !caller.has_any(needed) {
        tracing::info!(caller = %caller, needed = name, "permission missing");
        count_refusal(RefusalReason::MissingPermission);
        return ApiError::insufficient_scope(name).into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        return Err(ApiError::unauthenticated("Access token is empty."));
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("Authorization header must be 'Bearer <token>'."))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthenticated(
            "Authorization header must be 'Bearer <token>'.",
        )),
    }
}

/// What a request needs, with a name for the 403 message.
fn needed_permissions(method: &Method, path: &str) -> (&'static [&'static str], &'static str) {
    if path.starts_with(OPERATOR_PATH_PREFIX) {
        return (&[OPERATOR_ROLE], OPERATOR_ROLE);
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        (&READ_PERMISSIONS, "DeviceManagementServiceConfig.Read.All")
    } else {
        (
            &WRITE_PERMISSIONS,
            "DeviceManagementServiceConfig.ReadWrite.All",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_operator_paths_need_their_own_permissions() {
        let collection = "/beta/deviceManagement/complianceManagementPartners";
        assert_eq!(
            needed_permissions(&Method::GET, collection).0,
            &READ_PERMISSIONS
        );
        for method in [Method::POST, Method::PATCH, Method::DELETE, Method::PUT] {
            assert_eq!(
                needed_permissions(&method, collection).0,
                &WRITE_PERMISSIONS,
                "{method}"
            );
        }
        assert_eq!(
            needed_permissions(&Method::GET, "/admin/outbox").0,
            &[OPERATOR_ROLE]
        );
    }
}
