//! `spawn_app` and the per-endpoint helpers every test uses.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use cmp_server::config::{Environment, Settings, load_from};
use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The seed page's example request, byte for byte.
pub const SEED_REQUEST: &str = include_str!("../fixtures/seed-request.json");

/// The seed page's example response.
pub const SEED_RESPONSE: &str = include_str!("../fixtures/seed-response.json");

/// The development signing key every test instance uses.
const DEVELOPMENT_KEY: &str = include_str!("../fixtures/dev-signing-key.pem");

/// The collection path below the root.
pub const COLLECTION: &str = "/deviceManagement/complianceManagementPartners";

/// The tables the service writes; after a refused request none of them may hold anything new.
pub const TABLES: [&str; 5] = [
    "partners",
    "partner_assignments",
    "outbox",
    "deliveries",
    "audit_log",
];

/// Logs go to stdout only when TEST_LOG is set, and the subscriber is installed once.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let settings = test_settings(Path::new("unused.db"));
        cmp_server::telemetry::init(&settings.telemetry).expect("telemetry initialises once");
    }
});

/// The shipped configuration for the `test` environment, with the database at `database`.
pub fn test_settings(database: &Path) -> Settings {
    let config_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
    let mut settings =
        load_from(&config_dir, Environment::Test).expect("the shipped test config loads");
    settings.sqlite.path = database.to_path_buf();
    settings
}

/// A development token for `settings` granting `roles`, valid for an hour.
pub fn mint(settings: &Settings, roles: &[&str]) -> String {
    let options = cmp_server::cli::MintOptions {
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        scopes: Vec::new(),
        lifetime_seconds: 3600,
        tenant_id: None,
        object_id: cmp_server::cli::DEVELOPER_OBJECT_ID.to_owned(),
    };
    cmp_server::cli::mint_token(settings, &options).expect("the development key mints")
}

/// A running service and the means to talk to it and to stop it.
pub struct TestApp {
    /// The root URL, e.g. `http://127.0.0.1:41234/beta`.
    pub root: String,
    /// The database file.
    pub database: PathBuf,
    /// Keeps the folder of the database alive across restarts.
    pub directory: Arc<tempfile::TempDir>,
    /// The settings the service runs with (to mint more tokens with its development key).
    pub settings: Settings,
    /// A token with the write permission, signed with the instance's development key.
    pub token: String,
    /// `http://127.0.0.1:PORT/metrics` on the metrics listener, when metrics are on.
    pub metrics_url: Option<String>,
    /// The creates still running after their request was dropped.
    pub detached_creates: tokio_util::task::TaskTracker,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts the service on a fresh temporary database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the service on a fresh temporary database, with `adjust` applied to the settings.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let directory = Arc::new(tempfile::tempdir().expect("temp dir"));
    spawn_app_in(directory, adjust).await
}

/// Starts the service on the database in `directory` (which may already hold one).
pub async fn spawn_app_in(
    directory: Arc<tempfile::TempDir>,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    LazyLock::force(&TRACING);
    let database = directory.path().join("partners.db");
    let mut settings = test_settings(&database);
    // A fixture key spares each test generating an RSA key of its own (slow in debug builds);
    // the service still loads it from its own key folder, as in development.
    let key_dir = directory.path().join("keys");
    std::fs::create_dir_all(&key_dir).expect("key folder");
    if !key_dir
        .join(cmp_entra_auth::DevelopmentSigner::KEY_FILE_NAME)
        .exists()
    {
        std::fs::write(
            key_dir.join(cmp_entra_auth::DevelopmentSigner::KEY_FILE_NAME),
            DEVELOPMENT_KEY,
        )
        .expect("key file");
    }
    settings.auth.development_key_dir = key_dir;
    adjust(&mut settings);
    let application = cmp_server::Application::build(settings.clone())
        .await
        .expect("the service builds");
    let token = mint(&settings, &["DeviceManagementServiceConfig.ReadWrite.All"]);
    let root = application.public_root().to_owned();
    let metrics_url = application
        .metrics_addr()
        .map(|address| format!("http://{address}/metrics"));
    let detached_creates = application.detached_creates();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        root,
        database,
        directory,
        settings,
        token,
        metrics_url,
        detached_creates,
        client: cmp_fake_graph::http_client(),
        shutdown: Some(shutdown),
        served: Some(served),
    }
}

