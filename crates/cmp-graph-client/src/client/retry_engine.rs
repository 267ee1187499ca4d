//! The retry engine: one logical call to Graph, from the first request to the last resend.
//!
//! The caller of a call has taken a slot of the tenant's [`Pacer`] for its first request; every
//! other request the call sends (a resend, the re-authenticated resend after a 401, the next
//! page of a list) takes a slot of its own first, and a 429 pauses the whole tenant in the
//! pacer. A call gets a token, sends with the headers the Microsoft SDKs send, reads the answer
//! into an [`Exchange`] (`classify`), and resends within the call only where its [`CallKind`]
//! allows it, within `max_retries` and the waiting [`RetryBudget`]. Anything longer goes back
//! to the outbox as an outcome. Nothing here sleeps on its own clock: all waiting goes through
//! the injected [`Sleeper`], all "now" through the injected [`Clock`].

use std::sync::Arc;
use std::time::Duration;

use cmp_application::pacing::{record_throttle, wait_for_slot};
use cmp_application::{Booking, Budget, Clock, GraphResponseMeta, Pacer, Sleeper};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use uuid::Uuid;

use super::classify::{Ending, Exchange, GraphErrorBody, challenge_claims};
use crate::error_chain::error_chain;
use crate::graph_metrics::{self, GraphOperation};
use crate::retry_after::{backoff, parse_retry_after};
use crate::settings::ResolvedGraphClient;
use crate::token::{AccessToken, TokenError, TokenSource};

/// The header carrying our correlation id; Graph echoes it and logs it.
const CLIENT_REQUEST_ID: &str = "client-request-id";

/// The header numbering resent requests (`1`, `2`, …), as the Microsoft SDKs send it.
const RETRY_ATTEMPT: &str = "Retry-Attempt";

/// Graph's id of the request, on every response; operators quote it to Microsoft support.
const REQUEST_ID: &str = "request-id";

/// What one logical call may retry in-call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallKind {
    /// POST: never resent within the call (but once with a fresh token after a 401). After an
    /// unknown outcome a second POST could create a duplicate, and a resend after a 429 would
    /// wait on the row's lease: the outbox decides, with `Retry-After` as a floor.
    Create,
    /// PATCH and DELETE: like a POST, never resent within the call; both are idempotent, so
    /// the outbox simply sends them again after its back-off.
    Write,
    /// GET: resent after 429, 503, 504 and transport failures.
    Read,
}

impl CallKind {
    /// The tenant budget its requests draw on.
    fn budget(self) -> Budget {
        match self {
            Self::Create | Self::Write => Budget::Write,
            Self::Read => Budget::Read,
        }
    }

    /// Whether an exchange that ended this way may be resent within the call.
    fn retries(self, ending: &Ending) -> bool {
        if self != Self::Read {
            return false;
        }
        match ending {
            Ending::Answered { status, .. } => matches!(status.as_u16(), 429 | 503 | 504),
            // Only a connect, DNS or TLS failure reaches the retry decision as `Unsent`: no
            // slot within the budget and a token outage end the call before it.
            Ending::Unsent | Ending::Lost => true,
            Ending::RedirectRefused | Ending::NoToken => false,
        }
    }
}

/// One logical call: the same `client-request-id` on every request it sends.
pub(super) struct Call<'a> {
    /// What may be resent.
    pub(super) kind: CallKind,
    /// What the call does, as its requests are counted.
    pub(super) operation: GraphOperation,
    /// The HTTP method.
    pub(super) method: Method,
    /// Where to.
    pub(super) url: &'a Url,
    /// The JSON body, if any.
    pub(super) body: Option<&'a [u8]>,
    /// Ties every request of the call together in Graph's logs and ours.
    pub(super) client_request_id: Uuid,
    /// The caller took the pacer's slot for the first request (the application's delivery
    /// paths do); `false` makes the engine take one for it too.
    pub(super) first_paced: bool,
}

/// The waiting one call has done, against its budget.
pub(super) struct RetryBudget {
    limit: Duration,
    waited: Duration,
}

impl RetryBudget {
    fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.waited)
    }

    fn spend(&mut self, wait: Duration) {
        self.waited = self.waited.saturating_add(wait);
    }
}

/// Sends logical calls for one tenant, through the tenant's pacer.
pub(super) struct RetryEngine {
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    /// In-call retries of one request.
    max_retries: u32,
    /// Most time one call may wait between retries; longer waits go back to the outbox.
    retry_budget: Duration,
    /// The tenant's budgets and `Retry-After` pause, shared with the application.
    pacer: Arc<dyn Pacer>,
}

impl RetryEngine {
    /// An engine sending through `http` with the retry limits of `config`, paced by `pacer`.
    pub(super) fn new(
        config: &ResolvedGraphClient,
        http: reqwest::Client,
        tokens: Arc<dyn TokenSource>,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
        pacer: Arc<dyn Pacer>,
    ) -> Self {
        Self {
            http,
            tokens,
            clock,
            sleeper,
            max_retries: config.max_retries,
            retry_budget: config.retry_budget,
            pacer,
        }
    }

