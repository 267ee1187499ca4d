//! [`TokenProvider`] against a wiremock token endpoint on 127.0.0.1, with a clock moved by hand.
//! No test sleeps: time only moves through [`TestClock`].
//!
//! This file holds the shared fixtures and what the provider does for every credential
//! (cache, refresh, single flight, back-off), exercised with a client secret, plus Entra's
//! client-credentials form and its refusals; `workload_identity` and `managed_identity` hold
//! what is particular to those credentials.

mod managed_identity;
mod workload_identity;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmp_application::Clock;
use cmp_domain::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use url::Url;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{TokenError, TokenProvider, TokenSource, TokenStatus};
use crate::settings::{Credential, ResolvedGraphClient};

const TENANT: Uuid = Uuid::from_u128(0x72f988bf_86f1_41af_91ab_2d7cd011db47);
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const SCOPE: &str = "https://graph.microsoft.com/.default";
const SECRET: &str = "s3cret-value";
/// 2026-01-01T00:00:00Z: any fixed instant will do; the tests never read the real clock.
const START_SECONDS: i64 = 1_767_225_600;
/// What Graph sends in a CAE challenge, already decoded.
const CLAIMS: &str = r#"{"access_token":{"nbf":{"essential":true,"value":"1767225600"}}}"#;

const CERTIFICATE_PEM: &str = include_str!("../../tests/fixtures/cert.pem");
const PRIVATE_KEY_PEM: &str = include_str!("../../tests/fixtures/key.pem");
const PUBLIC_KEY_PEM: &str = include_str!("../../tests/fixtures/public.pem");
/// Computed by openssl, not by the code under test (see tests/fixtures/README.md).
const CERTIFICATE_X5T_S256: &str = include_str!("../../tests/fixtures/cert.x5t_s256.txt");

/// A clock that only moves when a test says so.
struct TestClock(Mutex<Timestamp>);

impl TestClock {
    fn new() -> Self {
        Self(Mutex::new(
            Timestamp::from_unix_seconds(START_SECONDS, 0).expect("in range"),
        ))
    }