impl TestApp {
    /// The URL of the collection.
    pub fn collection_url(&self) -> String {
        format!("{}{COLLECTION}", self.root)
    }

    /// A request builder with a bearer token already set.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url).bearer_auth(&self.token)
    }

    /// POSTs `body` as JSON to the collection.
    pub async fn post_partner(&self, body: &str) -> reqwest::Response {
        self.request(reqwest::Method::POST, &self.collection_url())
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST reaches the service")
    }

    /// GETs a partner by id.
    pub async fn get_partner(&self, id: &str) -> reqwest::Response {
        self.request(
            reqwest::Method::GET,
            &format!("{}/{id}", self.collection_url()),
        )
        .send()
        .await
        .expect("GET reaches the service")
    }

    /// Stops the service and waits until it has closed its database.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(served) = self.served.take() {
            served
                .await
                .expect("the server task ends")
                .expect("the server stops cleanly");
        }
        self.directory.clone()
    }

    /// Rows in `table`, read through a separate read-only connection to the database file.
    pub async fn count_rows(&self, table: &str) -> i64 {
        let mut connection = SqliteConnectOptions::new()
            .filename(&self.database)
            .read_only(true)
            .connect()
            .await
            .expect("the database file opens");
        let query = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        let count: i64 = sqlx::query_scalar(query)
            .fetch_one(&mut connection)
            .await
            .expect("count");
        connection.close().await.expect("close");
        count
    }

    /// One column of the outbox row of `partner_id`.
    pub async fn outbox_state(&self, partner_id: &str) -> String {
        let mut connection = SqliteConnectOptions::new()
            .filename(&self.database)
            .read_only(true)
            .connect()
            .await
            .expect("the database file opens");
        let state: String = sqlx::query_scalar("SELECT state FROM outbox WHERE partner_id = ?")
            .bind(partner_id)
            .fetch_one(&mut connection)
            .await
            .expect("the outbox row exists");
        connection.close().await.expect("close");
        state
    }

    /// Row counts of every table the service writes.
    pub async fn table_counts(&self) -> Vec<(&'static str, i64)> {
        let mut counts = Vec::new();
        for table in TABLES {
            counts.push((table, self.count_rows(table).await));
        }
        counts
    }
}

/// Reads a response as JSON, checking Graph's content type first.
pub async fn json_body(response: reqwest::Response) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type was {content_type:?}"
    );
    response.json().await.expect("the body is JSON")
}

/// A header's value as text, or "" when absent.
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Checks a 405 in Graph's shape: `Allow: allow`, error code `BadRequest`, and the body's
/// request id that of the `request-id` header.
pub async fn assert_method_not_allowed(response: reqwest::Response, allow: &str) {
    assert_eq!(response.status(), 405);
    assert_eq!(header(&response, "allow"), allow);
    let request_id = header(&response, "request-id");
    assert!(!request_id.is_empty(), "{response:?}");
    let body = json_body(response).await;
    assert_eq!(body["error"]["code"], "BadRequest", "{body}");
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        request_id.as_str()
    );
}

/// The development signing key's private half (PKCS#8 PEM), for tests that forge tokens
/// with headers and claims of their own.
pub const DEVELOPMENT_PRIVATE_KEY: &str = DEVELOPMENT_KEY;

/// The development signing key's public half (SPKI PEM), made with `openssl rsa -pubout`.
pub const DEVELOPMENT_PUBLIC_KEY: &str = include_str!("../fixtures/dev-signing-key.pub.pem");

/// Like [`mint`], for the caller `object_id` instead of the fixed developer identity.
pub fn mint_as(settings: &Settings, roles: &[&str], object_id: &str) -> String {
    let options = cmp_server::cli::MintOptions {
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        scopes: Vec::new(),
        lifetime_seconds: 3600,
        tenant_id: None,
        object_id: object_id.to_owned(),
    };
    cmp_server::cli::mint_token(settings, &options).expect("the development key mints")
}

impl TestApp {
    /// `host:port` of the listener, for raw TCP clients.
    pub fn socket_address(&self) -> String {
        let url = reqwest::Url::parse(&self.root).expect("the root is a URL");
        let host = url.host_str().expect("the root has a host");
        let port = url.port_or_known_default().expect("the root has a port");
        format!("{host}:{port}")
    }

