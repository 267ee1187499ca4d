//! `spawn_app` and the per-endpoint helpers every test uses.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

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
    "delivery_attempts",
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
        client: reqwest::Client::new(),
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
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// Points `settings` at `fake` in `graph` mode, with delivery timings in milliseconds instead
/// of the production minutes: the inline deadline, settle and back-off are short so a test
/// drains its queue in seconds, and the lease still outlasts the inline deadline.
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
    settings.graph.client.max_retries = 3;
    settings.graph.client.retry_budget_ms = 2000;
    settings.delivery.inline_deadline_ms = 200;
    settings.delivery.settle_ms = 100;
    settings.delivery.retry_base_ms = 20;
    settings.delivery.backoff_cap_ms = 300;
    settings.delivery.lease_ms = 1500;
    settings.delivery.dispatcher_workers = 4;
    settings.delivery.dispatcher_poll_interval_ms = 10;
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
        let mut connection = SqliteConnectOptions::new()
            .filename(&self.database)
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
}