    /// In-call retries of one request.
    pub(super) fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The waiting budget of one call.
    pub(super) fn retry_budget(&self) -> Duration {
        self.retry_budget
    }

    /// What is left of the tenant's `Retry-After` pause now (zero when the pacer cannot say).
    pub(super) async fn pause_left(&self) -> Duration {
        self.pacer
            .state()
            .await
            .map_or(Duration::ZERO, |state| state.pause_left(self.clock.now()))
    }

    /// A fresh budget for one call (or for the pages of one listing, which share it).
    pub(super) fn budget(&self) -> RetryBudget {
        RetryBudget {
            limit: self.retry_budget,
            waited: Duration::ZERO,
        }
    }

    /// Sends one logical call, resending it within the call where its kind allows, and
    /// returns how it ended.
    pub(super) async fn execute(&self, call: &Call<'_>, budget: &mut RetryBudget) -> Exchange {
        // Requests sent so far in this call: the next one's `Retry-Attempt`.
        let mut sent = 0u32;
        let mut retries = 0u32;
        let mut reauthenticated = false;
        let mut claims: Option<String> = None;
        loop {
            if (sent > 0 || !call.first_paced)
                && let Err(wait) = self.wait_for_slot(call.kind, budget).await
            {
                tracing::info!(
                    graph.client_request_id = %call.client_request_id,
                    graph.wait_ms = wait.as_millis(),
                    "no slot of the tenant's budget within the retry budget; not sending"
                );
                return Exchange::without_answer(
                    Ending::Unsent,
                    Some(wait),
                    format!(
                        "not sent: the tenant's next slot is {} ms away, beyond the retry budget",
                        wait.as_millis()
                    ),
                );
            }
            let token = match self.tokens.token(claims.take().as_deref()).await {
                Ok(token) => token,
                Err(error) => return self.token_failure(&error, call),
            };
            let exchange = self.send(call, &token, sent).await;
            sent += 1;

            if exchange.status() == Some(StatusCode::UNAUTHORIZED) && !reauthenticated {
                // Graph refused the token (revoked, or a Continuous Access Evaluation
                // challenge): drop the cached token, ask for a new one (with the challenge's
                // claims when Graph sent some), and resend once. A second 401 is final.
                reauthenticated = true;
                self.tokens.invalidate();
                claims = exchange.claims.clone();
                continue;
            }

            let delay = exchange.retry_after.unwrap_or_else(|| backoff(retries + 1));
            if exchange.status() == Some(StatusCode::TOO_MANY_REQUESTS) {
                // The whole tenant is throttled, not this URL: hold back every call of every
                // path, and cancel the slots they booked.
                record_throttle(self.pacer.as_ref(), self.clock.now(), delay).await;
            }
            if !call.kind.retries(&exchange.ending) || retries >= self.max_retries {
                return exchange;
            }
            if delay > budget.remaining() {
                // Waiting that long would hold a worker; the outbox waits instead.
                tracing::info!(
                    graph.client_request_id = %call.client_request_id,
                    graph.retry_after_ms = delay.as_millis(),
                    "the next retry would exceed the in-call budget; handing back to the outbox"
                );
                return exchange;
            }
            // After a 429 the pacer holds the next slot back until `Retry-After`; after any
            // other failure the back-off is waited here, and the slot after it.
            if exchange.status() != Some(StatusCode::TOO_MANY_REQUESTS) {
                self.sleeper.sleep(delay).await;
                budget.spend(delay);
            }
            retries += 1;
        }
    }

    /// Waits for a slot of the call's budget that starts within what is left of the retry
    /// budget, and spends the wait.
    ///
    /// # Errors
    /// How far away the next slot is, without waiting, when it is beyond the budget (or the
    /// pacer cannot answer: then the retry base is the wait reported).
    async fn wait_for_slot(
        &self,
        kind: CallKind,
        budget: &mut RetryBudget,
    ) -> Result<(), Duration> {
        let now = self.clock.now();
        let latest = now.saturating_add(budget.remaining());
        let booking = wait_for_slot(
            self.pacer.as_ref(),
            self.clock.as_ref(),
            self.sleeper.as_ref(),
            kind.budget(),
            latest,
        )
        .await;
        match booking {
            Ok(Booking::Booked(_)) => {
                budget.spend(self.clock.now().saturating_duration_since(now));
                Ok(())
            }
            Ok(Booking::NoneBefore { next_free }) => Err(next_free.saturating_duration_since(now)),
            Err(error) => {
                tracing::warn!(error.message = %error, "the pacer failed; not sending");
                Err(backoff(1))
            }
        }
    }

