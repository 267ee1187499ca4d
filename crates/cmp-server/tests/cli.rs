//! The command line, through the real binary: every documented subcommand, run from a
//! temporary folder that holds the data folder and the configuration folder, far from the
//! source tree, so the built-in defaults are what it runs on.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cmp_fake_graph::{FakeGraph, FakeGraphOptions};
use serde_json::{Value, json};
use tempfile::TempDir;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const COLLECTION: &str = "/deviceManagement/complianceManagementPartners";
/// Bound on waiting for the service to say where it serves, or for a row to reach a state;
/// a guard against a hung test, never a measurement.
const PATIENCE: Duration = Duration::from_secs(60);

/// A working folder for the binary: `config/` (an overlay for `CMP_ENV=test`) and `data/`
/// (the default data folder, relative to the working folder).
struct Folder {
    root: TempDir,
    /// `CMP__*` variables every run gets.
    variables: Vec<(String, String)>,
}

impl Folder {
    fn new(overlay: &str) -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join("config")).expect("config dir");
        std::fs::write(root.path().join("config").join("test.toml"), overlay).expect("overlay");
        Self {
            root,
            variables: Vec::new(),
        }
    }

    fn with(mut self, key: &str, value: &str) -> Self {
        self.variables.push((key.to_owned(), value.to_owned()));
        self
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The binary with `arguments`, in this folder, with none of the test's own `CMP*` or
    /// `RUST_LOG` variables.
    fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cmp-server"));
        for (key, _) in std::env::vars() {
            if key.starts_with("CMP") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command
            .args(arguments)
            .current_dir(self.root.path())
            .env("CMP_ENV", "test")
            .env("CMP_CONFIG_DIR", "config")
            // The built-in default is 8080; tests bind a port the OS picks.
            .env("CMP__HTTP__PORT", "0")
            .env("CMP__METRICS__PORT", "0")
            .envs(self.variables.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// Runs the binary to its end, off the async runtime (in-process fakes keep serving).
    async fn run(&self, arguments: &[&str]) -> Run {
        let mut command = self.command(arguments);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the run is joined")
            .expect("cmp-server runs");
        Run::from(output)
    }

    /// Runs the binary, which must succeed, and parses its JSON output.
    async fn json(&self, arguments: &[&str]) -> Value {
        let run = self.run(arguments).await;
        assert_eq!(run.code, 0, "{arguments:?}: {run:?}");
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{arguments:?}: {e}: {run:?}"))
    }

    /// `mint-token` with `roles`.
    async fn token(&self, roles: &[&str]) -> String {
        let mut arguments = vec!["mint-token"];
        for role in roles {
            arguments.extend(["--role", role]);
        }
        let run = self.run(&arguments).await;
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout.trim().to_owned()
    }
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().expect("exited, not killed"),
            stdout: String::from_utf8(output.stdout).expect("UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8"),
        }
    }
}

/// `cmp-server serve` running in a [`Folder`]; dropping it kills the process.
struct Service {
    child: Child,
    /// The Graph-shaped root, e.g. `http://127.0.0.1:41234/beta`.
    root: String,
    /// Every line written before the service served.
    startup: Vec<String>,
}

