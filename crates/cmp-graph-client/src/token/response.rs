//! Reading what a token endpoint answered: the token of a success, and the wait after a
//! transient failure. Shared by Entra's client-credentials grant and the managed identity
//! endpoints, which answer in nearly the same JSON.

use std::time::Duration;

use cmp_domain::Timestamp;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::TokenError;
use crate::retry_after::parse_retry_after;

/// Wait after throttling, an outage or a transport failure when the endpoint gives no
/// `Retry-After`.
pub(super) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A successful token response, as far as the provider uses it.
pub(super) struct Received {
    /// The token.
    pub(super) access_token: SecretString,
    /// When it stops working.
    pub(super) expires_at: Timestamp,
    /// From `refresh_in`: when to refresh it early, while it still works.
    pub(super) refresh_at: Option<Timestamp>,
}

/// The body of a 2xx answer. Entra sends `expires_in`; the managed identity endpoints send
/// `expires_on` (epoch seconds) and often `expires_in` too.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    expires_in: Option<Seconds>,
    expires_on: Option<Seconds>,
    refresh_in: Option<Seconds>,
}

/// A number of seconds. Entra's v2 endpoint sends numbers; the managed identity endpoints,
/// older endpoints and some proxies send numeric strings, so both are read.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(i64),
    Text(String),
}

impl Seconds {
    /// The value when it is a positive whole number.
    fn positive(&self) -> Option<i64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(text) => text.trim().parse().ok(),
        }
        .filter(|seconds| *seconds > 0)
    }

    /// The value as a positive duration.
    fn duration(&self) -> Option<Duration> {
        self.positive()
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map(Duration::from_secs)
    }

    /// The value as an instant in epoch seconds.
    fn instant(&self) -> Option<Timestamp> {
        self.positive()
            .and_then(|seconds| Timestamp::from_unix_seconds(seconds, 0).ok())
    }
}

/// Reads a 2xx body received at `now`; the error names what is missing, never the body
/// itself. `expires_on` wins over `expires_in` when both are there: it is the endpoint's own
/// statement of the instant, not a lifetime that started before the answer travelled.
pub(super) fn parse_token_response(body: &[u8], now: Timestamp) -> Result<Received, String> {
    let response: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the token response is not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if response.access_token.expose_secret().is_empty() {
        return Err("the token response has an empty access_token".into());
    }
    let expires_on = response.expires_on.as_ref().and_then(Seconds::instant);
    let expires_in = response.expires_in.as_ref().and_then(Seconds::duration);
    let expires_at = match (expires_on, expires_in) {
        (Some(at), _) if at > now => at,
        (Some(_), _) => return Err("the token response's expires_on is not in the future".into()),
        (None, Some(lifetime)) => now.saturating_add(lifetime),
        (None, None) => {
            return Err(
                "the token response has neither a positive expires_in nor an expires_on".into(),
            );
        }
    };
    Ok(Received {
        access_token: response.access_token,
        expires_at,
        refresh_at: response
            .refresh_in
            .as_ref()
            .and_then(Seconds::duration)
            .map(|lifetime| now.saturating_add(lifetime)),
    })
}

/// Whether `status` means "try again later" from any token endpoint: throttling, a request
/// timeout, a server error.
pub(super) fn says_try_later(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// The error name of a refusal: the endpoint's OAuth `error`, else `HTTP <status>`.
pub(super) fn error_or_status(error: Option<String>, status: StatusCode) -> String {
    error.unwrap_or_else(|| format!("HTTP {}", status.as_u16()))
}

/// A transient refusal (throttling, an outage): no request before `Retry-After` (rounded up,
/// capped at an hour by the shared parser), or [`DEFAULT_RETRY_AFTER`] without one.
pub(super) fn transient(
    status: StatusCode,
    error: Option<&str>,
    retry_after: Option<&str>,
    now: Timestamp,
) -> TokenError {
    let wait = retry_after
        .and_then(|value| parse_retry_after(value, now))
        .unwrap_or(DEFAULT_RETRY_AFTER);
    TokenError::Transient {
        retry_at: now.saturating_add(wait),
        description: format!(
            "HTTP {}: {}",
            status.as_u16(),
            error.unwrap_or("no OAuth error")
        ),
    }
}