    /// The end of a call whose token could not be had: no Graph request is sent.
    fn token_failure(&self, error: &TokenError, call: &Call<'_>) -> Exchange {
        tracing::warn!(
            graph.client_request_id = %call.client_request_id,
            error.message = %error,
            "no access token for Microsoft Graph; request not sent"
        );
        match error {
            TokenError::Transient { retry_at, .. } => Exchange::without_answer(
                Ending::Unsent,
                Some(retry_at.saturating_duration_since(self.clock.now())),
                error.to_string(),
            ),
            TokenError::Configuration { .. } | TokenError::BackingOff { .. } => {
                Exchange::without_answer(Ending::NoToken, None, error.to_string())
            }
        }
    }

    /// Sends one request and reads the whole answer. `attempt` is 0 for the first request of
    /// the call and numbers the resends after it.
    async fn send(&self, call: &Call<'_>, token: &AccessToken, attempt: u32) -> Exchange {
        let Ok(mut authorization) = HeaderValue::from_str(&format!("Bearer {}", token.bearer()))
        else {
            return Exchange::without_answer(
                Ending::NoToken,
                None,
                "the access token holds characters an HTTP header cannot carry".into(),
            );
        };
        // Keeps the token out of reqwest's and hyper's debug output.
        authorization.set_sensitive(true);
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json")
            .header(CLIENT_REQUEST_ID, call.client_request_id.to_string());
        if attempt > 0 {
            request = request.header(RETRY_ATTEMPT, attempt.to_string());
        }
        if let Some(body) = call.body {
            // Never compressed: Graph can answer 400 or 415 to a gzip-encoded body.
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }

        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return transport_failure(&error, call, attempt),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            // A success whose body is lost may still have applied: unknown.
            Err(error) if status.is_success() => {
                let mut exchange = transport_failure(&error, call, attempt);
                exchange.meta.status = Some(status.as_u16());
                exchange.meta.request_id = header_text(&headers, REQUEST_ID);
                return exchange;
            }
            // An error status decides on its own; the body only adds the error code.
            Err(_) => Vec::new(),
        };
        self.answered(call, attempt, status, &headers, body)
    }

    /// Turns Graph's answer into an [`Exchange`] and logs it.
    fn answered(
        &self,
        call: &Call<'_>,
        attempt: u32,
        status: StatusCode,
        headers: &HeaderMap,
        body: Vec<u8>,
    ) -> Exchange {
        let error = if status.is_success() {
            GraphErrorBody::default()
        } else {
            GraphErrorBody::parse(&body)
        };
        let meta = GraphResponseMeta {
            status: Some(status.as_u16()),
            error_code: error.innermost_code().map(str::to_owned),
            error_message: error.message.clone(),
            request_id: header_text(headers, REQUEST_ID),
        };
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, self.clock.now()));
        let claims = if status == StatusCode::UNAUTHORIZED {
            headers
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .find_map(challenge_claims)
        } else {
            None
        };
        log_answer(call, attempt, &meta);
        graph_metrics::count_answer(call.operation, status.as_u16());
        Exchange {
            ending: Ending::Answered { status, body },
            meta,
            retry_after,
            error_codes: error.codes,
            claims,
        }
    }
}

/// The end of a request that got no answer from Graph.
fn transport_failure(error: &reqwest::Error, call: &Call<'_>, attempt: u32) -> Exchange {
    let (ending, kind) = if error.is_connect() {
        // Connect, DNS and TLS failures happen before the request is written: not applied.
        (Ending::Unsent, "connection failed")
    } else if error.is_redirect() {
        (Ending::RedirectRefused, "redirect refused")
    } else if error.is_timeout() {
        (Ending::Lost, "timed out after sending")
    } else {
        (Ending::Lost, "connection lost mid-exchange")
    };
    let description = format!("{kind}: {}", error_chain(error));
    graph_metrics::count_transport_failure(call.operation);
    tracing::info!(
        http.method = %call.method,
        graph.client_request_id = %call.client_request_id,
        graph.retry_attempt = attempt,
        error.message = %description,
        "no answer from Microsoft Graph"
    );
    Exchange::without_answer(ending, None, description)
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Logs one answer: successes at debug, everything else at info. Never the token, never the
/// body.
fn log_answer(call: &Call<'_>, attempt: u32, meta: &GraphResponseMeta) {
    let status = meta.status.unwrap_or_default();
    let request_id = meta.request_id.as_deref().unwrap_or_default();
    let error_code = meta.error_code.as_deref().unwrap_or_default();
    if (200..300).contains(&status) {
        tracing::debug!(
            http.method = %call.method,
            graph.status = status,
            graph.request_id = request_id,
            graph.client_request_id = %call.client_request_id,
            graph.retry_attempt = attempt,
            "Microsoft Graph answered"
        );
    } else {
        tracing::info!(
            http.method = %call.method,
            graph.status = status,
            graph.request_id = request_id,
            graph.client_request_id = %call.client_request_id,
            graph.error_code = error_code,
            graph.retry_attempt = attempt,
            "Microsoft Graph answered with an error"
        );
    }
}
