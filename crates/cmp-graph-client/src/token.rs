//! Access tokens for Microsoft Graph, cached and refreshed the way MSAL does it, whichever
//! credential gets them: Entra ID's client-credentials grant (secret, certificate, workload
//! identity federation) or a managed identity's endpoint.
//!
//! [`TokenProvider`] is the real [`TokenSource`]. One provider serves one credential and one
//! resource, so its cache is a single slot. For every credential alike it
//! - serves the cached token while at least 300 s of it remain, refreshes early once Entra's
//!   `refresh_in` has passed, and keeps serving the old token if that early refresh fails;
//! - sends at most one token request at a time; concurrent callers wait for it and share it;
//! - backs off after a failure instead of hammering Entra (which answers request loops with
//!   AADSTS50196): 60 s after a refusal, the `Retry-After` time after throttling or an outage.
//!
//! Every instant comes from the injected [`Clock`], so tests move time by hand instead of
//! sleeping. Neither the secret, the client assertion, the federated token, the identity
//! header nor the token is ever logged or put into an error.
//!
//! # Layout
//! - this file: [`TokenProvider`]: the cache, single flight and back-off.
//! - `client_credentials`: Entra's grant and its refusals; `assertion`: the signed assertion.
//! - `managed_identity`: the managed identity endpoints and their refusals.
//! - `response`: reading a token answer, the wait after a transient failure.

mod assertion;
mod client_credentials;
mod managed_identity;
mod response;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use cmp_application::Clock;
use cmp_domain::Timestamp;
use reqwest::header::{ACCEPT, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};

use self::assertion::AssertionSigner;
use self::client_credentials::{ClientCredentials, Proof};
use self::managed_identity::ManagedIdentity;
use self::response::{DEFAULT_RETRY_AFTER, Received, parse_token_response};
use crate::error_chain::error_chain;
use crate::graph_metrics::{self, TokenFailureKind};
use crate::settings::{Credential, ResolvedGraphClient};

/// Least lifetime a cached token must have left to be served; below it the token counts as
/// expired. Five minutes, as MSAL, azure_identity and graph-rs-sdk use, so a token never
/// expires between being handed out and reaching Graph.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How long a refusal (HTTP 400/401 and other configuration errors) stops token requests.
const REFUSAL_BACKOFF: Duration = Duration::from_secs(60);

/// A bearer token for Graph and the instant it stops being usable. `Debug` never shows it.
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    expires_at: Timestamp,
}

impl AccessToken {
    /// Wraps a token received from a token endpoint.
    pub fn new(secret: SecretString, expires_at: Timestamp) -> Self {
        Self { secret, expires_at }
    }

    /// The token text, for the `Authorization` header only.
    pub fn bearer(&self) -> &str {
        self.secret.expose_secret()
    }