    fn advance(&self, seconds: i64) {
        let mut now = self.0.lock().expect("clock lock");
        *now =
            Timestamp::from_unix_ticks(now.unix_ticks() + seconds * 10_000_000).expect("in range");
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

/// The configuration a provider is built from: the token URL on `server_uri`, a 10 s token
/// timeout, and `credential`.
fn config(server_uri: &str, credential: Credential) -> ResolvedGraphClient {
    let seconds = Duration::from_secs(10);
    ResolvedGraphClient {
        graph_root: Url::parse("https://graph.microsoft.com/beta").expect("url"),
        token_url: Url::parse(&format!("{server_uri}{}", token_path())).expect("url"),
        scope: SCOPE.into(),
        tenant_id: TENANT,
        client_id: CLIENT_ID.into(),
        credential,
        connect_timeout: seconds,
        request_timeout: seconds,
        token_timeout: seconds,
        max_retries: 3,
        retry_budget: seconds,
        write_interval: Duration::from_millis(1),
        read_interval: Duration::from_millis(1),
        burst: 1,
        max_pages: 100,
        adopt_preseeded: false,
    }
}

/// A provider for `config`, on a hand-moved clock.
fn provider(config: &ResolvedGraphClient) -> (Arc<TokenProvider>, Arc<TestClock>) {
    let clock = Arc::new(TestClock::new());
    let provider =
        TokenProvider::new(test_http_client(), config, clock.clone()).expect("usable credential");
    (Arc::new(provider), clock)
}

/// A fake token endpoint, a hand-moved clock and a provider wired to both.
struct Harness {
    server: MockServer,
    clock: Arc<TestClock>,
    provider: Arc<TokenProvider>,
    /// The configuration the provider was built from.
    config: ResolvedGraphClient,
    /// The method and path token requests go to.
    endpoint: (&'static str, String),
}

impl Harness {
    async fn with_secret() -> Self {
        Self::with(|_| Credential::Secret(SecretString::from(SECRET))).await
    }

    async fn with_certificate() -> Self {
        Self::with(|_| Credential::Certificate {
            certificate_pem: CERTIFICATE_PEM.to_owned(),
            private_key_pem: SecretString::from(PRIVATE_KEY_PEM),
        })
        .await
    }

    /// A provider with the credential `credential` makes for the fake's URI.
    async fn with(credential: impl FnOnce(&str) -> Credential) -> Self {
        Self::build(credential, |_| {}).await
    }

    /// A provider with the credential `credential` makes for the fake's URI, and the
    /// configuration changed by `tweak`.
    async fn build(
        credential: impl FnOnce(&str) -> Credential,
        tweak: impl FnOnce(&mut ResolvedGraphClient),
    ) -> Self {
        let server = MockServer::start().await;
        let mut config = config(&server.uri(), credential(&server.uri()));
        tweak(&mut config);
        let (provider, clock) = provider(&config);
        let endpoint = match &config.credential {
            Credential::ManagedIdentity(endpoint) => ("GET", endpoint.url().path().to_owned()),
            _ => ("POST", token_path()),
        };
        Self {
            server,
            clock,
            provider,
            config,
            endpoint,
        }
    }

    /// Answers the next `times` token requests with `response`. Mocks mounted earlier answer
    /// first, so mounting in order scripts a sequence.
    async fn answer(&self, response: ResponseTemplate, times: u64) {
        let (verb, endpoint_path) = &self.endpoint;
        Mock::given(method(*verb))
            .and(path(endpoint_path.as_str()))
            .respond_with(response)
            .up_to_n_times(times)
            .expect(times)
            .mount(&self.server)
            .await;
    }

    async fn requests(&self) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .expect("request recording is on")
    }

    /// The one request the endpoint received, checked to be a POST to the token URL.
    async fn the_one_token_post(&self) -> Request {
        let mut requests = self.requests().await;
        assert_eq!(requests.len(), 1, "one token request");
        let request = requests.remove(0);
        assert_eq!(request.method.as_str(), "POST");
        assert_eq!(request.url.path(), token_path());
        request
    }

    async fn request_count(&self) -> usize {
        self.requests().await.len()
    }

    /// The form fields of the `index`th token request.
    async fn form(&self, index: usize) -> BTreeMap<String, String> {
        form_of(&self.requests().await[index])
    }

    async fn token(&self) -> Result<String, TokenError> {
        self.provider
            .token(None)
            .await
            .map(|token| token.bearer().to_owned())
    }

    /// `seconds` from the start of the test.
    fn after(&self, seconds: u64) -> Timestamp {
        Timestamp::from_unix_seconds(START_SECONDS, 0)
            .expect("in range")
            .saturating_add(Duration::from_secs(seconds))
    }
}

fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

fn form_of(request: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

/// `pairs` as an owned map, to compare with a form or a query.
fn map_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn token_response(token: &str, expires_in: i64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": token,
    }))
}

fn token_response_with_refresh_in(
    token: &str,
    expires_in: i64,
    refresh_in: i64,
) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "refresh_in": refresh_in,
        "access_token": token,
    }))
}

/// An Entra error answer, shaped as Entra sends it.
fn error_response(status: u16, error: &str, code: u64) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": error,
        "error_description": format!("AADSTS{code}: something is wrong. Trace ID: 0f5e Correlation ID: 9d1c Timestamp: 2026-01-01 00:00:00Z"),
        "error_codes": [code],
        "timestamp": "2026-01-01 00:00:00Z",
        "trace_id": "0f5e3c8a-1d2b-4c3d-9e8f-7a6b5c4d3e2f",
        "correlation_id": "9d1c2b3a-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
        "error_uri": "https://login.microsoftonline.com/error?code=0",
    }))
}

fn transient_retry_at(result: Result<String, TokenError>) -> Timestamp {
    match result {
        Err(TokenError::Transient { retry_at, .. }) => retry_at,
        other => panic!("expected a transient error, got {other:?}"),
    }
}

