//! [`HttpGraphClient`]: the real [`GraphGateway`], Microsoft Graph's beta
//! `complianceManagementPartners` collection over reqwest (graph-client-behaviour §1).
//!
//! Every call follows the same path: wait for the tenant's turn (`pacing`), get a token,
//! send with the headers of §1.3, classify the answer (`classify`), and retry in-call only
//! where §1.6 allows it, within `max_retries` and the waiting budget. Anything longer goes
//! back to the outbox as an outcome; nothing here ever sleeps on its own clock: all waiting
//! goes through the injected [`Sleeper`], all "now" through the injected [`Clock`].
//!
//! # Layout
//! - this file: construction ([`HttpGraphClient::new`], [`connect`], [`build_http_client`]),
//!   the gateway methods, and the send-and-retry loop.
//! - `classify`: outcome classes, Graph error bodies, `WWW-Authenticate` claims.
//! - `retry_after`: `Retry-After` parsing and the back-off without it.
//! - `pacing`: the tenant-wide pause after a 429 and the spacing of writes.

mod classify;
pub(crate) mod pacing;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use cmp_application::{
    Clock, CreateOutcome, GraphCallResult, GraphGateway, GraphReadError, GraphResponseMeta,
    GraphWriteResult, RemotePartner, Sleeper, WriteOutcome,
};
use cmp_domain::{NaturalKey, Partner};
use cmp_graph_model::partner::render_partner_for_graph;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url, redirect};
use serde::Deserialize;
use uuid::Uuid;

use self::classify::{
    Ending, Exchange, GraphErrorBody, Read, WriteKind, challenge_claims, create_outcome,
    read_result, write_outcome,
};
use self::pacing::{Pacing, later, until};
use crate::retry_after::{backoff, parse_retry_after};
use crate::settings::ResolvedGraphClient;
use crate::token::{AccessToken, TokenError, TokenProvider, TokenSource};

/// The `User-Agent` of every request: `cmp-onboarding/<version>` (§1.3).
pub const USER_AGENT: &str = concat!("cmp-onboarding/", env!("CARGO_PKG_VERSION"));

/// Redirects followed at most (§1.4).
const MAX_REDIRECTS: usize = 5;

/// The header carrying our correlation id; Graph echoes it and logs it.
const CLIENT_REQUEST_ID: &str = "client-request-id";

/// The header numbering resent requests (`1`, `2`, …), as the Microsoft SDKs send it.
const RETRY_ATTEMPT: &str = "Retry-Attempt";

/// Graph's id of the request, on every response; operators quote it to Microsoft support.
const REQUEST_ID: &str = "request-id";

/// Builds the reqwest client for Graph calls: the configured connect and whole-request
/// timeouts, at most five redirects and never from https to http, no proxy, our User-Agent.
///
/// # Errors
/// When reqwest cannot build the client (its TLS backend fails to initialise).
pub fn build_http_client(config: &ResolvedGraphClient) -> anyhow::Result<reqwest::Client> {
    http_client(config.connect_timeout, config.request_timeout)
        .context("building the HTTP client for Microsoft Graph")
}

/// Builds the reqwest client for the token endpoint: like [`build_http_client`], but with the
/// token timeout as its whole-request timeout (§1.2: 30 s, MSAL's default).
///
/// # Errors
/// When reqwest cannot build the client (its TLS backend fails to initialise).
pub fn build_token_http_client(config: &ResolvedGraphClient) -> anyhow::Result<reqwest::Client> {
    http_client(config.connect_timeout, config.token_timeout)
        .context("building the HTTP client for the token endpoint")
}