impl Service {
    fn start(folder: &Folder) -> Self {
        let child = folder
            .command(&[])
            .env("CMP__TELEMETRY__FORMAT", "json")
            .env("RUST_LOG", "warn,cmp_server=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cmp-server starts");
        // Owned by the service from here on, so a failed start still kills and reaps it.
        let mut service = Self {
            child,
            root: String::new(),
            startup: Vec::new(),
        };
        let (lines, received) = mpsc::channel();
        let stdout = service.child.stdout.take().expect("piped stdout");
        // Drained to the end, so the service never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        loop {
            let line = received
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|e| panic!("no `serving` line ({e}): {:#?}", service.startup));
            let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            service.startup.push(line);
            if event["fields"]["message"] == "serving" {
                service.root = event["fields"]["root"].as_str().expect("a root").to_owned();
                return service;
            }
        }
    }

    /// The fields of the first start-up log line with `message`.
    fn logged(&self, message: &str) -> Value {
        self.first_event(|event| event["fields"]["message"].as_str() == Some(message))
    }

    /// The fields of the first start-up log line at `level`.
    fn logged_at(&self, level: &str) -> Value {
        self.first_event(|event| event["level"].as_str() == Some(level))
    }

    fn first_event(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        self.startup
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| wanted(event))
            .map(|event| event["fields"].clone())
            .unwrap_or_else(|| panic!("no such line: {:#?}", self.startup))
    }

    async fn create(&self, token: &str, display_name: &str) -> Value {
        let response = cmp_fake_graph::http_client()
            .post(format!("{}{COLLECTION}", self.root))
            .bearer_auth(token)
            .json(&json!({ "displayName": display_name }))
            .send()
            .await
            .expect("POST");
        assert!(
            response.status().is_success(),
            "create {display_name}: {}",
            response.status()
        );
        response.json().await.expect("a partner")
    }

    async fn display_names(&self, token: &str) -> BTreeSet<String> {
        let page: Value = cmp_fake_graph::http_client()
            .get(format!("{}{COLLECTION}?$top=999", self.root))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("a page");
        page["value"]
            .as_array()
            .expect("value")
            .iter()
            .map(|partner| partner["displayName"].as_str().expect("a name").to_owned())
            .collect()
    }

    /// SIGKILL: the database as the kill left it, as after a crash.
    fn kill(mut self) {
        self.child.kill().expect("killed");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn every_subcommand_has_help_that_names_the_exit_statuses() {
    let folder = Folder::new("");
    let subcommands: [&[&str]; 13] = [
        &[],
        &["serve"],
        &["check-graph"],
        &["mint-token"],
        &["outbox"],
        &["outbox", "counts"],
        &["outbox", "list"],
        &["outbox", "show"],
        &["outbox", "history"],
        &["outbox", "requeue"],
        &["config"],
        &["config", "check"],
        &["backup"],
    ];
    for subcommand in subcommands {
        let arguments: Vec<&str> = subcommand.iter().copied().chain(["--help"]).collect();

        let run = folder.run(&arguments).await;

        assert_eq!(run.code, 0, "{arguments:?}: {run:?}");
        let usage = format!("Usage: cmp-server {}", subcommand.join(" "));
        assert!(
            run.stdout.contains(usage.trim_end()),
            "{arguments:?}: {}",
            run.stdout
        );
        assert!(
            run.stdout.contains("Exit status: 0 success; 1 failure"),
            "{arguments:?}: {}",
            run.stdout
        );
    }
}

#[tokio::test]
async fn version_prints_the_crate_version_and_the_git_revision() {
    let folder = Folder::new("");

    let run = folder.run(&["--version"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, format!("cmp-server {}\n", env!("CMP_VERSION")));
    assert!(env!("CMP_VERSION").starts_with(env!("CARGO_PKG_VERSION")));
    let revision = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success());
    if let Some(revision) = revision {
        // Built from a git checkout: the revision is the one the binary was built from.
        let revision = String::from_utf8(revision.stdout).expect("UTF-8");
        assert!(
            run.stdout.contains(revision.trim()),
            "{run:?} at {revision}"
        );
    }
}

#[tokio::test]
async fn usage_errors_exit_with_2_and_failures_with_1() {
    let folder = Folder::new("");

    for arguments in [
        &["launch"][..],
        &["outbox", "history"],
        &["outbox", "show", "not-a-partner-id"],
        &["outbox", "list", "--state", "gone"],
        &["mint-token", "--lifetime", "0"],
        &["config", "check", "--format", "yaml"],
    ] {
        let run = folder.run(arguments).await;
        assert_eq!(run.code, 2, "{arguments:?}: {run:?}");
        assert!(run.stderr.starts_with("error: "), "{arguments:?}: {run:?}");
        assert!(run.stderr.contains("--help"), "{arguments:?}: {run:?}");
    }

    let run = folder.run(&["outbox", "counts"]).await;
    assert_eq!(run.code, 1, "no database yet: {run:?}");
    assert!(run.stderr.contains("there is no database"), "{run:?}");
    assert!(!folder.data().join("partners.db").exists(), "none created");
}

#[tokio::test]
async fn config_check_prints_the_effective_configuration_with_secrets_redacted() {
    let folder = Folder::new("[outbox]\nlease = \"3m\"\n")
        .with("CMP__GRAPH__CLIENT__CLIENT_SECRET", "do-not-print-me")
        .with("CMP__HTTP__REQUEST_TIMEOUT_MS", "45000");

    let toml_run = folder.run(&["config", "check"]).await;
    let json = folder.json(&["config", "check", "--format", "json"]).await;

    assert_eq!(toml_run.code, 0, "{toml_run:?}");
    let toml: toml::Table = toml::from_str(&toml_run.stdout).expect("TOML");
    assert_eq!(json, serde_json::to_value(&toml).expect("same content"));
    assert!(!toml_run.stdout.contains("do-not-print-me"));
    assert_eq!(json["graph"]["client"]["client_secret"], "[redacted]");
    let data = folder.data();
    assert_eq!(json["service"]["data_dir"], data.to_str().expect("UTF-8"));
    assert_eq!(
        json["sqlite"]["path"],
        data.join("partners.db").to_str().expect("UTF-8")
    );
    assert_eq!(json["outbox"]["lease"], "3m", "the overlay applies");
    assert_eq!(
        json["http"]["request_timeout"], "45s",
        "the variable applies"
    );
    assert_eq!(
        json["outbox"]["inline_deadline"], "10s",
        "the built-in default"
    );
}

#[tokio::test]
async fn config_check_names_the_bad_key_and_exits_with_1_and_warns_of_old_keys() {
    let folder = Folder::new("[outbox]\nlease = \"soon\"\n");

    let bad = folder.run(&["config", "check"]).await;
    let old = Folder::new("[delivery]\nlease_ms = 200000\n")
        .run(&["config", "check", "--format", "json"])
        .await;

    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("outbox.lease"), "{bad:?}");
    assert!(bad.stdout.is_empty(), "{bad:?}");
    assert_eq!(old.code, 0, "{old:?}");
    assert!(
        old.stderr.contains("delivery.lease_ms") && old.stderr.contains("outbox.lease"),
        "{old:?}"
    );
    let json: Value = serde_json::from_str(&old.stdout).expect("JSON");
    assert_eq!(json["outbox"]["lease"], "3m 20s");
}