    /// The URL of `path` on the listener, outside the root path (e.g. `/development/keys`).
    pub fn url_outside_root(&self, path: &str) -> String {
        format!("http://{}{path}", self.socket_address())
    }

    /// POSTs `body` as JSON to the collection with `token` instead of the default token.
    pub async fn post_partner_as(&self, token: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.collection_url())
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST reaches the service")
    }

    /// The `caller` column of every audit entry, oldest first, read through a separate
    /// read-only connection.
    pub async fn audit_callers(&self) -> Vec<String> {
        let mut connection = SqliteConnectOptions::new()
            .filename(&self.database)
            .read_only(true)
            .connect()
            .await
            .expect("the database file opens");
        let callers: Vec<String> =
            sqlx::query_scalar("SELECT caller FROM audit_log ORDER BY at, id")
                .fetch_all(&mut connection)
                .await
                .expect("the audit log reads");
        connection.close().await.expect("close");
        callers
    }
}

/// The Entra ID tenant the graph-mode tests provision into.
pub const GRAPH_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// Our own app role for the operator endpoints under `/admin/`.
pub const OPERATOR_ROLE: &str = "CompliancePartners.Operate";

/// The access token the fake Graph issues and accepts, for tests that call it directly.
pub const FAKE_GRAPH_TOKEN: &str = "fake-token";

/// Pause between two looks at a condition in [`wait_until`].
const POLL_INTERVAL: std::time::Duration = Duration::from_millis(20);

/// Points `settings` at `fake` in `graph` mode, with delivery timings in milliseconds instead
/// of the production minutes: settle and back-off are short so a test drains its queue in
/// seconds, and the lease still outlasts the inline deadline.
///
/// The inline deadline is 1 s: a test that expects a create to reach Graph inline (201) must not
/// see it cut off on a loaded machine, where fetching the first token and connecting alone took
/// longer than the 200 ms used before (the create then answered 202). A test that wants the
/// deadline to run out makes Graph slower than it.
pub fn against_fake_graph(settings: &mut Settings, fake: &cmp_fake_graph::FakeGraph) {
    settings.graph.mode = cmp_server::config::GraphMode::Graph;
    settings.graph.tenant_id = GRAPH_TENANT.parse().expect("GUID");
    settings.graph.client.root = fake.graph_root();
    settings.graph.client.authority = fake.authority();
    settings.graph.client.client_id = "11111111-2222-3333-4444-555555555555".into();
    settings.graph.client.client_secret =
        Some(secrecy::SecretString::from("fake-secret".to_owned()));
    settings.graph.client.request_timeout_ms = 1000;
    settings.graph.client.connect_timeout_ms = 500;
    settings.graph.client.write_rate_per_second = 1000.0;
    settings.graph.client.read_rate_per_second = 1000.0;
    settings.graph.client.max_retries = 3;
    settings.graph.client.retry_budget_ms = 2000;
    settings.outbox.inline_deadline = Duration::from_millis(1000);
    settings.outbox.settle = Duration::from_millis(100);
    settings.outbox.retry_base = Duration::from_millis(20);
    settings.outbox.backoff_cap = Duration::from_millis(300);
    settings.outbox.lease = Duration::from_millis(1500);
    settings.outbox.dispatcher_workers = 4;
    settings.outbox.dispatcher_poll_interval = Duration::from_millis(10);
}

/// Starts the service in `graph` mode against `fake` ([`against_fake_graph`]), with `adjust`
/// applied after the fast timings.
pub async fn spawn_app_against(
    fake: &cmp_fake_graph::FakeGraph,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_with(|settings| {
        against_fake_graph(settings, fake);
        adjust(settings);
    })
    .await
}

