//! Several replicas on one PostgreSQL database (README, "Topologies"): three real `cmp-server`
//! processes, each with its own data folder and replica id, share one database and one fake
//! Graph that enforces Graph's write throttle. Creates are spread over all three; one replica
//! is killed with SIGKILL while a delivery of its own is at Graph, and started again. Then every
//! acknowledged partner is in Graph exactly once, the busiest throttle window held no more
//! writes than the budget, and Graph never had to answer 429: the replicas share one write
//! budget through the database, where each alone would send three times too many.
//!
//! The throttle keeps Graph's rule (N writes in any window, else 429) at a tenth of its window
//! and a fifth of its writes, so that the test runs in seconds: 20 writes in any 2 s, against
//! 100 in any 20 s. Each replica is configured with the tenant's budget, 5 writes a second and
//! a burst of 4 (at most 5 × 2 + 4 = 14 in a window): alone, within it; three replicas pacing
//! themselves apart would offer 15 a second, over 30 in a window.
//!
//! Needs the PostgreSQL server of `CMP_TEST_POSTGRES_URL` (`.ci/run` starts one); skipped with
//! a printed notice without it, unless `CMP_REQUIRE_POSTGRES=1`.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cmp_fake_graph::{FakeGraph, FakeGraphOptions, WriteThrottle};
use sqlx::{Connection, PgConnection};

use support::{
    POLL_INTERVAL, Service, create_partners, graph_environment, harness_environment, mint,
    outbox_rows, sync_state, write_development_key,
};

const PARTNERS: usize = 60;
const REPLICAS: [&str; 3] = ["replica-a", "replica-b", "replica-c"];
/// Graph's rule at test scale: at most `writes` in any `window_ms`.
const THROTTLE: WriteThrottle = WriteThrottle {
    writes: 20,
    window_ms: 2_000,
};
/// Each replica's configured budget, writes per second, and its burst: one pacer's slots stay
/// within [`THROTTLE`] (at most 5 × 2 + 4 = 14 starts in a window), three replicas' separate
/// pacing would not.
const WRITE_RATE: &str = "5";
const BURST: &str = "4";

/// The test server's URL, or `None` (with the notice) when the test cannot run here.
fn test_server() -> Option<String> {
    match std::env::var("CMP_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            let required = std::env::var("CMP_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
            assert!(
                !required,
                "CMP_REQUIRE_POSTGRES=1 but CMP_TEST_POSTGRES_URL is not set"
            );
            let _ = writeln!(
                std::io::stderr(),
                "\nskipped: no PostgreSQL: three replicas on one database are not tested \
                 (CMP_TEST_POSTGRES_URL is not set)"
            );
            None
        }
    }
}

/// A database of its own on the test server, dropped at the end of the test.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(server: &str) -> Self {
        let name = format!("cmp_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        let _ = admin.close().await;
        let mut url: url::Url = server.parse().expect("a URL");
        url.set_path(&name);
        Self {
            server: server.to_owned(),
            name,
            url: url.to_string(),
        }
    }

    /// Rows of `replica` in flight whose current attempt was started and not finished: the
    /// replica has a delivery at Graph.
    async fn deliveries_at_graph(&self, replica: &str) -> i64 {
        let mut conn = PgConnection::connect(&self.url).await.expect("connect");
        let count = sqlx::query_scalar(
            "SELECT count(*) FROM outbox o JOIN deliveries d \
             ON d.outbox_id = o.id AND d.attempt = o.attempts \
             WHERE o.state = 'in_flight' AND o.lease_owner LIKE $1 AND d.finished_at IS NULL",
        )
        .bind(format!("{replica}/%"))
        .fetch_one(&mut conn)
        .await
        .expect("count the deliveries in flight");
        let _ = conn.close().await;
        count
    }

    async fn drop_database(&self) {
        let mut admin = PgConnection::connect(&self.server).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .expect("drop database");
        let _ = admin.close().await;
    }
}