/// Makes ring rustls' process-wide crypto provider. The workspace builds reqwest without a
/// provider of its own (aws-lc-rs, a long C build), and reqwest refuses to build a client until
/// a process has one.
pub(crate) fn install_tls_provider() {
    // An error means a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn http_client(connect_timeout: Duration, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    install_tls_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .redirect(redirect_policy())
        // No proxy, deliberately: reqwest would otherwise pick one up from HTTP(S)_PROXY in
        // the environment, silently routing bearer tokens and secrets through whatever host
        // that names (and breaking loopback tests on machines that set it). A deployment that
        // needs a proxy must get it as explicit configuration, not by accident.
        .no_proxy()
        .user_agent(USER_AGENT)
        // Referer would tell a redirect target which Graph URL we came from; nothing needs it.
        .referer(false)
        // reqwest's default retry policy stays: it only resends on protocol-level refusals
        // (e.g. HTTP/2 REFUSED_STREAM) that guarantee the server did not process the request,
        // which is safe even for a POST. Every other resend is decided by the loop below.
        .build()
}

/// The Graph client and its token provider, wired from one configuration by [`connect`].
pub struct GraphConnection {
    /// The token provider, shared with `client`: the binary's credential check asks it for a
    /// token on its own, to tell a credential problem from a Graph problem.
    pub tokens: Arc<TokenProvider>,
    /// The gateway the service uses.
    pub client: HttpGraphClient,
}

/// Builds the token provider and the Graph client of `config`, sharing one reqwest client
/// ([`build_http_client`]); each token request is limited to the token timeout by the provider.
///
/// # Errors
/// When the reqwest client cannot be built, or the configured certificate or private key is
/// unusable ([`crate::token::InvalidCredential`]).
pub fn connect(
    config: &ResolvedGraphClient,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
) -> anyhow::Result<GraphConnection> {
    let http = build_http_client(config)?;
    let tokens = Arc::new(
        TokenProvider::new(
            http.clone(),
            config.token_url.clone(),
            config.client_id.clone(),
            config.scope.clone(),
            config.credential.clone(),
            Arc::clone(&clock),
            config.token_timeout,
        )
        .context("building the token provider")?,
    );
    let client = HttpGraphClient::with_http_client(
        config,
        http,
        Arc::clone(&tokens) as Arc<dyn TokenSource>,
        clock,
        sleeper,
    );
    Ok(GraphConnection { tokens, client })
}

/// At most five redirects, never from https to http (§1.4). reqwest itself drops
/// `Authorization` when the scheme, host or port changes.
fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        // `previous` starts with the original URL, so its length is the redirect number.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let downgrade = attempt
            .previous()
            .last()
            .is_some_and(|from| from.scheme() == "https" && attempt.url().scheme() != "https");
        if downgrade {
            attempt.error("refusing to follow a redirect from https to http")
        } else {
            attempt.follow()
        }
    })
}

/// The Microsoft Graph gateway of one tenant: one instance per tenant, shared by every caller,
/// because the tenant-wide pause after a 429 and the write spacing live in it.
pub struct HttpGraphClient {
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    /// `{root}/deviceManagement/complianceManagementPartners`.
    collection: Url,
    /// The only origin (scheme, host, port) that ever receives our bearer token; a
    /// `@odata.nextLink` elsewhere is refused.
    graph_root: Url,
    /// In-call retries of one request.
    max_retries: u32,
    /// Most time one call may wait between retries; longer waits go back to the outbox.
    retry_budget: Duration,
    /// Pages of a list followed at most: a guard against next-link loops.
    max_pages: u32,
    /// Adopt a pre-seeded record when Graph refuses a create with its routing error.
    adopt_preseeded: bool,
    /// The tenant-wide pause and write spacing.
    pacing: Pacing,
}

impl std::fmt::Debug for HttpGraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGraphClient")
            .field("graph_root", &self.graph_root.as_str())
            .field("max_retries", &self.max_retries)
            .field("retry_budget", &self.retry_budget)
            .field("max_pages", &self.max_pages)
            .field("adopt_preseeded", &self.adopt_preseeded)
            .finish_non_exhaustive()
    }
}

/// What one logical call may retry in-call (§1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    /// POST: resent only when it provably did not apply (429, connect failure). After an
    /// unknown outcome a second POST could create a duplicate: the outbox reconciles instead.
    Create,
    /// PATCH and DELETE. Both are idempotent (the PATCH carries the whole partner), so besides
    /// what a GET retries they are also resent after 500 and 502: a second PATCH or DELETE
    /// lands in the same state as the first. 507 and 509 are not retried in-call: they do
    /// not clear within seconds.
    Write,
    /// GET: resent after 429, 503, 504 and transport failures.
    Read,
}