/// The OAuth error and AADSTS codes of a configuration error.
fn configuration_error(result: Result<String, TokenError>) -> (String, Vec<u64>) {
    match result {
        Err(TokenError::Configuration {
            error, error_codes, ..
        }) => (error, error_codes),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// Tokens for a first call, a call when exactly 300 s remain of a token that lives an hour,
/// and a call one second later.
async fn tokens_around_the_refresh_margin(h: &Harness) -> [String; 3] {
    let first = h.token().await.expect("first");
    h.clock.advance(3300);
    let at_the_margin = h.token().await.expect("at 300 s left");
    h.clock.advance(1);
    let inside_the_margin = h.token().await.expect("at 299 s left");
    [first, at_the_margin, inside_the_margin]
}

/// Entra's client-credentials form: client id, scope and grant type, then `proof`.
fn client_credentials_form(proof: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut form = map_of(&[
        ("client_id", CLIENT_ID),
        ("scope", SCOPE),
        ("grant_type", "client_credentials"),
    ]);
    form.extend(map_of(proof));
    form
}

/// Asks for a token from `callers` concurrent tasks, with `claims`, and returns the tokens.
async fn concurrent_tokens(
    provider: &Arc<TokenProvider>,
    callers: usize,
    claims: Option<&'static str>,
) -> Vec<String> {
    let mut tasks = JoinSet::new();
    for _ in 0..callers {
        let provider = provider.clone();
        tasks.spawn(async move {
            provider
                .token(claims)
                .await
                .map(|token| token.bearer().to_owned())
        });
    }
    tasks
        .join_all()
        .await
        .into_iter()
        .map(|result| result.expect("a token"))
        .collect()
}

// What the readiness probe is told

#[tokio::test]
async fn the_status_and_the_counters_follow_token_requests_and_the_status_sends_nothing() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let exposition = recorder.handle();
    // The test runs on one thread, so a thread-local recorder sees every count it causes.
    let _recording = metrics::set_default_local_recorder(&recorder);
    let h = Harness::with_secret().await;
    h.answer(error_response(401, "invalid_client", 7_000_215), 1)
        .await;
    h.answer(token_response("token-a", 3600), 1).await;

    let before_any = h.provider.status();
    configuration_error(h.token().await);
    let after_a_refusal = h.provider.status();
    h.clock.advance(61);
    h.token().await.expect("a token once the back-off is over");
    let after_a_token = h.provider.status();

    assert_eq!(before_any, TokenStatus::NotRequested);
    assert_eq!(after_a_refusal, TokenStatus::Failing);
    assert_eq!(after_a_token, TokenStatus::Obtained);
    assert_eq!(h.request_count().await, 2, "the status itself asks nothing");
    let counted = exposition.render();
    for series in [
        "cmp_graph_token_refreshes_total 1",
        r#"cmp_graph_token_failures_total{kind="configuration"} 1"#,
    ] {
        assert!(
            counted.lines().any(|line| line == series),
            "{series} in\n{counted}"
        );
    }
}

// Entra's client-credentials form

#[tokio::test]
async fn a_secret_request_posts_exactly_the_client_credentials_form() {
    let h = Harness::with_secret().await;
    h.answer(token_response("token-a", 3600), 1).await;

    let token = h.provider.token(None).await.expect("a token");

    assert_eq!(token.bearer(), "token-a");
    assert_eq!(token.expires_at(), h.after(3600));
    let request = &h.the_one_token_post().await;
    assert_eq!(
        request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        form_of(request),
        client_credentials_form(&[("client_secret", SECRET)])
    );
}

#[tokio::test]
async fn a_certificate_credential_sends_a_fresh_signed_ps256_assertion() {
    let h = Harness::with_certificate().await;
    h.answer(token_response("token-a", 3600), 2).await;

    h.token().await.expect("first");
    h.provider.invalidate();
    h.token().await.expect("second");

    let forms = [h.form(0).await, h.form(1).await];
    let keys: Vec<&str> = forms[0].keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "client_assertion",
            "client_assertion_type",
            "client_id",
            "grant_type",
            "scope"
        ]
    );
    assert_eq!(
        forms[0]["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let assertion = &forms[0]["client_assertion"];

    let header = jsonwebtoken::decode_header(assertion).expect("a JWT header");
    assert_eq!(header.alg, Algorithm::PS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(
        header.x5t_s256.as_deref(),
        Some(CERTIFICATE_X5T_S256.trim())
    );

    let key = DecodingKey::from_rsa_pem(PUBLIC_KEY_PEM.as_bytes()).expect("public key");
    let mut validation = Validation::new(Algorithm::PS256);
    validation.set_audience(&[h.config.token_url.as_str()]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.set_required_spec_claims(&["aud", "iss", "sub", "exp", "nbf"]);
    // The test clock is not the wall clock; the times are compared with it below instead.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .expect("signature, aud and iss verify")
        .claims;
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["nbf"], START_SECONDS);
    assert_eq!(claims["iat"], START_SECONDS);
    assert_eq!(claims["exp"], START_SECONDS + 600);
    let jti = claims["jti"].as_str().expect("jti");
    Uuid::parse_str(jti).expect("jti is a UUID");

    let second = jsonwebtoken::decode::<Value>(&forms[1]["client_assertion"], &key, &validation)
        .expect("second assertion verifies")
        .claims;
    assert_ne!(second["jti"], claims["jti"], "a fresh jti per request");
    h.server.verify().await;
}

#[test]
fn an_unusable_certificate_or_key_is_refused_when_the_provider_is_built() {
    let cases = [
        (
            "no certificate",
            "not a pem",
            PRIVATE_KEY_PEM,
            "certificate",
        ),
        (
            "no private key",
            CERTIFICATE_PEM,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "private key",
        ),
        (
            "a certificate where the key belongs",
            CERTIFICATE_PEM,
            CERTIFICATE_PEM,
            "private key",
        ),
    ];
    for (case, certificate_pem, private_key_pem, needle) in cases {
        let config = config(
            "https://login.microsoftonline.com",
            Credential::Certificate {
                certificate_pem: certificate_pem.to_owned(),
                private_key_pem: SecretString::from(private_key_pem),
            },
        );

        let error = TokenProvider::new(test_http_client(), &config, Arc::new(TestClock::new()))
            .expect_err(case);

        assert!(error.to_string().contains(needle), "{case}: {error}");
    }
}

// The cache and early refresh

#[tokio::test]
async fn a_cached_token_is_served_without_a_second_request() {
    let h = Harness::with_secret().await;
    h.answer(token_response("token-a", 3600), 1).await;

    let first = h.token().await.expect("first");
    let second = h.token().await.expect("second");

    assert_eq!((first.as_str(), second.as_str()), ("token-a", "token-a"));
    assert_eq!(h.request_count().await, 1);
    h.server.verify().await;
}

#[tokio::test]
async fn a_token_received_with_less_than_300_seconds_left_is_refreshed_on_the_next_call() {
    let h = Harness::with_secret().await;
    h.answer(token_response("token-a", 200), 1).await;
    h.answer(token_response("token-b", 200), 1).await;

    let first = h.token().await.expect("first");
    let second = h.token().await.expect("second");

    assert_eq!(first, "token-a");
    assert_eq!(second, "token-b");
    assert_eq!(h.request_count().await, 2);
    h.server.verify().await;
}

#[tokio::test]
async fn a_cached_token_is_refreshed_once_fewer_than_300_seconds_remain() {
    let h = Harness::with_secret().await;
    h.answer(token_response("token-a", 3600), 1).await;
    h.answer(token_response("token-b", 3600), 1).await;

    let [first, at_the_margin, inside_the_margin] = tokens_around_the_refresh_margin(&h).await;

    assert_eq!(first, "token-a");
    assert_eq!(
        at_the_margin, "token-a",
        "exactly 300 s left is still usable"
    );
    assert_eq!(inside_the_margin, "token-b", "299 s left is expired");
    assert_eq!(h.request_count().await, 2);
    h.server.verify().await;
}

#[tokio::test]
async fn refresh_in_triggers_a_refresh_before_the_token_nears_expiry() {
    let h = Harness::with_secret().await;
    h.answer(token_response_with_refresh_in("token-a", 3600, 1800), 1)
        .await;
    h.answer(token_response("token-b", 3600), 1).await;
    assert_eq!(h.token().await.expect("first"), "token-a");

    h.clock.advance(1799);
    let before_refresh_in = h.token().await.expect("before refresh_in");
    h.clock.advance(1);
    let at_refresh_in = h.token().await.expect("at refresh_in");

    assert_eq!(before_refresh_in, "token-a");
    assert_eq!(at_refresh_in, "token-b");
    assert_eq!(h.request_count().await, 2);
    h.server.verify().await;
}

#[tokio::test]
async fn a_failed_early_refresh_keeps_serving_the_old_token_while_it_is_valid() {
    let h = Harness::with_secret().await;
    h.answer(token_response_with_refresh_in("token-a", 3600, 1800), 1)
        .await;
    h.answer(
        ResponseTemplate::new(503).insert_header("Retry-After", "120"),
        1,
    )
    .await;
    h.answer(token_response("token-b", 3600), 1).await;
    assert_eq!(h.token().await.expect("first"), "token-a");

    h.clock.advance(1800);
    let refresh_failed = h.token().await.expect("old token despite the 503");
    let during_backoff = h.token().await.expect("old token during back-off");
    let requests_during_backoff = h.request_count().await;
    h.clock.advance(120);
    let after_backoff = h.token().await.expect("refreshed");

    assert_eq!(refresh_failed, "token-a");
    assert_eq!(during_backoff, "token-a");
    assert_eq!(
        requests_during_backoff, 2,
        "no request while Retry-After runs"
    );
    assert_eq!(after_backoff, "token-b");
    assert_eq!(h.request_count().await, 3);
    h.server.verify().await;
}

#[tokio::test]
async fn the_expiry_is_read_from_expires_in_or_expires_on() {
    let in_an_hour = (START_SECONDS + 3600).to_string();
    let cases = [
        ("expires_in as a number", json!({"expires_in": 3599}), 3599),
        (
            "expires_in as a string",
            json!({"expires_in": "3599"}),
            3599,
        ),
        (
            "expires_on as a string",
            json!({"expires_on": in_an_hour}),
            3600,
        ),
        (
            "expires_on as a number",
            json!({"expires_on": START_SECONDS + 3600}),
            3600,
        ),
        (
            "expires_on wins over expires_in",
            json!({"expires_in": "86399", "expires_on": in_an_hour}),
            3600,
        ),
    ];
    for (case, lifetime, seconds) in cases {
        let h = Harness::with_secret().await;
        let mut body = lifetime;
        body["access_token"] = json!("token-a");
        body["token_type"] = json!("Bearer");
        h.answer(ResponseTemplate::new(200).set_body_json(body), 1)
            .await;

        let token = h.provider.token(None).await.expect(case);

        assert_eq!(token.expires_at(), h.after(seconds), "{case}");
    }
}

// Single flight

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_token_request() {
    let cases = [
        ("twenty plain callers", 20, None),
        (
            "five callers answering the same claims challenge",
            5,
            Some(CLAIMS),
        ),
    ];
    for (case, callers, claims) in cases {
        let h = Harness::with_secret().await;
        // The endpoint answers slowly so that all callers arrive while the request is in flight.
        h.answer(
            token_response("token-a", 3600).set_delay(Duration::from_millis(300)),
            1,
        )
        .await;

        let tokens = concurrent_tokens(&h.provider, callers, claims).await;

        assert_eq!(tokens.len(), callers, "{case}");
        assert!(tokens.iter().all(|t| t == "token-a"), "{case}: {tokens:?}");
        assert_eq!(h.request_count().await, 1, "{case}");
        h.server.verify().await;
    }
}

// Failures and back-off

#[tokio::test]
async fn invalid_client_is_a_configuration_error_and_stops_requests_for_60_seconds() {
    let h = Harness::with_secret().await;
    h.answer(error_response(401, "invalid_client", 7000215), 1)
        .await;
    h.answer(token_response("token-a", 3600), 1).await;

    let first = h.token().await;
    h.clock.advance(59);
    let within_backoff = h.token().await;
    let requests_within_backoff = h.request_count().await;
    h.clock.advance(2);
    let after_backoff = h.token().await;

    let Err(TokenError::Configuration {
        error,
        error_codes,
        description,
        trace_id,
        correlation_id,
    }) = first.clone()
    else {
        panic!("expected a configuration error, got {first:?}")
    };
    assert_eq!(error, "invalid_client");
    assert_eq!(error_codes, vec![7000215]);
    assert!(description.starts_with("AADSTS7000215"), "{description}");
    assert_eq!(
        trace_id.as_deref(),
        Some("0f5e3c8a-1d2b-4c3d-9e8f-7a6b5c4d3e2f")
    );
    assert_eq!(
        correlation_id.as_deref(),
        Some("9d1c2b3a-4e5f-6a7b-8c9d-0e1f2a3b4c5d")
    );
    assert_eq!(within_backoff, first, "the remembered error, unchanged");
    assert_eq!(requests_within_backoff, 1, "no request within 60 s");
    assert_eq!(after_backoff.expect("a token after 61 s"), "token-a");
    assert_eq!(h.request_count().await, 2);
    h.server.verify().await;
}

#[tokio::test]
async fn answers_only_an_operator_can_fix_are_configuration_errors() {
    let cases = [
        (
            "expired secret",
            error_response(401, "invalid_client", 7000222),
            "invalid_client",
            vec![7000222],
        ),
        (
            "bad assertion",
            error_response(401, "invalid_client", 700027),
            "invalid_client",
            vec![700027],
        ),
        (
            "app not in tenant",
            error_response(400, "unauthorized_client", 700016),
            "unauthorized_client",
            vec![700016],
        ),
        (
            "invalid scope",
            error_response(400, "invalid_scope", 70011),
            "invalid_scope",
            vec![70011],
        ),
        (
            "scope lacks /.default",
            error_response(400, "invalid_scope", 1002012),
            "invalid_scope",
            vec![1002012],
        ),
        (
            "unknown tenant",
            error_response(400, "invalid_request", 90002),
            "invalid_request",
            vec![90002],
        ),
        (
            "a status no token endpoint should send",
            ResponseTemplate::new(404).set_body_string("<html>not here</html>"),
            "HTTP 404",
            vec![],
        ),
        (
            "a 2xx without a token",
            ResponseTemplate::new(200).set_body_json(json!({ "token_type": "Bearer" })),
            "invalid_token_response",
            vec![],
        ),
    ];
    for (case, response, expected_error, expected_codes) in cases {
        let h = Harness::with_secret().await;
        h.answer(response, 1).await;

        let (error, codes) = configuration_error(h.token().await);

        assert_eq!(error, expected_error, "{case}");
        assert_eq!(codes, expected_codes, "{case}");
    }
}

#[tokio::test]
async fn a_429_with_retry_after_is_transient_and_nothing_is_sent_before_that_moment() {
    let h = Harness::with_secret().await;
    h.answer(
        ResponseTemplate::new(429).insert_header("Retry-After", "30"),
        1,
    )
    .await;
    h.answer(token_response("token-a", 3600), 1).await;

    let first = transient_retry_at(h.token().await);
    h.clock.advance(29);
    let still_waiting = transient_retry_at(h.token().await);
    let requests_while_waiting = h.request_count().await;
    h.clock.advance(1);
    let after_waiting = h.token().await;

    assert_eq!(first, h.after(30));
    assert_eq!(still_waiting, h.after(30));
    assert_eq!(requests_while_waiting, 1);
    assert_eq!(after_waiting.expect("a token at retry_at"), "token-a");
    assert_eq!(h.request_count().await, 2);
    h.server.verify().await;
}

#[tokio::test]
async fn transient_answers_pause_requests_until_their_retry_at() {
    let cases = [
        ("a 503 without Retry-After", ResponseTemplate::new(503), 60),
        (
            "a Retry-After beyond one hour is clamped to one hour",
            ResponseTemplate::new(429).insert_header("Retry-After", "7200"),
            3600,
        ),
        (
            "temporarily_unavailable, even with status 400",
            error_response(400, "temporarily_unavailable", 50196),
            60,
        ),
    ];
    for (case, response, seconds) in cases {
        let h = Harness::with_secret().await;
        h.answer(response, 1).await;

        let retry_at = transient_retry_at(h.token().await);

        assert_eq!(retry_at, h.after(seconds), "{case}");
    }
}

#[tokio::test]
async fn a_timed_out_token_request_is_transient() {
    let h = Harness::build(
        |_| Credential::Secret(SecretString::from(SECRET)),
        |config| config.token_timeout = Duration::from_millis(100),
    )
    .await;
    // Far longer than the provider's timeout; the test never waits for it.
    h.answer(
        token_response("token-a", 3600).set_delay(Duration::from_secs(30)),
        1,
    )
    .await;

    let result = h.token().await;

    match result {
        Err(TokenError::Transient {
            retry_at,
            description,
        }) => {
            assert_eq!(retry_at, h.after(60));
            assert!(description.contains("timed out"), "{description}");
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_transient() {
    // A port that was just free: nothing listens on it any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let h = Harness::build(
        |_| Credential::Secret(SecretString::from(SECRET)),
        |config| {
            config.token_url =
                Url::parse(&format!("http://{address}{}", token_path())).expect("url");
        },
    )
    .await;

    let retry_at = transient_retry_at(h.token().await);

    assert_eq!(retry_at, h.after(60));
}

// Claims challenges and invalidation

#[tokio::test]
async fn a_claims_challenge_requests_a_token_carrying_the_claims_and_replaces_the_cache() {
    let h = Harness::with_secret().await;
    h.answer(token_response("token-a", 3600), 1).await;
    h.answer(token_response("token-b", 3600), 1).await;
    assert_eq!(h.token().await.expect("first"), "token-a");

    let challenged = h
        .provider
        .token(Some(CLAIMS))
        .await
        .expect("a token with claims");
    let afterwards = h.token().await.expect("cached");

    assert_eq!(challenged.bearer(), "token-b");
    assert_eq!(
        afterwards, "token-b",
        "the token with claims replaces the cache"
    );
    assert_eq!(h.request_count().await, 2);
    let form = h.form(1).await;
    assert_eq!(form.get("claims").map(String::as_str), Some(CLAIMS));
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
    assert!(!h.form(0).await.contains_key("claims"));
    h.server.verify().await;
}

#[tokio::test]
async fn invalidate_makes_the_next_call_request_a_new_token() {
    let h = Harness::with_secret().await;
    h.answer(token_response("token-a", 3600), 1).await;
    h.answer(token_response("token-b", 3600), 1).await;
    assert_eq!(h.token().await.expect("first"), "token-a");

    h.provider.invalidate();
    let after_invalidate = h.token().await.expect("second");

    assert_eq!(after_invalidate, "token-b");
    assert_eq!(h.request_count().await, 2);
    h.server.verify().await;
}

#[tokio::test]
async fn debug_output_of_the_provider_and_its_tokens_shows_no_secret() {
    let h = Harness::with_secret().await;
    h.answer(token_response("token-a", 3600), 1).await;

    let token = h.provider.token(None).await.expect("a token");
    let text = format!("{:?} {token:?}", h.provider);

    assert!(!text.contains(SECRET), "{text}");
    assert!(!text.contains("token-a"), "{text}");
}

/// A plain HTTP client for the fakes, with the process's TLS provider installed.
fn test_http_client() -> reqwest::Client {
    crate::client::connection::install_tls_provider();
    reqwest::Client::new()
}
