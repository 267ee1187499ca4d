//! The harness of the tests that run the real `cmp-server` binary against the fake Graph:
//! a service process started from `CMP__*` environment variables and killed with SIGKILL, a
//! development token, and the requests the tests make of it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmp_server::config::{Environment, load_from};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// The tenant the services provision into.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The partner collection, under the service's root.
pub const COLLECTION: &str = "/deviceManagement/complianceManagementPartners";
/// The development key the e2e tests use; a fixture spares the binary generating one.
pub const DEVELOPMENT_KEY: &str = include_str!("../../../../tests/fixtures/dev-signing-key.pem");
/// Pause between two looks at a condition; every wait is bounded by a timeout around it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The workspace root.
pub fn repository_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The environment every service the harness starts begins from: the test overlay of the
/// repository's `config/`, the development key in `key_dir`, and JSON log lines with
/// `cmp_server` at `info`, so that [`Service::start`] can read the `serving` line with the
/// bound address. Each test adds its own store, timings and Graph.
pub fn harness_environment(key_dir: &Path) -> Vec<(String, String)> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    [
        ("CMP_ENV", "test".to_owned()),
        ("CMP_CONFIG_DIR", path(repository_root().join("config"))),
        (
            "CMP__AUTH__DEVELOPMENT_KEY_DIR",
            path(key_dir.to_path_buf()),
        ),
        ("CMP__TELEMETRY__FORMAT", "json".to_owned()),
        ("RUST_LOG", "warn,cmp_server=info".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// The environment entries that point a service in `graph` mode at `fake` as the tenant's
/// Microsoft Graph and Entra ID; each test adds its own timings and store.
pub fn graph_environment(fake: &cmp_fake_graph::FakeGraph) -> Vec<(String, String)> {
    [
        ("CMP__GRAPH__MODE", "graph".to_owned()),
        ("CMP__GRAPH__TENANT_ID", TENANT.to_owned()),
        ("CMP__GRAPH__CLIENT__ROOT", fake.graph_root()),
        ("CMP__GRAPH__CLIENT__AUTHORITY", fake.authority()),
        (
            "CMP__GRAPH__CLIENT__CLIENT_ID",
            "11111111-2222-3333-4444-555555555555".to_owned(),
        ),
        (
            "CMP__GRAPH__CLIENT__CLIENT_SECRET",
            "fake-secret".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// Writes the development signing key into `key_dir`, for the service and for [`mint`].
pub fn write_development_key(key_dir: &Path) {
    std::fs::create_dir_all(key_dir).expect("key folder");
    std::fs::write(
        key_dir.join(cmp_entra_auth::DevelopmentSigner::KEY_FILE_NAME),
        DEVELOPMENT_KEY,
    )
    .expect("key file");
}

pub struct Service {
    child: Child,
    /// The Graph-shaped root, e.g. `http://127.0.0.1:41234/beta`, from the `serving` line.
    pub root: String,
    /// Every line the process wrote, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts the binary with `environment` (and none of the test's own `CMP*`/`RUST_LOG`
    /// variables) and waits, bounded, for it to say where it serves.
    pub async fn start(environment: &[(String, String)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cmp-server"));
        for (key, _) in std::env::vars() {
            if key.starts_with("CMP") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        let child = command
            .envs(environment.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cmp-server starts");
        let mut service = Self {
            child,
            root: String::new(),
            log: Arc::new(Mutex::new(Vec::new())),
        };
        let (lines, mut received) = mpsc::unbounded_channel();
        // Both pipes are drained to the end, so the service never blocks on a full pipe.
        let stdout = service.child.stdout.take().expect("piped stdout");
        let stderr = service.child.stderr.take().expect("piped stderr");
        service.drain(stdout, lines.clone());
        service.drain(stderr, lines);
        let serving = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = received.recv().await {
                if let Some(root) = serving_root(&line) {
                    return Some(root);
                }
            }
            None
        })
        .await;
        match serving {
            Ok(Some(root)) => service.root = root,
            Ok(None) => panic!("cmp-server exited before serving:\n{}", service.tail()),
            Err(_) => panic!("cmp-server did not serve within 30 s:\n{}", service.tail()),
        }
        service
    }

    fn drain(&self, pipe: impl Read + Send + 'static, lines: mpsc::UnboundedSender<String>) {
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                log.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line.clone());
                // Nobody listens once the service serves; the log keeps the line.
                let _ = lines.send(line);
            }
        });
    }

    /// The last lines the process wrote.
    pub fn tail(&self) -> String {
        let log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log[log.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL: no shutdown, no lease handed back, the database as the kill left it.
    pub fn kill(&mut self) {
        self.child.kill().expect("the service is killed");
        self.child.wait().expect("the killed service is reaped");
    }

    /// The process id, for looking at the process in `/proc`.
    #[allow(
        dead_code,
        reason = "each test binary compiles the whole harness; only `threads.rs` looks in /proc"
    )]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        let origin = self
            .root
            .strip_suffix("/beta")
            .expect("the root ends in /beta");
        format!("{origin}{path}")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The root URL from the JSON `serving` log line.
pub fn serving_root(line: &str) -> Option<String> {
    let event: Value = serde_json::from_str(line).ok()?;
    let fields = &event["fields"];
    (fields["message"] == "serving")
        .then(|| fields["root"].as_str().map(str::to_owned))
        .flatten()
}

/// A development token with `roles`, signed with the key the service loads.
pub fn mint(environment: &[(String, String)], key_dir: &Path, roles: &[&str]) -> String {
    let config = environment
        .iter()
        .find(|(key, _)| key == "CMP_CONFIG_DIR")
        .map(|(_, value)| PathBuf::from(value))
        .expect("the config folder is set");
    let mut settings = load_from(&config, Environment::Test).expect("the test config loads");
    settings.auth.development_key_dir = key_dir.to_path_buf();
    let options = cmp_server::cli::MintOptions {
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        scopes: Vec::new(),
        lifetime_seconds: 3600,
        tenant_id: None,
        object_id: cmp_server::cli::DEVELOPER_OBJECT_ID.to_owned(),
    };
    cmp_server::cli::mint_token(&settings, &options).expect("the development key mints")
}

/// POSTs one partner per name, four at a time; returns the accepted ones as (name, id).
pub async fn create_partners(
    client: &reqwest::Client,
    service: &Service,
    token: &str,
    names: &[String],
) -> Vec<(String, String)> {
    let gate = Arc::new(Semaphore::new(4));
    let url = format!("{}{COLLECTION}", service.root);
    let mut tasks = JoinSet::new();
    for name in names {
        let (client, gate, url, token, name) = (
            client.clone(),
            Arc::clone(&gate),
            url.clone(),
            token.to_owned(),
            name.clone(),
        );
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("the gate stays open");
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "displayName": name }))
                .send()
                .await
                .expect("the service answers");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("a JSON answer");
            assert!(matches!(status, 201 | 202), "{name}: {status} {body}");
            (name, body["id"].as_str().expect("an id").to_owned())
        });
    }
    let mut accepted = Vec::with_capacity(names.len());
    while let Some(joined) = tasks.join_next().await {
        accepted.push(joined.expect("a create task failed"));
    }
    accepted
}

/// `GET /admin/outbox?limit=1000`: every outbox row's sync state.
pub async fn outbox_rows(client: &reqwest::Client, service: &Service, token: &str) -> Vec<Value> {
    let response = client
        .get(service.url("/admin/outbox?limit=1000"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the service answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["value"].as_array().expect("value").clone()
}

/// `GET /admin/partners/{id}/sync`: a partner's sync state with its attempt history.
pub async fn sync_state(
    client: &reqwest::Client,
    service: &Service,
    token: &str,
    id: &str,
) -> Value {
    let response = client
        .get(service.url(&format!("/admin/partners/{id}/sync")))
        .bearer_auth(token)
        .send()
        .await
        .expect("the service answers");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}
