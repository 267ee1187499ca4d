//! Test doubles for the Graph client: a token source, a settable clock, a recording sleeper,
//! a fake Graph (wiremock on 127.0.0.1) and a harness wiring a client to them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmp_application::{Clock, GraphCallResult, GraphGateway, InProcessPacer, Pacer, Sleeper};
use cmp_domain::{DisplayName, NewPartner, Partner, PartnerId, PartnerState, Platforms, Timestamp};
use cmp_graph_client::settings::ResolvedGraphClient;
use cmp_graph_client::{
    AccessToken, Cloud, GraphClientSettings, HttpGraphClient, TokenError, TokenSource,
};
use cmp_graph_model::partner::render_partner_for_graph;
use secrecy::SecretString;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The bearer token the test source hands out.
pub const TOKEN: &str = "test-access-token";

/// The tenant every test provisions into.
pub const TENANT: Uuid = Uuid::from_u128(0x72f988bf_86f1_41af_91ab_2d7cd011db47);

/// The collection path under the mock's `/beta` root.
pub const COLLECTION: &str = "/beta/deviceManagement/complianceManagementPartners";

/// 2026-01-01T00:00:00Z, where every test clock starts.
pub fn t0() -> Timestamp {
    Timestamp::from_unix_seconds(1_767_225_600, 0).expect("in range")
}

/// A clock the test sets; the sleeper moves it.
pub struct TestClock(Mutex<Timestamp>);

impl TestClock {
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("clock lock");
        let ticks = i64::try_from(by.as_nanos() / 100).expect("small duration");
        *now = Timestamp::from_unix_ticks(now.unix_ticks() + ticks).expect("in range");
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

/// Returns at once, records each requested wait and moves the test clock by it.
pub struct RecordingSleeper {
    clock: Arc<TestClock>,
    slept: Mutex<Vec<Duration>>,
}

impl RecordingSleeper {
    pub fn slept(&self) -> Vec<Duration> {
        self.slept.lock().expect("sleeper lock").clone()
    }
}

#[async_trait::async_trait]
impl Sleeper for RecordingSleeper {
    async fn sleep(&self, duration: Duration) {
        self.slept.lock().expect("sleeper lock").push(duration);
        self.clock.advance(duration);
    }
}

/// Hands out [`TOKEN`] (or a set failure), counting calls and recording claims.
#[derive(Default)]
pub struct TestTokens {
    claims: Mutex<Vec<Option<String>>>,
    invalidations: AtomicUsize,
    failure: Mutex<Option<TokenError>>,
}

impl TestTokens {
    /// The claims argument of every call, in order (`None` for a plain call).
    pub fn calls(&self) -> Vec<Option<String>> {
        self.claims.lock().expect("tokens lock").clone()
    }

    pub fn invalidations(&self) -> usize {
        self.invalidations.load(Ordering::SeqCst)
    }

    pub fn fail_with(&self, error: TokenError) {
        *self.failure.lock().expect("tokens lock") = Some(error);
    }
}

#[async_trait::async_trait]
impl TokenSource for TestTokens {
    async fn token(&self, claims: Option<&str>) -> Result<AccessToken, TokenError> {
        self.claims
            .lock()
            .expect("tokens lock")
            .push(claims.map(str::to_owned));
        if let Some(error) = self.failure.lock().expect("tokens lock").clone() {
            return Err(error);
        }
        Ok(AccessToken::new(
            SecretString::from(TOKEN.to_owned()),
            Timestamp::MAX,
        ))
    }

    fn invalidate(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
    }
}

/// Settings pointing at `base` (a mock server URI), with test-sized timeouts and a write
/// interval of 1 ms so that spacing stays out of the way unless a test asks for it.
pub fn settings(base: &str) -> GraphClientSettings {
    GraphClientSettings {
        cloud: Cloud::Global,
        root: format!("{base}/beta"),
        authority: String::new(),
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        credential: None,
        client_secret: Some(SecretString::from("test-client-secret".to_owned())),
        client_secret_file: None,
        certificate_file: None,
        private_key_file: None,
        federated_token_file: None,
        managed_identity_endpoint: String::new(),
        connect_timeout_ms: 1_000,
        request_timeout_ms: 5_000,
        token_timeout_ms: 1_000,
        max_retries: 3,
        retry_budget_ms: 180_000,
        write_rate_per_second: 1_000.0,
        read_rate_per_second: 1_000.0,
        burst: 1,
        max_pages: 100,
        adopt_preseeded: false,
        azure: cmp_graph_client::AzureEnvironment::default(),
    }
}

/// A client wired to test doubles, and the doubles.
pub struct Harness {
    pub client: HttpGraphClient,
    pub tokens: Arc<TestTokens>,
    pub clock: Arc<TestClock>,
    pub sleeper: Arc<RecordingSleeper>,
    /// The tenant's pacer the client records pauses in and paces its resends by.
    pub pacer: Arc<InProcessPacer>,
}

impl Harness {
    /// A client for `base` with the default test [`settings`], changed by `tweak`.
    pub fn new(base: &str, tweak: impl FnOnce(&mut GraphClientSettings)) -> Self {
        let mut settings = settings(base);
        tweak(&mut settings);
        let resolved: ResolvedGraphClient = settings.resolve(TENANT).expect("valid settings");
        let tokens = Arc::new(TestTokens::default());
        let clock = Arc::new(TestClock(Mutex::new(t0())));
        let sleeper = Arc::new(RecordingSleeper {
            clock: Arc::clone(&clock),
            slept: Mutex::new(Vec::new()),
        });
        let pacer = Arc::new(InProcessPacer::new(resolved.pacer_rates()));
        let client = HttpGraphClient::new(
            &resolved,
            Arc::clone(&tokens) as Arc<dyn TokenSource>,
            Arc::clone(&clock) as Arc<dyn Clock>,
            Arc::clone(&sleeper) as Arc<dyn Sleeper>,
            Arc::clone(&pacer) as Arc<dyn Pacer>,
        )
        .expect("client builds");
        Self {
            client,
            tokens,
            clock,
            sleeper,
            pacer,
        }
    }