impl CallKind {
    fn is_write(self) -> bool {
        matches!(self, Self::Create | Self::Write)
    }

    /// Whether an exchange that ended this way may be resent within the call.
    fn retries(self, ending: &Ending) -> bool {
        match ending {
            Ending::Answered { status, .. } => match status.as_u16() {
                429 => true,
                503 | 504 => self != Self::Create,
                500 | 502 => self == Self::Write,
                _ => false,
            },
            // Only a connect, DNS or TLS failure reaches the retry decision as `Unsent`: a
            // pause beyond the budget and a token outage end the call before it.
            Ending::Unsent => true,
            Ending::Lost => self != Self::Create,
            Ending::RedirectRefused | Ending::NoToken => false,
        }
    }
}

/// One logical call: the same `client-request-id` on every request it sends.
struct Call<'a> {
    kind: CallKind,
    method: Method,
    url: &'a Url,
    body: Option<&'a [u8]>,
    client_request_id: Uuid,
}

/// The waiting one call has done, against its budget.
struct RetryBudget {
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

/// One page of the collection.
#[derive(Deserialize)]
struct Page {
    value: Vec<Entity>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// The part of a partner reconciliation reads.
#[derive(Deserialize)]
struct Entity {
    id: String,
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
}

impl From<Entity> for RemotePartner {
    fn from(entity: Entity) -> Self {
        Self {
            graph_id: entity.id,
            display_name: entity.display_name,
        }
    }
}

impl HttpGraphClient {
    /// A client for the tenant and Graph root of `config`, with its own reqwest client
    /// ([`build_http_client`]).
    ///
    /// # Errors
    /// When the reqwest client cannot be built.
    pub fn new(
        config: &ResolvedGraphClient,
        tokens: Arc<dyn TokenSource>,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
    ) -> anyhow::Result<Self> {
        let http = build_http_client(config)?;
        Ok(Self::with_http_client(config, http, tokens, clock, sleeper))
    }

    /// A client that sends through `http`, e.g. the one [`connect`] shares with the token
    /// provider. `http` should come from [`build_http_client`]: its timeouts, redirect policy
    /// and proxy choice are part of this client's contract.
    pub fn with_http_client(
        config: &ResolvedGraphClient,
        http: reqwest::Client,
        tokens: Arc<dyn TokenSource>,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Self {
        let mut collection = config.graph_root.clone();
        // The settings only accept http and https roots, which always have path segments.
        if let Ok(mut segments) = collection.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["deviceManagement", "complianceManagementPartners"]);
        }
        Self {
            http,
            tokens,
            clock,
            sleeper,
            collection,
            graph_root: config.graph_root.clone(),
            max_retries: config.max_retries,
            retry_budget: config.retry_budget,
            max_pages: config.max_pages,
            adopt_preseeded: config.adopt_preseeded,
            pacing: Pacing::new(config.write_interval),
        }
    }

    /// `{collection}/{id}`, the id percent-encoded as one path segment.
    fn item_url(&self, graph_id: &str) -> Url {
        let mut url = self.collection.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(graph_id);
        }
        url
    }

    fn budget(&self) -> RetryBudget {
        RetryBudget {
            limit: self.retry_budget,
            waited: Duration::ZERO,
        }
    }

