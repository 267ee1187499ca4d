//! Access tokens for Microsoft Graph: the client-credentials flow against Entra ID, cached and
//! refreshed the way MSAL does it (graph-client-behaviour §2).

use std::fmt;

use cmp_domain::Timestamp;
use secrecy::{ExposeSecret, SecretString};

/// A bearer token for Graph and the instant it stops being usable. `Debug` never shows it.
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    expires_at: Timestamp,
}

impl AccessToken {
    /// Wraps a token received from the token endpoint.
    pub fn new(secret: SecretString, expires_at: Timestamp) -> Self {
        Self { secret, expires_at }
    }

    /// The token text, for the `Authorization` header only.
    pub fn bearer(&self) -> &str {
        self.secret.expose_secret()
    }

    /// When Entra ID said it expires.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Entra ID is throttling, failing or unreachable (`temporarily_unavailable`, 429, 5xx,
    /// timeouts): try again after `retry_at`.
    #[error("the token endpoint is unavailable: {description}")]
    Transient {
        /// Not before this instant.
        retry_at: Timestamp,
        /// What happened, safe to log.
        description: String,
    },
    /// Our configuration is wrong (`invalid_client`, `unauthorized_client`, `invalid_scope`,
    /// `invalid_request`, ...): an operator must act; retrying soon will not help.
    #[error("the token endpoint refused our credentials: {error} ({})", error_codes.iter().map(|c| format!("AADSTS{c}")).collect::<Vec<_>>().join(", "))]
    Configuration {
        /// The OAuth `error` value.
        error: String,
        /// Entra's `error_codes` (the AADSTS numbers).
        error_codes: Vec<u64>,
        /// Entra's `error_description`.
        description: String,
        /// Entra's `trace_id`.
        trace_id: Option<String>,
        /// Entra's `correlation_id`.
        correlation_id: Option<String>,
    },
    /// A recent failure put the provider in back-off; no request was sent.
    #[error("token requests are paused after a failure: {reason}")]
    BackingOff {
        /// Not before this instant.
        until: Timestamp,
        /// The failure that caused it.
        reason: String,
    },
}

/// Where the Graph client gets its tokens from. The real one is [`TokenProvider`]; tests may
/// substitute their own.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// A token with at least the refresh margin left, from the cache or a fresh request.
    /// `claims` (from a 401's `WWW-Authenticate: Bearer ... claims="..."` challenge) forces a
    /// fresh request carrying them.
    ///
    /// # Errors
    /// [`TokenError`] when no token can be had.
    async fn token(&self, claims: Option<&str>) -> Result<AccessToken, TokenError>;

    /// Drops the cached token (Graph answered 401 to it).
    fn invalidate(&self);
}

/// PLACEHOLDER while the token provider is being written; replaced in full.
pub struct TokenProvider;