    /// A client for `server` with the default test [`settings`].
    pub fn for_server(server: &MockServer) -> Self {
        Self::new(&server.uri(), |_| {})
    }

    /// Creates [`partner`] under a fresh `client-request-id`.
    pub async fn create(&self) -> GraphCallResult {
        self.create_under(Uuid::new_v4()).await
    }

    /// Creates [`partner`] under `client_request_id`.
    pub async fn create_under(&self, client_request_id: Uuid) -> GraphCallResult {
        self.client
            .create_partner(&partner(), client_request_id)
            .await
    }
}

/// A fake Graph: a wiremock server on 127.0.0.1 with the answers a test scripts.
pub struct FakeGraph {
    pub server: MockServer,
}

impl FakeGraph {
    /// A fake that answers nothing yet (wiremock's 404 for every request).
    pub async fn start() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    /// Answers every `verb` request on `path` with `response`.
    pub async fn answer(&self, verb: &str, path_: impl Into<String>, response: ResponseTemplate) {
        Mock::given(method(verb))
            .and(path(path_.into()))
            .respond_with(response)
            .mount(&self.server)
            .await;
    }

    /// Answers the next `times` `verb` requests on `path` with `response`. Mocks mounted
    /// earlier answer first, so mounting in order scripts a sequence.
    pub async fn answer_times(
        &self,
        verb: &str,
        path_: impl Into<String>,
        response: ResponseTemplate,
        times: u64,
    ) {
        Mock::given(method(verb))
            .and(path(path_.into()))
            .respond_with(response)
            .up_to_n_times(times)
            .mount(&self.server)
            .await;
    }

    /// Answers every create (POST on the collection) with `response`.
    pub async fn answer_creates(&self, response: ResponseTemplate) {
        self.answer("POST", COLLECTION, response).await;
    }

    /// Answers the next `times` creates with `response`.
    pub async fn answer_creates_times(&self, response: ResponseTemplate, times: u64) {
        self.answer_times("POST", COLLECTION, response, times).await;
    }

    /// A client for this fake with the default test [`settings`].
    pub fn harness(&self) -> Harness {
        Harness::for_server(&self.server)
    }

    /// A client for this fake with the test [`settings`] changed by `tweak`.
    pub fn harness_with(&self, tweak: impl FnOnce(&mut GraphClientSettings)) -> Harness {
        Harness::new(&self.server.uri(), tweak)
    }

    /// Every request the fake received.
    pub async fn received(&self) -> Vec<wiremock::Request> {
        received(&self.server).await
    }

    /// The method of every request the fake received, in order.
    pub async fn methods(&self) -> Vec<String> {
        self.received()
            .await
            .iter()
            .map(|request| request.method.to_string())
            .collect()
    }
}

/// A partner named `name`.
pub fn partner_named(name: &str) -> Partner {
    Partner::restore(
        PartnerId::from_uuid(Uuid::from_u128(0x5eed)),
        NewPartner {
            display_name: DisplayName::parse(name).expect("valid name"),
            state: PartnerState::Enabled,
            last_heartbeat: Timestamp::MIN,
            platforms: Platforms::none(),
        },
    )
}

/// The partner most tests create.
pub fn partner() -> Partner {
    partner_named("Contoso Compliance")
}

/// What the client must send for `partner`: the one Graph mapping.
pub fn rendered(partner: &Partner) -> serde_json::Value {
    serde_json::to_value(render_partner_for_graph(partner)).expect("renders")
}

/// Every request the server received.
pub async fn received(server: &MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}

/// A header of a received request, as text.
pub fn header<'a>(request: &'a wiremock::Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .map(|value| value.to_str().expect("ASCII header"))
}

/// A Graph error body.
pub fn graph_error(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": "2026-01-01T00:00:00",
                "request-id": "5a3c9b7e-0000-4000-8000-000000000001",
                "client-request-id": "5a3c9b7e-0000-4000-8000-000000000002"
            }
        }
    })
}

/// The body Graph answers a create with.
pub fn created(partner: &Partner, graph_id: &str) -> serde_json::Value {
    let mut body = rendered(partner);
    body["id"] = serde_json::Value::String(graph_id.to_owned());
    body["@odata.context"] = serde_json::Value::String(
        "https://graph.microsoft.com/beta/$metadata#deviceManagement/complianceManagementPartners/$entity".into(),
    );
    body
}