/// Waits until `probe` yields `Ok`, looking again every 20 ms, and fails the test when `bound`
/// passes first, with the last state `probe` described in its `Err`. This waits for a
/// condition; the pause only spaces the looks.
pub async fn wait_until<T, F, Fut>(bound: std::time::Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut last = String::from("never looked");
    let waited = tokio::time::timeout(bound, async {
        loop {
            match probe().await {
                Ok(value) => return value,
                Err(state) => last = state,
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    match waited {
        Ok(value) => value,
        Err(_) => panic!("timed out after {bound:?} waiting for {what}; last seen: {last}"),
    }
}

/// One outbox row with its partner's display name, as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    /// The outbox row's id.
    pub id: String,
    /// The partner it delivers.
    pub partner_id: String,
    /// The partner's display name.
    pub display_name: String,
    /// `pending`, `in_flight`, `delivered`, `unknown` or `dead`.
    pub state: String,
    /// Attempts started.
    pub attempts: i64,
    /// Graph's id once delivered.
    pub graph_id: Option<String>,
    /// Why the row is dead.
    pub dead_reason: Option<String>,
}

impl TestApp {
    /// A token for this instance with the operator role only.
    pub fn operator_token(&self) -> String {
        mint(&self.settings, &[OPERATOR_ROLE])
    }

    /// `GET` of `path` outside the root (e.g. `/admin/outbox/counts`) with `token`.
    pub async fn get_outside_root(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url_outside_root(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET reaches the service")
    }

    /// `POST` without a body to `path` outside the root (e.g. a re-queue) with `token`.
    pub async fn post_outside_root(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .post(self.url_outside_root(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST reaches the service")
    }

    /// Every outbox row with its partner's display name, oldest first, read through a separate
    /// read-only connection.
    pub async fn outbox_rows(&self) -> Vec<OutboxRow> {
        outbox_rows_in(&self.database).await
    }
}

/// Every outbox row of the database file `database` with its partner's display name, oldest
/// first, read through a read-only connection (also after the service stopped).
pub async fn outbox_rows_in(database: &std::path::Path) -> Vec<OutboxRow> {
    let mut connection = SqliteConnectOptions::new()
        .filename(database)
        .read_only(true)
        .connect()
        .await
        .expect("the database file opens");
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT o.id, o.partner_id, p.display_name, o.state, o.attempts, o.graph_id, \
         o.dead_reason FROM outbox AS o JOIN partners AS p ON p.id = o.partner_id \
         ORDER BY o.created_at, o.rowid",
    )
    .fetch_all(&mut connection)
    .await
    .expect("the outbox reads");
    connection.close().await.expect("close");
    rows
}

/// Percent-encodes `text` the way Graph SDKs encode a query option's value: every byte but
/// the unreserved characters of RFC 3986 becomes `%XY` (a space is `%20`, never `+`).
pub fn encode_query_value(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A query string of `(name, value)` pairs, each value encoded by [`encode_query_value`] and
/// each name written as given (with or without `$`).
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", encode_query_value(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// POSTs one partner per body, at most `concurrency` at a time, and answers the created
/// entities in the order of `bodies`. Every create must answer 201 or 202.
pub async fn create_all(app: &Arc<TestApp>, bodies: Vec<Value>, concurrency: usize) -> Vec<Value> {
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, body) in bodies.into_iter().enumerate() {
        let (app, gate) = (Arc::clone(app), Arc::clone(&gate));
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("the gate stays open");
            let response = app.post_partner(&body.to_string()).await;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            assert!(
                matches!(status, 201 | 202),
                "create of {body} answered {status}: {text}"
            );
            let created: Value = serde_json::from_str(&text).expect("a created partner is JSON");
            (index, created)
        });
    }
    let mut created = vec![Value::Null; tasks.len()];
    while let Some(joined) = tasks.join_next().await {
        let (index, entity) = joined.expect("a create task panicked");
        created[index] = entity;
    }
    created
}

/// One row of the audit log, as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    /// `created`, `updated`, `deleted`, `deleted_in_graph`, ...
    pub action: String,
    /// Our `request-id` of the request that caused the entry ("" for the dispatcher).
    pub request_id: String,
    /// `app:<tenant>/<object id>`, `user:<tenant>/<object id>` or `dispatcher`.
    pub caller: String,
    /// What happened, for people.
    pub detail: String,
}

/// One outbox row of a partner: its operation and state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxJob {
    /// `create`, `update` or `delete`.
    pub operation: String,
    /// `pending`, `in_flight`, `delivered`, `unknown` or `dead`.
    pub state: String,
    /// Attempts started.
    pub attempts: i64,
}

impl TestApp {
    /// `GET` of an absolute `url` (e.g. an `@odata.nextLink`, followed verbatim).
    pub async fn get_url(&self, url: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, url)
            .send()
            .await
            .expect("GET reaches the service")
    }

    /// `GET` of the collection with `query` (already encoded; "" for none).
    pub async fn list_response(&self, query: &str) -> reqwest::Response {
        let url = if query.is_empty() {
            self.collection_url()
        } else {
            format!("{}?{query}", self.collection_url())
        };
        self.get_url(&url).await
    }

    /// `GET` of the collection with `query`, which must answer 200 with JSON.
    pub async fn list(&self, query: &str) -> Value {
        let response = self.list_response(query).await;
        let status = response.status();
        assert_eq!(status, 200, "list ?{query}: {:?}", response.text().await);
        json_body(response).await
    }

    /// `GET …/complianceManagementPartners/$count` with `query` (already encoded; "" for none).
    pub async fn count_response(&self, query: &str) -> reqwest::Response {
        let url = if query.is_empty() {
            format!("{}/$count", self.collection_url())
        } else {
            format!("{}/$count?{query}", self.collection_url())
        };
        self.get_url(&url).await
    }

    /// `PATCH` of partner `id` with the JSON `body`, and `Prefer: <prefer>` when given.
    pub async fn patch_partner(
        &self,
        id: &str,
        body: &str,
        prefer: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .request(
                reqwest::Method::PATCH,
                &format!("{}/{id}", self.collection_url()),
            )
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(prefer) = prefer {
            request = request.header("Prefer", prefer);
        }
        request.send().await.expect("PATCH reaches the service")
    }

    /// `DELETE` of partner `id`.
    pub async fn delete_partner(&self, id: &str) -> reqwest::Response {
        self.request(
            reqwest::Method::DELETE,
            &format!("{}/{id}", self.collection_url()),
        )
        .send()
        .await
        .expect("DELETE reaches the service")
    }

    /// The audit entries of `partner_id`, oldest first, read through a separate read-only
    /// connection.
    pub async fn audit_entries(&self, partner_id: &str) -> Vec<AuditRow> {
        let mut connection = SqliteConnectOptions::new()
            .filename(&self.database)
            .read_only(true)
            .connect()
            .await
            .expect("the database file opens");
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT action, request_id, caller, detail FROM audit_log WHERE partner_id = ? \
             ORDER BY at, rowid",
        )
        .bind(partner_id)
        .fetch_all(&mut connection)
        .await
        .expect("the audit log reads");
        connection.close().await.expect("close");
        rows
    }

    /// The outbox rows of `partner_id`, oldest first, read through a separate read-only
    /// connection (tombstoned and removed partners included, unlike [`TestApp::outbox_rows`]).
    pub async fn outbox_jobs(&self, partner_id: &str) -> Vec<OutboxJob> {
        let mut connection = SqliteConnectOptions::new()
            .filename(&self.database)
            .read_only(true)
            .connect()
            .await
            .expect("the database file opens");
        let rows: Vec<OutboxJob> = sqlx::query_as(
            "SELECT operation, state, attempts FROM outbox WHERE partner_id = ? \
             ORDER BY created_at, rowid",
        )
        .bind(partner_id)
        .fetch_all(&mut connection)
        .await
        .expect("the outbox reads");
        connection.close().await.expect("close");
        rows
    }
}

