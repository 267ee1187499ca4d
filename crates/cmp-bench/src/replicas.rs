//! `cmp-bench replicas`: our service on one PostgreSQL database, with one replica and with
//! three.
//!
//! 1. Creates per second at 64 connections (wrk; with three replicas, 22 + 21 + 21 connections
//!    at once, the rates summed), simulated Graph without latency, a fresh database per point.
//! 2. The drain of 1,000 pending partners by three replicas against the fake Graph enforcing
//!    Graph's write throttle (100 writes in any 20 s, else 429), with each replica configured
//!    to the tenant's budget of 4.5 writes a second and the default burst of 8 (the shared
//!    pacer keeps it for all three).
//!    The partners are created while the fake is down, so they wait in the outbox; then it
//!    comes up, and the run times the backlog until every row is delivered. It prints the
//!    drain rate as a share of the budget, the busiest 20 s window, and the 429s provoked.
//!
//! It needs a PostgreSQL server to create its databases on: `--postgres URL`, else
//! `CMP_TEST_POSTGRES_URL` (`source .ci/postgres.sh; start_test_postgres` starts one). It
//! asserts nothing; see `docs/benchmarks.md`, "Replicas on PostgreSQL".

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cmp_fake_graph::{FakeGraph, FakeGraphOptions, WriteThrottle};
use sqlx::{Connection, PgConnection};

use crate::load::{Load, ensure_wrk};
use crate::service::{self, ServiceBinary};

/// The tenant's write budget every replica is configured with, writes per second: with the
/// default burst of 8, 4.5 × 20 s + 8 = 98 stays within Graph's 100 writes per 20 s.
const WRITE_RATE: f64 = 4.5;
/// Pending partners the drain starts with.
const BACKLOG: usize = 1_000;
/// Connections of the create point, split over the replicas.
const CONNECTIONS: u32 = 64;

/// How the run goes, from its command line.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// The server to create the databases on.
    pub postgres: Option<String>,
    /// Seconds each create point is loaded for.
    pub seconds: u64,
    /// Longest wait for the backlog to drain.
    pub drain_seconds: u64,
}

/// Parses `replicas` flags (`--postgres URL --seconds N --drain-seconds N`).
///
/// # Errors
/// On an unknown flag or a bad value.
pub fn parse(arguments: &[String]) -> anyhow::Result<ReplicaOptions> {
    let mut options = ReplicaOptions {
        postgres: std::env::var("CMP_TEST_POSTGRES_URL").ok(),
        seconds: 10,
        drain_seconds: 600,
    };
    let mut words = arguments.iter();
    while let Some(word) = words.next() {
        let value = words
            .next()
            .with_context(|| format!("{word} needs a value"))?;
        match word.as_str() {
            "--postgres" => options.postgres = Some(value.clone()),
            "--seconds" => options.seconds = value.parse().context("--seconds")?,
            "--drain-seconds" => {
                options.drain_seconds = value.parse().context("--drain-seconds")?;
            }
            other => bail!("unknown option {other}"),
        }
    }
    Ok(options)
}

/// A database created for one point, dropped at the end.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(server: &str) -> anyhow::Result<Self> {
        let name = format!("cmp_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .context("creating a database")?;
        let _ = admin.close().await;
        let (base, _) = server
            .rsplit_once('/')
            .context("a URL ending in /database")?;
        Ok(Self {
            server: server.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// Outbox rows not delivered yet.
    async fn undelivered(&self) -> anyhow::Result<i64> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let count = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE state <> 'delivered'")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(count)
    }

    async fn drop_database(&self) {
        if let Ok(mut admin) = PgConnection::connect(&self.server).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
            let _ = admin.close().await;
        }
    }
}

/// One replica process.
struct Replica {
    child: Child,
    port: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `count` replicas on `database`, with `extra` settings, sharing one development key;
/// answers them and the `Authorization` header their tokens need.
fn start_replicas(
    binary: &ServiceBinary,
    scratch: &Path,
    database: &Database,
    count: usize,
    extra: &[(&str, String)],
) -> anyhow::Result<(Vec<Replica>, String)> {
    let keys = scratch.join("keys");
    let mut replicas = Vec::new();
    let mut authorization = String::new();
    for n in 0..count {
        let port = service::free_port()?;
        let mut environment = service::service_environment(&scratch.join(format!("r{n}")), port);
        environment.extend(
            [
                ("CMP__AUTH__DEVELOPMENT_KEY_DIR", keys.display().to_string()),
                ("CMP__STORE__KIND", "postgres".to_owned()),
                ("CMP__STORE__REPLICA_ID", format!("replica-{n}")),
                ("CMP__STORE__POSTGRES__URL", database.url.clone()),
                ("CMP__STORE__POSTGRES__POOL_SIZE", "32".to_owned()),
                ("RUST_LOG", "warn".to_owned()),
            ]
            .into_iter()
            .chain(extra.iter().cloned())
            .map(|(key, value)| (key.to_owned(), value)),
        );
        let child = Command::new(&binary.path)
            .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&binary.workspace)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a replica")?;
        let replica = Replica { child, port };
        wait_until_listening(port)?;
        if n == 0 {
            authorization = binary.mint_authorization(&environment, &binary.workspace, &[])?;
        }
        replicas.push(replica);
    }
    Ok((replicas, authorization))
}

fn wait_until_listening(port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("a replica did not listen within 30 s")
}