#[tokio::test]
async fn a_config_folder_that_is_not_there_leaves_the_built_in_defaults_with_a_warning() {
    let folder =
        Folder::new("[http]\nroot_path = \"/never-read\"\n").with("CMP_CONFIG_DIR", "nowhere");

    let run = folder.run(&["config", "check", "--format", "json"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("nowhere, which does not exist"),
        "{run:?}"
    );
    let json: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(json["http"]["root_path"], "/beta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_graph_says_ok_against_a_reachable_tenant_and_fail_otherwise() {
    let fake = FakeGraph::start(FakeGraphOptions::default())
        .await
        .expect("the fake Graph starts");
    let folder = Folder::new("")
        .with("CMP__GRAPH__MODE", "graph")
        .with("CMP__GRAPH__TENANT_ID", TENANT)
        .with("CMP__GRAPH__CLIENT__ROOT", &fake.graph_root())
        .with("CMP__GRAPH__CLIENT__AUTHORITY", &fake.authority())
        .with(
            "CMP__GRAPH__CLIENT__CLIENT_ID",
            "11111111-2222-3333-4444-555555555555",
        )
        .with("CMP__GRAPH__CLIENT__CLIENT_SECRET", "fake-secret");

    let reachable = folder.run(&["check-graph"]).await;
    let simulated = Folder::new("").run(&["check-graph"]).await;

    assert_eq!(reachable.code, 0, "{reachable:?}");
    assert!(reachable.stdout.contains("\nOK ("), "{reachable:?}");
    assert_eq!(simulated.code, 1, "{simulated:?}");
    assert!(simulated.stdout.contains("FAIL:"), "{simulated:?}");
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_every_partner_into_a_fresh_service() {
    let folder = Folder::new("");
    let service = Service::start(&folder);
    let token = folder.token(&[]).await;
    let names: BTreeSet<String> = (0..5).map(|n| format!("Backed-up partner {n}")).collect();
    let mut first_id = String::new();
    for name in &names {
        let partner = service.create(&token, name).await;
        first_id = partner["id"].as_str().expect("an id").to_owned();
    }

    // The service runs on the built-in defaults from a folder of its own.
    let loaded = service.logged("configuration loaded");
    assert_eq!(loaded["data_dir"], folder.data().to_str().expect("UTF-8"));
    assert_eq!(
        loaded["database"],
        folder.data().join("partners.db").to_str().expect("UTF-8")
    );
    assert!(folder.data().join("dev-signing-key.pem").is_file());
    let counts = folder.json(&["outbox", "counts"]).await;
    assert_eq!(counts["delivered"], 5, "{counts}");
    let listed = folder
        .json(&["outbox", "list", "--state", "delivered", "--limit", "3"])
        .await;
    assert_eq!(
        listed["value"].as_array().map(Vec::len),
        Some(3),
        "{listed}"
    );
    let shown = folder.json(&["outbox", "show", &first_id]).await;
    assert_eq!(shown["state"], "delivered", "{shown}");
    let history = folder.json(&["outbox", "history", &first_id]).await;
    assert_eq!(history["partnerId"], first_id.as_str(), "{history}");
    assert!(
        !history["auditEntries"]
            .as_array()
            .expect("entries")
            .is_empty(),
        "{history}"
    );

    let backup = folder.root.path().join("partners-backup.db");
    let taken = folder.run(&["backup", "partners-backup.db"]).await;
    let again = folder.run(&["backup", "partners-backup.db"]).await;
    service.kill();

    assert_eq!(taken.code, 0, "{taken:?}");
    assert!(backup.is_file());
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("already exists"), "{again:?}");
    // The documented restore, into a fresh folder: the copy becomes partners.db.
    let fresh = Folder::new("");
    std::fs::create_dir(fresh.data()).expect("data dir");
    std::fs::rename(&backup, fresh.data().join("partners.db")).expect("moved into place");
    let restored = Service::start(&fresh);
    let fresh_token = fresh.token(&[]).await;
    assert_eq!(restored.display_names(&fresh_token).await, names);
}

#[tokio::test]
async fn a_dead_row_is_listed_shown_and_requeued_from_the_command_line() {
    let folder = Folder::new(
        "[graph.simulated]\nfailure = \"unavailable\"\nfailure_rate = 1.0\n\
         [outbox]\nmax_attempts = 1\nretry_base = \"1ms\"\nbackoff_cap = \"1ms\"\n\
         settle = \"1ms\"\n[delivery]\ndispatcher_poll_interval_ms = 10\n",
    );
    let service = Service::start(&folder);
    // The old section still works, with a warning naming the new key.
    let warning = service.logged_at("WARN");
    assert_eq!(
        warning["config.key"], "delivery.dispatcher_poll_interval_ms",
        "{warning}"
    );
    assert_eq!(
        warning["config.replacement"], "outbox.dispatcher_poll_interval",
        "{warning}"
    );
    let token = folder.token(&[]).await;
    let partner = service.create(&token, "Never reaches Graph").await;
    let partner_id = partner["id"].as_str().expect("an id").to_owned();
    // Each look is a run of the binary; no pause is needed between two.
    let started = Instant::now();
    while folder.json(&["outbox", "counts"]).await["dead"] != 1 {
        assert!(started.elapsed() < PATIENCE, "the row never died");
    }
    // Stopped, so that no dispatcher takes the row back before the checks.
    service.kill();

    let dead = folder.json(&["outbox", "list", "--state", "dead"]).await;
    let outbox_id = dead["value"][0]["outboxId"]
        .as_str()
        .expect("an outbox id")
        .to_owned();
    let shown = folder.json(&["outbox", "show", &partner_id]).await;
    let requeued = folder.json(&["outbox", "requeue", &outbox_id]).await;
    let counts = folder.json(&["outbox", "counts"]).await;
    let twice = folder.run(&["outbox", "requeue", &outbox_id]).await;

    assert_eq!(dead["value"][0]["partnerId"], partner_id.as_str(), "{dead}");
    assert_eq!(shown["state"], "dead", "{shown}");
    assert!(shown["deadReason"].as_str().is_some(), "{shown}");
    assert_eq!(
        requeued,
        json!({ "outboxId": outbox_id, "state": "unknown" })
    );
    assert_eq!(
        (counts["dead"].clone(), counts["unknown"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(twice.code, 1, "only a dead row is requeued: {twice:?}");
}