/// One call that went through a [`RecordingProxy`].
#[derive(Debug, Clone)]
pub struct ProxiedCall {
    /// `GET`, `POST`, `PATCH`, `DELETE`.
    pub method: String,
    /// The request target: path and query, e.g. `/beta/deviceManagement/…/{id}`.
    pub target: String,
    /// The request body as JSON; `Null` when there was none or it was not JSON.
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// The response body as JSON; `Null` when there was none or it was not JSON.
    pub response: Value,
    /// When the whole request had arrived at the proxy.
    pub arrived: std::time::Instant,
    /// When the answer was known, before the proxy started writing it back.
    pub answered: std::time::Instant,
    /// False when the proxy answered an injected failure itself.
    pub forwarded: bool,
}

/// A loopback HTTP/1.1 proxy in front of the fake Graph that records every call in the order
/// it arrived, and can answer a method with an injected failure instead of forwarding it. The
/// fake counts calls but keeps no log; tests that care about the order of Graph calls point
/// `graph.client.root` at [`RecordingProxy::graph_root`]. One request per connection
/// (`Connection: close`); bodies with `Content-Length` only, which is what the service's
/// client sends.
pub struct RecordingProxy {
    address: std::net::SocketAddr,
    state: Arc<ProxyState>,
    accept: JoinHandle<()>,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    calls: std::sync::Mutex<Vec<ProxiedCall>>,
    failing: std::sync::Mutex<std::collections::HashMap<String, u16>>,
}

