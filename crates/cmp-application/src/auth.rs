//! Who is calling: the caller identity established from an inbound bearer token, and the port
//! that establishes it. The HTTP adapter asks the port; the use cases record the caller.

use std::fmt;

/// Whether the caller is an application acting as itself or a user through an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// Client-credentials token: permissions are app roles (`roles`).
    Application,
    /// Delegated token: permissions are scopes (`scp`).
    Delegated,
}

/// An authenticated caller. Identified by tenant and object id, never by name or e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's Entra ID tenant (`tid`).
    pub tenant_id: String,
    /// The caller's object id (`oid`, or `sub` when there is none).
    pub object_id: String,
    /// The client application (`azp` in v2 tokens, `appid` in v1).
    pub app_id: Option<String>,
    /// Application or delegated.
    pub kind: CallerKind,
    /// The permissions the token grants: app roles for applications, scopes for users.
    pub permissions: Vec<String>,
}

impl Caller {
    /// Whether the token grants any of `permissions`.
    pub fn has_any(&self, permissions: &[&str]) -> bool {
        self.permissions
            .iter()
            .any(|granted| permissions.contains(&granted.as_str()))
    }
}

impl fmt::Display for Caller {
    /// The form recorded in the audit log: `app:<tid>/<oid>` or `user:<tid>/<oid>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            CallerKind::Application => "app",
            CallerKind::Delegated => "user",
        };
        write!(f, "{kind}:{}/{}", self.tenant_id, self.object_id)
    }
}

/// Why a bearer token was not accepted. The reason is for logs and the 401 message; it never
/// contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct AuthenticationError {
    /// What was wrong with the token, e.g. "token expired".
    pub reason: String,
    /// The token could not be checked because the signing keys could not be had: our outage,
    /// not the caller's fault (answered 503, not 401).
    pub keys_unavailable: bool,
}

/// Turns a bearer token into a [`Caller`].
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait CallerAuthenticator: Send + Sync + 'static {
    /// Verifies `bearer_token` (signature, lifetime, audience, issuer, tenant) and returns who
    /// it belongs to. Permissions are NOT checked here: the caller's are returned as granted.
    ///
    /// # Errors
    /// MUST return [`AuthenticationError`] for any token that fails a check.
    async fn authenticate(&self, bearer_token: &str) -> Result<Caller, AuthenticationError>;
}