/// Runs both measurements and prints them.
///
/// # Errors
/// When PostgreSQL, a replica, wrk or the fake cannot be started.
pub fn run(options: &ReplicaOptions) -> anyhow::Result<()> {
    let server = options.postgres.clone().context(
        "no PostgreSQL: pass --postgres URL or set CMP_TEST_POSTGRES_URL \
         (source .ci/postgres.sh; start_test_postgres)",
    )?;
    let binary = service::build_release()?;
    let wrk = ensure_wrk()?;
    let runtime = tokio::runtime::Runtime::new().context("a runtime")?;

    for count in [1_usize, 3] {
        let scratch = tempfile::tempdir().context("a scratch directory")?;
        let database = runtime.block_on(Database::create(&server))?;
        let (replicas, authorization) =
            start_replicas(&binary, scratch.path(), &database, count, &[])?;
        let mut loads = Vec::new();
        for (n, replica) in replicas.iter().enumerate() {
            let share =
                CONNECTIONS / count as u32 + u32::from((n as u32) < CONNECTIONS % count as u32);
            loads.push(Load::prepare_creates(
                &wrk,
                share,
                replica.port,
                &authorization,
                scratch.path(),
            )?);
        }
        let duration = Duration::from_secs(options.seconds);
        let results = std::thread::scope(|scope| {
            let running: Vec<_> = loads
                .iter()
                .map(|load| scope.spawn(move || load.run(duration)))
                .collect();
            running
                .into_iter()
                .map(|handle| handle.join().expect("a wrk thread"))
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        let total: f64 = results.iter().map(|r| r.requests_per_second).sum();
        let errors: u64 = results.iter().map(|r| r.errors).sum();
        let p99 = results.iter().map(|r| r.p99_ms).fold(0.0, f64::max);
        println!(
            "creates at {CONNECTIONS} connections, {count} replica(s) on one PostgreSQL: \
             {total:.0} creates/s (non-2xx {errors}, worst replica's p99 {p99:.1} ms)"
        );
        drop(replicas);
        runtime.block_on(database.drop_database());
    }

    drain(options, &binary, &server, &runtime)
}

/// The drain of [`BACKLOG`] pending partners by three replicas against Graph's throttle.
fn drain(
    options: &ReplicaOptions,
    binary: &ServiceBinary,
    server: &str,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let throttle = WriteThrottle {
        writes: 100,
        window_ms: 20_000,
    };
    let healthy = FakeGraphOptions {
        latency_ms: (50, 200),
        write_throttle: Some(throttle),
        ..FakeGraphOptions::default()
    };
    let fake = runtime
        .block_on(FakeGraph::start(FakeGraphOptions {
            down: true,
            ..healthy.clone()
        }))
        .context("starting the fake Graph")?;
    let scratch = tempfile::tempdir().context("a scratch directory")?;
    let database = runtime.block_on(Database::create(server))?;
    let graph = [
        ("CMP__GRAPH__MODE", "graph".to_owned()),
        (
            "CMP__GRAPH__TENANT_ID",
            "72f988bf-86f1-41af-91ab-2d7cd011db47".to_owned(),
        ),
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
        (
            "CMP__GRAPH__CLIENT__WRITE_RATE_PER_SECOND",
            WRITE_RATE.to_string(),
        ),
        ("CMP__GRAPH__CLIENT__REQUEST_TIMEOUT", "10s".to_owned()),
        ("CMP__OUTBOX__INLINE_DEADLINE", "50ms".to_owned()),
        ("CMP__OUTBOX__SETTLE", "10s".to_owned()),
        ("CMP__OUTBOX__LEASE", "30s".to_owned()),
        ("CMP__OUTBOX__RETRY_BASE", "1s".to_owned()),
        ("CMP__OUTBOX__BACKOFF_CAP", "2s".to_owned()),
    ];
    let (replicas, authorization) = start_replicas(binary, scratch.path(), &database, 3, &graph)?;
    // The backlog, created over the three replicas while Graph is down.
    let run = uuid::Uuid::new_v4().simple().to_string();
    for n in 0..BACKLOG {
        let replica = &replicas[n % replicas.len()];
        let body = format!(r#"{{"displayName":"drain {run} {n:04}"}}"#);
        let (status, answer) = service::request(
            replica.port,
            Some(&authorization),
            "POST",
            service::COLLECTION,
            Some(&body),
        )?;
        if status != 202 && status != 201 {
            bail!("a create answered {status}: {answer}");
        }
    }
    let before = fake.stats();
    fake.set_options(healthy);
    let healed = Instant::now();
    let deadline = healed + Duration::from_secs(options.drain_seconds);
    loop {
        let left = runtime.block_on(database.undelivered())?;
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{left} rows not delivered {} s after Graph came up",
                options.drain_seconds
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = healed.elapsed().as_secs_f64();
    let stats = fake.stats();
    let writes = stats.posts + stats.patches + stats.deletes
        - (before.posts + before.patches + before.deletes);
    let rate = BACKLOG as f64 / took;
    println!(
        "drain of {BACKLOG} pending partners by 3 replicas, budget {WRITE_RATE} writes/s (Graph: \
         {} in any {} s): {took:.1} s, {rate:.2} partners/s = {:.0} % of the budget; {writes} \
         writes offered; busiest {} s window {} writes; 429s provoked {}, calls inside a \
         Retry-After {}; duplicates in Graph {}",
        throttle.writes,
        throttle.window_ms / 1000,
        100.0 * rate / WRITE_RATE,
        throttle.window_ms / 1000,
        fake.busiest_write_window(Duration::from_millis(throttle.window_ms)),
        stats.throttled,
        stats.inside_retry_after,
        fake.duplicates().len(),
    );
    drop(replicas);
    runtime.block_on(database.drop_database());
    Ok(())
}