impl RecordingProxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `upstream` (e.g. `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy listens on 127.0.0.1");
        let address = listener.local_addr().expect("the proxy has an address");
        cmp_fake_graph::install_tls_provider();
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("the proxy's client builds"),
            calls: std::sync::Mutex::new(Vec::new()),
            failing: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let serving = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&serving);
                tokio::spawn(async move {
                    // A connection the service dropped mid-call is simply not recorded.
                    let _ = state.serve(stream).await;
                });
            }
        });
        Self {
            address,
            state,
            accept,
        }
    }

    /// The Graph root to configure: `http://127.0.0.1:PORT/beta`.
    pub fn graph_root(&self) -> String {
        format!("http://{}/beta", self.address)
    }

    /// Every call so far, in the order the requests arrived.
    pub fn calls(&self) -> Vec<ProxiedCall> {
        let mut calls = self.state.calls.lock().expect("the log lock").clone();
        calls.sort_by_key(|call| call.arrived);
        calls
    }

    /// From now on, answers every `method` call with `status` itself, without forwarding it.
    pub fn fail(&self, method: &str, status: u16) {
        self.state
            .failing
            .lock()
            .expect("the failure lock")
            .insert(method.to_owned(), status);
    }

    /// From now on, forwards `method` calls again.
    pub fn heal(&self, method: &str) {
        self.state
            .failing
            .lock()
            .expect("the failure lock")
            .remove(method);
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl ProxyState {
    async fn serve(&self, mut stream: tokio::net::TcpStream) -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut buffer = Vec::new();
        let mut chunk = [0_u8; 8192];
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let read = stream.read(&mut chunk).await?;
            anyhow::ensure!(read > 0, "the connection closed before a request");
            buffer.extend_from_slice(&chunk[..read]);
        };
        let head = std::str::from_utf8(&buffer[..head_end])?.to_owned();
        let mut lines = head.split("\r\n").filter(|line| !line.is_empty());
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = buffer[head_end..].to_vec();
        while body.len() < length {
            let read = stream.read(&mut chunk).await?;
            anyhow::ensure!(read > 0, "the connection closed inside a request body");
            body.extend_from_slice(&chunk[..read]);
        }
        let arrived = std::time::Instant::now();

        let injected = self
            .failing
            .lock()
            .expect("the failure lock")
            .get(&method)
            .copied();
        let (status, response_headers, response_body, forwarded) = match injected {
            Some(status) => {
                let request_id = uuid::Uuid::new_v4().to_string();
                let error = serde_json::json!({"error": {
                    "code": if status == 503 { "serviceNotAvailable" } else { "UnknownError" },
                    "message": "failure injected by the test proxy",
                    "innerError": {"request-id": request_id, "client-request-id": request_id}
                }});
                let headers = vec![
                    ("content-type".to_owned(), "application/json".to_owned()),
                    ("request-id".to_owned(), request_id),
                ];
                (status, headers, error.to_string().into_bytes(), false)
            }
            None => {
                let method_value = reqwest::Method::from_bytes(method.as_bytes())?;
                let mut request = self
                    .client
                    .request(method_value, format!("{}{target}", self.upstream))
                    .body(body.clone());
                for (name, value) in &headers {
                    if !matches!(
                        name.as_str(),
                        "host" | "content-length" | "connection" | "transfer-encoding"
                    ) {
                        request = request.header(name.as_str(), value.as_str());
                    }
                }
                let response = request.send().await?;
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .filter(|(name, _)| {
                        !matches!(
                            name.as_str(),
                            "content-length" | "connection" | "transfer-encoding"
                        )
                    })
                    .map(|(name, value)| {
                        (
                            name.as_str().to_owned(),
                            value.to_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                (status, headers, response.bytes().await?.to_vec(), true)
            }
        };
        let answered = std::time::Instant::now();
        self.calls.lock().expect("the log lock").push(ProxiedCall {
            method,
            target,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            status,
            response: serde_json::from_slice(&response_body).unwrap_or(Value::Null),
            arrived,
            answered,
            forwarded,
        });

        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Status");
        let mut answer = format!("HTTP/1.1 {status} {reason}\r\n");
        for (name, value) in &response_headers {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
        answer.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            response_body.len()
        ));
        stream.write_all(answer.as_bytes()).await?;
        stream.write_all(&response_body).await?;
        stream.shutdown().await?;
        Ok(())
    }
}