/// One replica's configuration, as the environment of its process: PostgreSQL as the store,
/// its own data folder and replica id, `graph` mode against the fake.
///
/// Timings are short, keeping the production relations: the inline deadline is below Graph's
/// latency (creates answer 202 and the dispatchers deliver), the settle outlasts the request
/// timeout, and the lease outlasts one attempt.
fn replica_environment(
    directory: &Path,
    replica: &str,
    database_url: &str,
    fake: &FakeGraph,
) -> Vec<(String, String)> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let data = directory.join(replica);
    [
        ("CMP__SERVICE__DATA_DIR", path(data.clone())),
        ("CMP__SQLITE__PATH", path(data.join("unused.db"))),
        ("CMP__STORE__KIND", "postgres".to_owned()),
        ("CMP__STORE__REPLICA_ID", replica.to_owned()),
        ("CMP__STORE__POSTGRES__URL", database_url.to_owned()),
        ("CMP__STORE__POSTGRES__POOL_SIZE", "8".to_owned()),
        ("CMP__HTTP__PORT", "0".to_owned()),
        ("CMP__GRAPH__CLIENT__REQUEST_TIMEOUT", "1s".to_owned()),
        ("CMP__GRAPH__CLIENT__CONNECT_TIMEOUT", "500ms".to_owned()),
        (
            "CMP__GRAPH__CLIENT__WRITE_RATE_PER_SECOND",
            WRITE_RATE.to_owned(),
        ),
        ("CMP__GRAPH__CLIENT__BURST", BURST.to_owned()),
        ("CMP__GRAPH__CLIENT__READ_RATE_PER_SECOND", "50".to_owned()),
        ("CMP__GRAPH__CLIENT__MAX_RETRIES", "3".to_owned()),
        ("CMP__GRAPH__CLIENT__RETRY_BUDGET", "2s".to_owned()),
        ("CMP__OUTBOX__INLINE_DEADLINE", "100ms".to_owned()),
        ("CMP__OUTBOX__SETTLE", "1200ms".to_owned()),
        ("CMP__OUTBOX__RETRY_BASE", "20ms".to_owned()),
        ("CMP__OUTBOX__BACKOFF_CAP", "300ms".to_owned()),
        ("CMP__OUTBOX__LEASE", "3s".to_owned()),
        ("CMP__OUTBOX__DISPATCHER_WORKERS", "4".to_owned()),
        ("CMP__OUTBOX__DISPATCHER_POLL_INTERVAL", "10ms".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .chain(harness_environment(&directory.join("keys")))
    .chain(graph_environment(fake))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_database_deliver_every_partner_once_within_one_write_budget() {
    let Some(server) = test_server() else {
        return;
    };
    let database = Database::create(&server).await;
    let directory = tempfile::tempdir().expect("temp dir");
    let key_dir = directory.path().join("keys");
    write_development_key(&key_dir);
    let fake = FakeGraph::start(FakeGraphOptions {
        latency_ms: (100, 300),
        write_throttle: Some(THROTTLE),
        seed: Some(9),
        ..FakeGraphOptions::default()
    })
    .await
    .expect("the fake Graph listens");
    let environments: Vec<_> = REPLICAS
        .iter()
        .map(|replica| replica_environment(directory.path(), replica, &database.url, &fake))
        .collect();
    let writer = mint(
        &environments[0],
        &key_dir,
        &["DeviceManagementServiceConfig.ReadWrite.All"],
    );
    let operator = mint(&environments[0], &key_dir, &["CompliancePartners.Operate"]);
    let client = cmp_fake_graph::http_client();
    let mut replicas = Vec::new();
    for environment in &environments {
        replicas.push(Service::start(environment).await);
    }

    // Creates spread over the three replicas, round robin.
    let names: Vec<String> = (1..=PARTNERS)
        .map(|n| format!("Replica Partner {n:02}"))
        .collect();
    let share = |index: usize| -> Vec<String> {
        names
            .iter()
            .skip(index)
            .step_by(REPLICAS.len())
            .cloned()
            .collect()
    };
    let (a, b, c) = (share(0), share(1), share(2));
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            create_partners(&client, &replicas[0], &writer, &a),
            create_partners(&client, &replicas[1], &writer, &b),
            create_partners(&client, &replicas[2], &writer, &c),
        )
    })
    .await
    .expect("the creates are answered within 60 s");
    let accepted: Vec<(String, String)> = [answered.0, answered.1, answered.2].concat();
    assert_eq!(accepted.len(), PARTNERS);

    // Kill replica B while a delivery of its own is at Graph: Graph holds the POSTs that
    // arrive from now on, unanswered, until B has one there.
    let victim = 1;
    fake.hold_creates();
    let at_graph = tokio::time::timeout(Duration::from_secs(30), async {
        while database.deliveries_at_graph(REPLICAS[victim]).await == 0 {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    if at_graph.is_err() {
        fake.release_creates();
        panic!(
            "{} started no delivery within 30 s:\n{}",
            REPLICAS[victim],
            replicas[victim].tail()
        );
    }
    replicas[victim].kill();
    fake.release_creates();
    replicas[victim] = Service::start(&environments[victim]).await;

    let rows = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let rows = outbox_rows(&client, &replicas[2], &operator).await;
            let dead: Vec<_> = rows.iter().filter(|row| row["state"] == "dead").collect();
            assert!(dead.is_empty(), "no row may go dead: {dead:#?}");
            if rows.len() >= accepted.len() && rows.iter().all(|row| row["state"] == "delivered") {
                return rows;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "not every row was delivered within 120 s of the restart:\n{}",
            replicas
                .iter()
                .map(Service::tail)
                .collect::<Vec<_>>()
                .join("\n---\n")
        )
    });

    assert_eq!(fake.duplicates(), Vec::new(), "duplicates in Graph");
    let in_graph: HashMap<String, String> = fake
        .objects()
        .iter()
        .map(|object| {
            (
                object["displayName"]
                    .as_str()
                    .expect("displayName")
                    .to_owned(),
                object["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        in_graph.len(),
        PARTNERS,
        "Graph holds exactly the service's partners"
    );
    for (name, id) in &accepted {
        let row = rows
            .iter()
            .find(|row| row["partnerId"] == id.as_str())
            .unwrap_or_else(|| panic!("the accepted partner {name} has no outbox row"));
        let graph_id = in_graph
            .get(name)
            .unwrap_or_else(|| panic!("the accepted partner {name} is not in Graph"));
        assert_eq!(row["graphId"], graph_id.as_str(), "{name}");
    }
    // The kill cut at least one attempt (started, never finished), reconciled afterwards.
    let mut cut_by_the_kill = 0;
    for (name, id) in &accepted {
        let sync = sync_state(&client, &replicas[0], &operator, id).await;
        let history = sync["deliveries"].as_array().expect("an attempt history");
        cut_by_the_kill += history.iter().filter(|a| a["finishedAt"].is_null()).count();
        assert!(
            history.last().is_some_and(|a| !a["finishedAt"].is_null()),
            "{name}: {sync}"
        );
    }
    assert!(cut_by_the_kill > 0, "the kill interrupted no attempt");

    let stats = fake.stats();
    let busiest = fake.busiest_write_window(Duration::from_millis(THROTTLE.window_ms));
    assert_eq!(
        (stats.throttled, stats.inside_retry_after),
        (0, 0),
        "Graph never had to answer 429: {stats:?}"
    );
    assert!(
        busiest <= THROTTLE.writes as usize,
        "the busiest {} ms held {busiest} writes, over the budget of {}",
        THROTTLE.window_ms,
        THROTTLE.writes
    );
    println!(
        "replicas: {PARTNERS} partners over {} replicas, one killed mid-delivery and restarted; \
         attempts cut by the kill {cut_by_the_kill}; Graph saw {} POSTs ({} applied), {} GETs; \
         busiest {} ms window {busiest} writes (budget {}); 429s {}",
        REPLICAS.len(),
        stats.posts,
        stats.posts_applied,
        stats.gets,
        THROTTLE.window_ms,
        THROTTLE.writes,
        stats.throttled,
    );
    drop(replicas);
    database.drop_database().await;
}