    /// Sends one logical call, resending it within the call where §1.6 allows, and returns
    /// how it ended.
    async fn execute(&self, call: &Call<'_>, budget: &mut RetryBudget) -> Exchange {
        // Requests sent so far in this call: the next one's `Retry-Attempt`.
        let mut sent = 0u32;
        let mut retries = 0u32;
        let mut reauthenticated = false;
        let mut claims: Option<String> = None;
        loop {
            if let Err(paused) = self.wait_for_turn(call.kind, budget).await {
                tracing::info!(
                    graph.client_request_id = %call.client_request_id,
                    graph.paused_ms = paused.as_millis(),
                    "Graph throttled this tenant beyond the retry budget; not sending"
                );
                return Exchange::without_answer(
                    Ending::Unsent,
                    Some(paused),
                    format!(
                        "not sent: Microsoft Graph throttled this tenant for another {} ms",
                        paused.as_millis()
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
                // §1.5: drop the cached token, ask for a new one (with the challenge's claims
                // when Graph sent some), and resend once. A second 401 is final.
                reauthenticated = true;
                self.tokens.invalidate();
                claims = exchange.claims.clone();
                continue;
            }

            let delay = exchange.retry_after.unwrap_or_else(|| backoff(retries + 1));
            if exchange.status() == Some(StatusCode::TOO_MANY_REQUESTS) {
                // The whole tenant is throttled, not this URL: hold back every call.
                self.pacing.pause_until(later(self.clock.now(), delay));
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
            self.sleeper.sleep(delay).await;
            budget.spend(delay);
            retries += 1;
        }
    }

    /// Waits until this request may go out: after any 429 pause, and for a write after the
    /// previous write's slot plus the write interval.
    ///
    /// # Errors
    /// The remaining pause, without waiting, when it is longer than what is left of the budget.
    async fn wait_for_turn(
        &self,
        kind: CallKind,
        budget: &mut RetryBudget,
    ) -> Result<(), Duration> {
        let turn = self
            .pacing
            .take_turn(self.clock.now(), kind.is_write(), budget.remaining())?;
        // Only the pause counts against the retry budget: write spacing is at most one
        // interval per queued writer (a quarter second by default), rate limiting rather than
        // retrying, and the dispatcher keeps one create in flight per tenant.
        budget.spend(turn.paused);
        if !turn.wait.is_zero() {
            self.sleeper.sleep(turn.wait).await;
        }
        Ok(())
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
                Some(until(*retry_at, self.clock.now())),
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
            // Never compressed: Graph can answer 400/415 to a gzip body (§1.3).
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
        Exchange {
            ending: Ending::Answered { status, body },
            meta,
            retry_after,
            error_codes: error.codes,
            claims,
        }
    }

    /// GETs `url` as one logical call.
    async fn read(
        &self,
        url: &Url,
        client_request_id: Uuid,
        budget: &mut RetryBudget,
    ) -> Result<Read, GraphReadError> {
        let call = Call {
            kind: CallKind::Read,
            method: Method::GET,
            url,
            body: None,
            client_request_id,
        };
        read_result(self.execute(&call, budget).await)
    }

    /// Checks a `@odata.nextLink` before following it: an absolute URL on the configured
    /// Graph origin, since the bearer token goes with it.
    fn next_page_url(&self, link: &str) -> Result<Url, GraphReadError> {
        let url = Url::parse(link).map_err(|e| {
            GraphReadError::Paging(format!(
                "@odata.nextLink is not an absolute URL ({e}): {link}"
            ))
        })?;
        let same_origin = url.scheme() == self.graph_root.scheme()
            && url.host_str() == self.graph_root.host_str()
            && url.port_or_known_default() == self.graph_root.port_or_known_default();
        if !same_origin {
            return Err(GraphReadError::Paging(format!(
                "@odata.nextLink leaves the configured Graph host {}: {link}; not followed",
                self.graph_root.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    /// PATCHes or DELETEs as one logical call.
    async fn write(
        &self,
        method: Method,
        graph_id: &str,
        body: Option<&[u8]>,
        client_request_id: Uuid,
    ) -> Exchange {
        let url = self.item_url(graph_id);
        let call = Call {
            kind: CallKind::Write,
            method,
            url: &url,
            body,
            client_request_id,
        };
        self.execute(&call, &mut self.budget()).await
    }

    /// Graph refused a create with its routing error: the tenant holds pre-seeded records.
    /// Adopts the single one named like `partner` by PATCHing it with the partner.
    async fn adopt_preseeded(
        &self,
        partner: &Partner,
        client_request_id: Uuid,
        refusal: GraphResponseMeta,
    ) -> GraphCallResult {
        let refused = |message: String| GraphCallResult {
            outcome: CreateOutcome::Rejected,
            meta: GraphResponseMeta {
                error_message: Some(message),
                ..refusal.clone()
            },
        };
        let listed = match self.list_partners().await {
            Ok(listed) => listed,
            // The POST was refused, so nothing was applied: a later attempt may resend it.
            Err(GraphReadError::Transient(meta)) => {
                return GraphCallResult {
                    outcome: CreateOutcome::NotApplied { retry_after: None },
                    meta,
                };
            }
            Err(GraphReadError::AuthFailure(meta)) => {
                return GraphCallResult {
                    outcome: CreateOutcome::AuthFailure,
                    meta,
                };
            }
            Err(error) => {
                return refused(format!(
                    "Graph refused the create with its routing error and listing the pre-seeded records failed: {error}"
                ));
            }
        };
        let wanted = NaturalKey::of(partner.display_name());
        let matches: Vec<&RemotePartner> = listed
            .iter()
            .filter(|remote| wanted.matches_reported(remote.display_name.as_deref()))
            .collect();
        let [preseeded] = matches.as_slice() else {
            return refused(format!(
                "Graph refused the create with its routing error and {} pre-seeded records are named '{}' (exactly one can be adopted)",
                matches.len(),
                partner.display_name()
            ));
        };
        tracing::info!(
            graph.client_request_id = %client_request_id,
            graph.id = %preseeded.graph_id,
            "adopting the pre-seeded Graph record of the same display name"
        );
        let updated = self
            .update_partner(&preseeded.graph_id, partner, client_request_id)
            .await;
        let outcome = match updated.outcome {
            WriteOutcome::Applied => CreateOutcome::Created {
                graph_id: preseeded.graph_id.clone(),
            },
            WriteOutcome::NotApplied { retry_after } => CreateOutcome::NotApplied { retry_after },
            // The record vanished between the list and the PATCH: nothing of ours is in Graph,
            // so a later attempt may start over.
            WriteOutcome::NotFound => CreateOutcome::NotApplied { retry_after: None },
            WriteOutcome::AuthFailure => CreateOutcome::AuthFailure,
            WriteOutcome::Unknown => CreateOutcome::Unknown,
            WriteOutcome::Rejected => CreateOutcome::Rejected,
        };
        GraphCallResult {
            outcome,
            meta: updated.meta,
        }
    }
}

#[async_trait]
impl GraphGateway for HttpGraphClient {
    #[tracing::instrument(
        name = "graph.create_partner",
        skip_all,
        fields(partner.id = %partner.id(), graph.client_request_id = %client_request_id)
    )]
    async fn create_partner(&self, partner: &Partner, client_request_id: Uuid) -> GraphCallResult {
        let body = match serde_json::to_vec(&render_partner_for_graph(partner)) {
            Ok(body) => body,
            Err(error) => {
                return GraphCallResult {
                    outcome: CreateOutcome::Rejected,
                    meta: unserialisable(&error),
                };
            }
        };
        let call = Call {
            kind: CallKind::Create,
            method: Method::POST,
            url: &self.collection,
            body: Some(&body),
            client_request_id,
        };
        let exchange = self.execute(&call, &mut self.budget()).await;
        if self.adopt_preseeded && exchange.is_routing_refusal() {
            return self
                .adopt_preseeded(partner, client_request_id, exchange.meta)
                .await;
        }
        GraphCallResult {
            outcome: create_outcome(&exchange),
            meta: exchange.meta,
        }
    }

    #[tracing::instrument(name = "graph.get_partner", skip_all, fields(graph.id = %graph_id))]
    async fn get_partner(&self, graph_id: &str) -> Result<Option<RemotePartner>, GraphReadError> {
        let url = self.item_url(graph_id);
        // A fresh id per logical read; its retries share it.
        match self.read(&url, Uuid::new_v4(), &mut self.budget()).await? {
            Read::Found(body) => serde_json::from_slice::<Entity>(&body)
                .map(|entity| Some(entity.into()))
                .map_err(|e| GraphReadError::Malformed(format!("partner {graph_id}: {e}"))),
            Read::NotFound(_) => Ok(None),
        }
    }

    #[tracing::instrument(name = "graph.list_partners", skip_all)]
    async fn list_partners(&self) -> Result<Vec<RemotePartner>, GraphReadError> {
        // One id for the whole listing, so Graph's logs tie its pages together. Each page
        // gets `max_retries`; the waiting budget is shared by all of them.
        let client_request_id = Uuid::new_v4();
        let mut budget = self.budget();
        let mut url = self.collection.clone();
        let mut seen = HashSet::from([url.as_str().to_owned()]);
        let mut partners = Vec::new();
        for page_number in 1..=self.max_pages {
            let body = match self.read(&url, client_request_id, &mut budget).await? {
                Read::Found(body) => body,
                // A collection does not vanish: a 404 here is a refusal (wrong root, say).
                Read::NotFound(meta) => return Err(GraphReadError::Refused(meta)),
            };
            let page: Page = serde_json::from_slice(&body).map_err(|e| {
                GraphReadError::Malformed(format!("page {page_number} of the partner list: {e}"))
            })?;
            partners.extend(page.value.into_iter().map(RemotePartner::from));
            let Some(link) = page.next_link else {
                return Ok(partners);
            };
            // Followed verbatim: no query option is added or changed (graph-contract §10).
            url = self.next_page_url(&link)?;
            if !seen.insert(url.as_str().to_owned()) {
                return Err(GraphReadError::Paging(format!(
                    "@odata.nextLink repeats an earlier page: {link}"
                )));
            }
        }
        Err(GraphReadError::Paging(format!(
            "the partner list has more than {} pages",
            self.max_pages
        )))
    }

    #[tracing::instrument(
        name = "graph.update_partner",
        skip_all,
        fields(graph.id = %graph_id, graph.client_request_id = %client_request_id)
    )]
    async fn update_partner(
        &self,
        graph_id: &str,
        partner: &Partner,
        client_request_id: Uuid,
    ) -> GraphWriteResult {
        let body = match serde_json::to_vec(&render_partner_for_graph(partner)) {
            Ok(body) => body,
            Err(error) => {
                return GraphWriteResult {
                    outcome: WriteOutcome::Rejected,
                    meta: unserialisable(&error),
                };
            }
        };
        let exchange = self
            .write(Method::PATCH, graph_id, Some(&body), client_request_id)
            .await;
        GraphWriteResult {
            outcome: write_outcome(&exchange, WriteKind::Update),
            meta: exchange.meta,
        }
    }

    #[tracing::instrument(
        name = "graph.delete_partner",
        skip_all,
        fields(graph.id = %graph_id, graph.client_request_id = %client_request_id)
    )]
    async fn delete_partner(&self, graph_id: &str, client_request_id: Uuid) -> GraphWriteResult {
        let exchange = self
            .write(Method::DELETE, graph_id, None, client_request_id)
            .await;
        GraphWriteResult {
            outcome: write_outcome(&exchange, WriteKind::Delete),
            meta: exchange.meta,
        }
    }
}

/// A partner that cannot be rendered as JSON (cannot happen with derived `Serialize` on plain
/// data, but a refusal is the honest answer if it ever does): nothing is sent.
fn unserialisable(error: &serde_json::Error) -> GraphResponseMeta {
    tracing::error!(error.message = %error, "the partner could not be rendered as Graph JSON");
    GraphResponseMeta {
        error_message: Some(format!(
            "the partner could not be rendered as JSON: {error}"
        )),
        ..GraphResponseMeta::default()
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
    tracing::info!(
        http.method = %call.method,
        graph.client_request_id = %call.client_request_id,
        graph.retry_attempt = attempt,
        error.message = %description,
        "no answer from Microsoft Graph"
    );
    Exchange::without_answer(ending, None, description)
}

/// `error` and its sources, `: `-separated: reqwest's own message is often just "error
/// sending request", with the useful part (refused, reset, TLS alert) in a source.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