    /// When the token endpoint said it expires.
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
    /// The token endpoint is throttling, failing or unreachable (`temporarily_unavailable`,
    /// 429, 5xx, timeouts): try again after `retry_at`.
    #[error("the token endpoint is unavailable: {description}")]
    Transient {
        /// Not before this instant.
        retry_at: Timestamp,
        /// What happened, safe to log.
        description: String,
    },
    /// Our configuration is wrong (`invalid_client`, `unauthorized_client`, `invalid_scope`,
    /// `invalid_request`, a managed identity not found, an unreadable federated token
    /// file, ...): an operator must act; retrying soon will not help.
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

/// How the latest token request went, as the readiness probe reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// No token has been requested yet: nothing has called Graph.
    NotRequested,
    /// The latest request got a token.
    Obtained,
    /// The latest request failed; the provider is backing off, or waits for the next call to
    /// try again.
    Failing,
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

/// The configured credential cannot be used: the certificate or its private key does not
/// parse, or the App Service identity header cannot be sent.
/// Raised when the [`TokenProvider`] is built, so a bad file stops the service at start rather
/// than failing every token request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Graph client credential is unusable: {reason}")]
pub struct InvalidCredential {
    /// What is wrong, naming no key material.
    reason: String,
}

impl InvalidCredential {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Tokens of one credential for one resource, cached, refreshed early, fetched one request at
/// a time, and paused after failures.
///
/// While a back-off lasts, a call that would need a request gets the failure that started it
/// again (the same [`TokenError::Transient`], whose `retry_at` is the end of the back-off, or
/// the same [`TokenError::Configuration`]), so callers classify it exactly as the first time;
/// a call that a still-usable cached token can answer gets that token.
pub struct TokenProvider {
    /// Shared with the Graph client; the caller built it with the connect timeout and the
    /// redirect policy.
    http: reqwest::Client,
    /// Where tokens come from and how a request proves who we are.
    grant: Grant,
    /// The only source of "now": expiry, refresh and back-off arithmetic all use it.
    clock: Arc<dyn Clock>,
    /// Limit of one token request, applied per request because the shared client's own
    /// timeout is Graph's (100 s), not the token endpoint's (30 s).
    timeout: Duration,
    /// The cached token and the back-off. A std mutex: it guards a few assignments, is never
    /// held across an `.await`, and [`TokenSource::invalidate`] must reach it from a sync fn.
    state: std::sync::Mutex<State>,
    /// Single flight: held by the one caller whose token request is under way. The others
    /// queue on it and, once through, look at `state` again before requesting anything.
    in_flight: tokio::sync::Mutex<()>,
}

/// Where the provider gets its tokens, prepared from the credential once.
enum Grant {
    /// Entra ID's client-credentials grant: a secret, a certificate or a federated token.
    ClientCredentials(ClientCredentials),
    /// A managed identity's endpoint.
    ManagedIdentity(ManagedIdentity),
}

impl Grant {
    /// The credential's name, for `Debug` output.
    fn name(&self) -> &'static str {
        match self {
            Self::ClientCredentials(grant) => grant.proof.name(),
            Self::ManagedIdentity(identity) => identity.name(),
        }
    }
}

/// What the provider remembers between calls.
#[derive(Default)]
struct State {
    /// The last token received, if it has not been invalidated.
    cached: Option<CachedToken>,
    /// Set by a failed request: no new request before `until`.
    backoff: Option<Backoff>,
    /// Completed token requests, successful or not. A claims caller compares it before and
    /// after waiting for the single-flight lock to learn whether a request ran meanwhile.
    requests: u64,
}

/// A token and what the provider needs to know about it.
struct CachedToken {
    /// The token itself.
    token: AccessToken,
    /// From Entra's `refresh_in`: refresh after this instant, while the token still works.
    refresh_at: Option<Timestamp>,
    /// The claims the token was requested with, so that callers answering the same challenge
    /// concurrently share one request.
    claims: Option<String>,
}

/// A pause in token requests after a failure.
struct Backoff {
    /// No request before this instant.
    until: Timestamp,
    /// The failure, returned to every caller that would have needed a request meanwhile.
    error: TokenError,
}

/// What the cache says about a call without claims.
enum Lookup {
    /// Serve this token; no request.
    Serve(AccessToken),
    /// Fail with this error; no request (back-off).
    Fail(TokenError),
    /// A request is needed.
    Request,
}

impl State {
    /// The cache's answer for a call without claims at `now`.
    fn lookup(&self, now: Timestamp) -> Lookup {
        let backoff = self.active_backoff(now);
        match self.usable(now) {
            // During a back-off a usable token is served even when its refresh is due: this
            // is the "keep serving the old token if the refresh fails" rule.
            Some(cached) if backoff.is_some() || !cached.refresh_due(now) => {
                Lookup::Serve(cached.token.clone())
            }
            Some(_) => Lookup::Request,
            None => match backoff {
                Some(error) => Lookup::Fail(error),
                None => Lookup::Request,
            },
        }
    }

    /// The cached token if more than the refresh margin of it is left at `now`.
    fn usable(&self, now: Timestamp) -> Option<&CachedToken> {
        self.cached
            .as_ref()
            .filter(|cached| now.saturating_add(REFRESH_MARGIN) <= cached.token.expires_at())
    }

    /// The remembered failure, while its back-off lasts.
    fn active_backoff(&self, now: Timestamp) -> Option<TokenError> {
        self.backoff
            .as_ref()
            .filter(|backoff| now < backoff.until)
            .map(|backoff| backoff.error.clone())
    }
}

impl CachedToken {
    fn refresh_due(&self, now: Timestamp) -> bool {
        self.refresh_at.is_some_and(|at| now >= at)
    }
}

impl TokenProvider {
    /// A provider for the credential, token URL, client id and scope of `config`.
    ///
    /// `http` is used as given (connect timeout, redirect policy); `config.token_timeout`
    /// limits each token request. All expiry and back-off arithmetic reads `clock`.
    ///
    /// # Errors
    /// [`InvalidCredential`] when a certificate credential's certificate or RSA private key
    /// does not parse or cannot sign, or a managed identity's header cannot be sent.
    pub fn new(
        http: reqwest::Client,
        config: &ResolvedGraphClient,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, InvalidCredential> {
        let entra = |proof| {
            Grant::ClientCredentials(ClientCredentials {
                token_url: config.token_url.clone(),
                client_id: config.client_id.clone(),
                scope: config.scope.clone(),
                proof,
            })
        };
        let grant = match &config.credential {
            Credential::Secret(secret) => entra(Proof::Secret(secret.clone())),
            Credential::Certificate {
                certificate_pem,
                private_key_pem,
            } => entra(Proof::Certificate(AssertionSigner::from_pem(
                certificate_pem,
                private_key_pem,
            )?)),
            Credential::WorkloadIdentity { token_file } => {
                entra(Proof::FederatedTokenFile(token_file.clone()))
            }
            Credential::ManagedIdentity(endpoint) => {
                // The v1 resource the identity endpoints take is the scope without
                // `/.default`, as Microsoft's SDKs derive it.
                let resource = config
                    .scope
                    .strip_suffix("/.default")
                    .unwrap_or(&config.scope)
                    .to_owned();
                let client_id = Some(config.client_id.clone()).filter(|id| !id.is_empty());
                Grant::ManagedIdentity(ManagedIdentity::new(endpoint, resource, client_id)?)
            }
        };
        Ok(Self {
            http,
            grant,
            clock,
            timeout: config.token_timeout,
            state: std::sync::Mutex::new(State::default()),
            in_flight: tokio::sync::Mutex::new(()),
        })
    }

    /// The state, even after a panic elsewhere poisoned the lock: every update of it is a
    /// plain assignment, so a panicking holder cannot leave it half-written.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How the latest token request went. Sends nothing: the readiness probe asks often, and a
    /// probe must never add to Entra's load or wait on it.
    pub fn status(&self) -> TokenStatus {
        let state = self.state();
        // A failure sets the back-off and only a success clears it, so a back-off on record
        // means the latest request failed.
        if state.backoff.is_some() {
            TokenStatus::Failing
        } else if state.requests == 0 {
            TokenStatus::NotRequested
        } else {
            TokenStatus::Obtained
        }
    }

    /// A call without claims: the cached token, or a fresh one.
    async fn cached_or_requested(&self) -> Result<AccessToken, TokenError> {
        // Fast path: most calls are answered by the cache without touching the async lock.
        match self.state().lookup(self.clock.now()) {
            Lookup::Serve(token) => return Ok(token),
            Lookup::Fail(error) => return Err(error),
            Lookup::Request => {}
        }
        let _flight = self.in_flight.lock().await;
        // Look again: the caller that held the lock may have fetched a token, or failed and
        // started a back-off, while this one waited.
        match self.state().lookup(self.clock.now()) {
            Lookup::Serve(token) => return Ok(token),
            Lookup::Fail(error) => return Err(error),
            Lookup::Request => {}
        }
        match self.request_and_remember(None).await {
            Ok(token) => Ok(token),
            Err(error) => {
                // A failed early refresh (after `refresh_in`) leaves a token that still works;
                // serving it is better than failing the call.
                let old = self
                    .state()
                    .usable(self.clock.now())
                    .map(|cached| cached.token.clone());
                match old {
                    Some(token) => {
                        tracing::warn!(
                            error.message = %error,
                            "early token refresh failed; the current token is still valid and stays in use"
                        );
                        Ok(token)
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// A call with claims: always a new token carrying them, except that callers answering
    /// the same challenge at the same time share one request.
    async fn requested_with_claims(&self, claims: &str) -> Result<AccessToken, TokenError> {
        let requests_before = {
            let state = self.state();
            if let Some(error) = state.active_backoff(self.clock.now()) {
                return Err(error);
            }
            state.requests
        };
        let _flight = self.in_flight.lock().await;
        {
            let state = self.state();
            let now = self.clock.now();
            if let Some(error) = state.active_backoff(now) {
                return Err(error);
            }
            if state.requests != requests_before
                && let Some(cached) = state.usable(now)
                && cached.claims.as_deref() == Some(claims)
            {
                return Ok(cached.token.clone());
            }
        }
        self.request_and_remember(Some(claims)).await
    }

    /// Sends one token request and records the outcome: the new token replaces the cached
    /// one, a failure starts a back-off. Call only while holding `in_flight`.
    async fn request_and_remember(&self, claims: Option<&str>) -> Result<AccessToken, TokenError> {
        let outcome = self.request(claims).await;
        graph_metrics::count_token_request(outcome.as_ref().err().map(|error| match error {
            TokenError::Transient { .. } => TokenFailureKind::Transient,
            // A back-off sends no request, so it never reaches here; were it to, it repeats a
            // refusal.
            TokenError::Configuration { .. } | TokenError::BackingOff { .. } => {
                TokenFailureKind::Configuration
            }
        }));
        let now = self.clock.now();
        let mut state = self.state();
        state.requests = state.requests.wrapping_add(1);
        match outcome {
            Ok(received) => {
                let token = AccessToken::new(received.access_token, received.expires_at);
                state.cached = Some(CachedToken {
                    token: token.clone(),
                    refresh_at: received.refresh_at,
                    claims: claims.map(str::to_owned),
                });
                state.backoff = None;
                Ok(token)
            }
            Err(error) => {
                let until = match &error {
                    TokenError::Transient { retry_at, .. } => *retry_at,
                    TokenError::Configuration { .. } | TokenError::BackingOff { .. } => {
                        now.saturating_add(REFUSAL_BACKOFF)
                    }
                };
                state.backoff = Some(Backoff {
                    until,
                    error: error.clone(),
                });
                Err(error)
            }
        }
    }

    /// One request to the token endpoint, classified.
    #[tracing::instrument(
        name = "token.request",
        skip_all,
        fields(token.credential = self.grant.name(), token.claims = claims.is_some())
    )]
    async fn request(&self, claims: Option<&str>) -> Result<Received, TokenError> {
        let request = match &self.grant {
            Grant::ClientCredentials(grant) => {
                grant.request(&self.http, claims, self.clock.now())?
            }
            Grant::ManagedIdentity(identity) => identity.request(&self.http),
        };
        let sent = request
            .timeout(self.timeout)
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let response = sent.map_err(|e| self.transport_failure(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_failure(e))?;
        let now = self.clock.now();

        if status.is_success() {
            return parse_token_response(&body, now).map_err(|description| {
                tracing::warn!(
                    token.status = status.as_u16(),
                    "token endpoint answered without a usable token"
                );
                TokenError::Configuration {
                    error: "invalid_token_response".into(),
                    error_codes: Vec::new(),
                    description,
                    trace_id: None,
                    correlation_id: None,
                }
            });
        }
        let retry_after = retry_after.as_deref();
        Err(match &self.grant {
            Grant::ClientCredentials(_) => {
                client_credentials::refusal(status, &body, retry_after, now)
            }
            Grant::ManagedIdentity(identity) => identity.refusal(status, &body, retry_after, now),
        })
    }

    /// A request that got no complete answer: transient, retried after the default wait.
    fn transport_failure(&self, error: reqwest::Error) -> TokenError {
        let description = if error.is_timeout() {
            format!(
                "token request timed out after {} ms",
                self.timeout.as_millis()
            )
        } else {
            // The token URL is no secret, but it adds nothing to the message either.
            format!(
                "token request failed: {}",
                error_chain(&error.without_url())
            )
        };
        tracing::warn!(error.message = %description, "token request failed");
        TokenError::Transient {
            retry_at: self.clock.now().saturating_add(DEFAULT_RETRY_AFTER),
            description,
        }
    }
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("TokenProvider");
        match &self.grant {
            Grant::ClientCredentials(grant) => debug
                .field("token_url", &grant.token_url.as_str())
                .field("client_id", &grant.client_id)
                .field("scope", &grant.scope),
            Grant::ManagedIdentity(_) => &mut debug,
        }
        .field("credential", &self.grant.name())
        .field("timeout", &self.timeout)
        .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenSource for TokenProvider {
    async fn token(&self, claims: Option<&str>) -> Result<AccessToken, TokenError> {
        match claims {
            None => self.cached_or_requested().await,
            Some(claims) => self.requested_with_claims(claims).await,
        }
    }

    fn invalidate(&self) {
        self.state().cached = None;
    }
}
