//! Crash test (`docs/delivery.md`, "Leases" and "Durability"): the real `cmp-server` binary,
//! configured through `CMP__*` environment variables, is killed with SIGKILL while its
//! deliveries to a slow, failing fake Graph are in flight, then started again on the same
//! database. Every partner it accepted before the kill must end delivered, in Graph exactly
//! once: the lapsed leases turn `unknown` and are reconciled against Graph's list.
//!
//! A second test kills the service during a burst of concurrent creates, whose writes share
//! group commits: every create answered 201 or 202 before the kill must be stored after the
//! restart (no answer goes out before its transaction is on disk).
//!
//! A third kills the service inside a `Retry-After` pause it met: the process started after it
//! must send nothing to the tenant before the pause ends.
//!
//! The fake Graph runs in the test process, so its state outlives the service.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmp_fake_graph::{FakeGraph, FakeGraphOptions};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use support::{
    COLLECTION, POLL_INTERVAL, Service, create_partners, graph_environment, harness_environment,
    mint, outbox_rows, sync_state, write_development_key,
};

const PARTNERS: usize = 60;

/// The service's whole configuration, as the environment of its process.
///
/// Timings are milliseconds rather than the production minutes, keeping their relations:
/// the inline deadline is far below Graph's latency (so creates are accepted with 202 and
/// delivered in the background), the settle outlasts the request timeout, and the lease
/// outlasts one attempt (a list and a POST, each up to 600 ms, with in-call retries).
fn service_environment(directory: &Path, fake: &FakeGraph) -> Vec<(String, String)> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    [
        ("CMP__SQLITE__PATH", path(directory.join("partners.db"))),
        ("CMP__HTTP__PORT", "0".to_owned()),
        ("CMP__GRAPH__CLIENT__REQUEST_TIMEOUT_MS", "1000".to_owned()),
        ("CMP__GRAPH__CLIENT__CONNECT_TIMEOUT_MS", "500".to_owned()),
        (
            "CMP__GRAPH__CLIENT__WRITE_RATE_PER_SECOND",
            "1000".to_owned(),
        ),
        ("CMP__GRAPH__CLIENT__MAX_RETRIES", "3".to_owned()),
        ("CMP__GRAPH__CLIENT__RETRY_BUDGET_MS", "2000".to_owned()),
        ("CMP__DELIVERY__INLINE_DEADLINE_MS", "100".to_owned()),
        ("CMP__DELIVERY__SETTLE_MS", "1200".to_owned()),
        ("CMP__DELIVERY__RETRY_BASE_MS", "20".to_owned()),
        ("CMP__DELIVERY__BACKOFF_CAP_MS", "300".to_owned()),
        ("CMP__DELIVERY__LEASE_MS", "3000".to_owned()),
        ("CMP__DELIVERY__DISPATCHER_WORKERS", "4".to_owned()),
        (
            "CMP__DELIVERY__DISPATCHER_POLL_INTERVAL_MS",
            "10".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .chain(harness_environment(&directory.join("keys")))
    .chain(graph_environment(fake))
    .collect()
}

/// What every crash test starts from: its folder (holding the database and the development
/// key), the fake Graph, the service's environment pointing at both, tokens for a writer and an
/// operator, and an HTTP client.
struct Surroundings {
    /// Removed, with the database, when the test ends.
    _directory: tempfile::TempDir,
    fake: FakeGraph,
    environment: Vec<(String, String)>,
    writer: String,
    operator: String,
    client: reqwest::Client,
}

/// Sets up a test's [`Surroundings`] against a fake Graph with `options`.
async fn surroundings(options: FakeGraphOptions) -> Surroundings {
    let directory = tempfile::tempdir().expect("temp dir");
    let key_dir = directory.path().join("keys");
    write_development_key(&key_dir);
    let fake = FakeGraph::start(options)
        .await
        .expect("the fake Graph listens");
    let environment = service_environment(directory.path(), &fake);
    let writer = mint(
        &environment,
        &key_dir,
        &["DeviceManagementServiceConfig.ReadWrite.All"],
    );
    let operator = mint(&environment, &key_dir, &["CompliancePartners.Operate"]);
    Surroundings {
        _directory: directory,
        fake,
        environment,
        writer,
        operator,
        client: cmp_fake_graph::http_client(),
    }
}

/// Partners accepted while their deliveries to a slow, failing Graph are in flight, a SIGKILL,
/// a restart on the same database: each partner ends in Graph exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partners_accepted_before_a_sigkill_mid_delivery_end_in_graph_exactly_once_after_a_restart()
{
    let Surroundings {
        _directory,
        fake,
        environment,
        writer,
        operator,
        client,
    } = surroundings(FakeGraphOptions {
        failure_rate: 0.2,
        failure_statuses: vec![429, 500, 502, 503, 504],
        applied_before_failure_rate: 0.5,
        latency_ms: (300, 600),
        retry_after: "0.05".to_owned(),
        seed: Some(60),
        ..FakeGraphOptions::default()
    })
    .await;
    let names: Vec<String> = (1..=PARTNERS)
        .map(|n| format!("Crash Partner {n:02}"))
        .collect();
    let mut first = Service::start(&environment).await;

    let accepted = tokio::time::timeout(
        Duration::from_secs(60),
        create_partners(&client, &first, &writer, &names),
    )
    .await
    .expect("60 creates are answered within 60 s");
    // Every create's inline POST has reached Graph by now; POSTs beyond those come from the
    // dispatcher. Kill while some are in flight (each takes 300-600 ms).
    let inline_posts = fake.stats().posts;
    let in_flight = tokio::time::timeout(Duration::from_secs(30), async {
        while fake.stats().posts < inline_posts + 8 {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    assert!(
        in_flight.is_ok(),
        "the dispatcher sent no POSTs within 30 s:\n{}",
        first.tail()
    );
    let at_kill = fake.stats();
    let delivered_at_kill = outbox_rows(&client, &first, &operator)
        .await
        .iter()
        .filter(|row| row["state"] == "delivered")
        .count();
    first.kill();
    let killed = Instant::now();
    let second = Service::start(&environment).await;
    let restarted = killed.elapsed();
    let rows = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let rows = outbox_rows(&client, &second, &operator).await;
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
            "not every row was delivered within 90 s of the restart:\n{}",
            second.tail()
        )
    });
    let drain = killed.elapsed();
    let drain_after_restart = drain.saturating_sub(restarted);

    assert_eq!(fake.duplicates(), Vec::new(), "duplicates in Graph");
    let mut in_graph = std::collections::HashMap::new();
    for object in fake.objects() {
        let name = object["displayName"]
            .as_str()
            .expect("displayName")
            .to_owned();
        in_graph.insert(name, object["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(
        in_graph.len(),
        rows.len(),
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
    // The kill left evidence: attempts started (committed before the call) and never finished.
    // Each such row was reconciled afterwards, so its last attempt is a finished one.
    let mut cut_by_the_kill = 0;
    for (name, id) in &accepted {
        let sync = sync_state(&client, &second, &operator, id).await;
        let history = sync["deliveries"].as_array().expect("an attempt history");
        let open = history.iter().filter(|a| a["finishedAt"].is_null()).count();
        assert!(
            history.last().is_some_and(|a| !a["finishedAt"].is_null()),
            "{name}: {sync}"
        );
        cut_by_the_kill += open;
    }
    assert!(
        cut_by_the_kill > 0,
        "the kill interrupted no attempt: the test did not kill mid-delivery"
    );
    let stats = fake.stats();
    println!(
        "crash: partners accepted {} (delivered before the kill {delivered_at_kill}, attempts cut \
         by the kill {cut_by_the_kill}); Graph calls at the kill: {} POSTs ({} applied), {} GETs; \
         in all: {} POSTs ({} applied), {} GETs, {} failures \
         injected, {} token requests; duplicates found {}; restart took {restarted:?}; \
         drain time after the restart {drain_after_restart:?} ({drain:?} after the kill)",
        accepted.len(),
        at_kill.posts,
        at_kill.posts_applied,
        at_kill.gets,
        stats.posts,
        stats.posts_applied,
        stats.gets,
        stats.failures_injected,
        stats.token_requests,
        fake.duplicates().len(),
    );
}

/// How many clients create at once in the burst.
const BURST_CLIENTS: usize = 32;
/// Acknowledged creates before the kill.
const BURST_ACKNOWLEDGED_BEFORE_KILL: usize = 150;

/// What one burst client saw: the partners acknowledged to it (name, id), and whether its last
/// create went unanswered (the kill cut it).
struct BurstClient {
    acknowledged: Vec<(String, String)>,
    cut: bool,
}

/// Creates partners one after another until a create goes unanswered; `acknowledged` counts the
/// 201s and 202s of every client, and `enough` is told once it reaches the threshold.
async fn burst_client(
    client: reqwest::Client,
    url: String,
    token: String,
    number: usize,
    acknowledged: Arc<std::sync::atomic::AtomicUsize>,
    enough: Arc<tokio::sync::Notify>,
) -> BurstClient {
    let mut seen = BurstClient {
        acknowledged: Vec::new(),
        cut: false,
    };
    for n in 0.. {
        let name = format!("Burst {number:02} {n:04}");
        let sent = client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({ "displayName": name }))
            .send()
            .await;
        let Ok(response) = sent else {
            seen.cut = true;
            return seen;
        };
        let status = response.status().as_u16();
        let Ok(body) = response.json::<Value>().await else {
            // The answer's head arrived but its body did not: not acknowledged.
            seen.cut = true;
            return seen;
        };
        assert!(matches!(status, 201 | 202), "{name}: {status} {body}");
        let id = body["id"].as_str().expect("an id").to_owned();
        seen.acknowledged.push((name, id));
        let so_far = acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if so_far == BURST_ACKNOWLEDGED_BEFORE_KILL {
            enough.notify_one();
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_create_acknowledged_before_a_sigkill_during_a_burst_is_stored_after_a_restart() {
    // A quick, healthy Graph: creates are answered 201 within milliseconds, so the burst keeps
    // many of them committing at once, in shared group commits, when the kill comes.
    let Surroundings {
        _directory,
        // Kept running to the end of the test.
        fake: _fake,
        environment,
        writer,
        client,
        ..
    } = surroundings(FakeGraphOptions {
        latency_ms: (0, 2),
        seed: Some(13),
        ..FakeGraphOptions::default()
    })
    .await;
    let mut first = Service::start(&environment).await;

    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let enough = Arc::new(tokio::sync::Notify::new());
    let url = format!("{}{COLLECTION}", first.root);
    let mut clients = JoinSet::new();
    for number in 0..BURST_CLIENTS {
        clients.spawn(burst_client(
            client.clone(),
            url.clone(),
            writer.clone(),
            number,
            Arc::clone(&acknowledged),
            Arc::clone(&enough),
        ));
    }
    tokio::time::timeout(Duration::from_secs(60), enough.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "fewer than {BURST_ACKNOWLEDGED_BEFORE_KILL} creates acknowledged within 60 s:\n{}",
                first.tail()
            )
        });
    // The clients are still sending: the kill lands in the middle of their creates.
    first.kill();
    let mut seen = Vec::with_capacity(BURST_CLIENTS);
    let joined = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(client) = clients.join_next().await {
            seen.push(client.expect("a burst client failed"));
        }
    })
    .await;
    assert!(joined.is_ok(), "the clients did not stop after the kill");
    let cut = seen.iter().filter(|client| client.cut).count();
    assert_eq!(cut, BURST_CLIENTS, "every client was cut by the kill");
    let stored_before: Vec<(String, String)> = seen
        .into_iter()
        .flat_map(|client| client.acknowledged)
        .collect();
    assert!(stored_before.len() >= BURST_ACKNOWLEDGED_BEFORE_KILL);

    let second = Service::start(&environment).await;
    let mut missing = Vec::new();
    for (name, id) in &stored_before {
        let response = client
            .get(format!("{}{COLLECTION}/{id}", second.root))
            .bearer_auth(&writer)
            .send()
            .await
            .expect("the restarted service answers");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON answer");
        if status != 200 || body["displayName"] != name.as_str() {
            missing.push(format!("{name} ({id}): {status} {body}"));
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged partners lost by the kill:\n{}\n{}",
        missing.join("\n"),
        second.tail()
    );
    println!(
        "burst: {} creates acknowledged to {BURST_CLIENTS} clients before the kill, every one \
         stored after the restart",
        stored_before.len()
    );
}

/// Creates one partner named `name`; answers the status and the partner's id.
async fn create_one(
    client: &reqwest::Client,
    service: &Service,
    token: &str,
    name: &str,
) -> (u16, String) {
    let response = client
        .post(format!("{}{COLLECTION}", service.root))
        .bearer_auth(token)
        .json(&json!({ "displayName": name }))
        .send()
        .await
        .expect("the service answers");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON answer");
    (status, body["id"].as_str().expect("an id").to_owned())
}

/// A 429 with `Retry-After`, a SIGKILL, a restart: the new process knows the pause from the
/// database file. A create made to it inside the pause finds no write slot and answers 202 at
/// once, and neither it nor the create that met the 429 reaches Graph before the pause ends;
/// then both are delivered, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_restarted_after_a_sigkill_sends_nothing_inside_the_retry_after_its_predecessor_met()
 {
    // Every call answered 429 with a pause far longer than a restart takes.
    let Surroundings {
        _directory,
        fake,
        environment,
        writer,
        operator,
        client,
    } = surroundings(FakeGraphOptions {
        failure_rate: 1.0,
        failure_statuses: vec![429],
        retry_after: "8".to_owned(),
        seed: Some(429),
        ..FakeGraphOptions::default()
    })
    .await;
    let mut first = Service::start(&environment).await;

    let (status, throttled) = create_one(&client, &first, &writer, "Paused Partner 1").await;
    // The 202 leaves only after the pause was recorded, so it is in the file by now.
    assert_eq!(status, 202, "Graph's 429 leaves the create accepted");
    assert_eq!(fake.stats().posts, 1, "{}", first.tail());
    first.kill();
    // Graph heals: only the pause still holds requests back.
    fake.set_options(FakeGraphOptions::default());
    let second = Service::start(&environment).await;

    let (status, queued) = create_one(&client, &second, &writer, "Paused Partner 2").await;
    assert_eq!(
        (status, fake.stats().posts, fake.stats().inside_retry_after),
        (202, 1, 0),
        "the restarted process started inside the pause: no write slot for the inline POST, \
         nothing sent\n{}",
        second.tail()
    );

    let rows = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let rows = outbox_rows(&client, &second, &operator).await;
            if rows.len() == 2 && rows.iter().all(|row| row["state"] == "delivered") {
                return rows;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "both partners delivered after the pause:\n{}",
            second.tail()
        )
    });
    let stats = fake.stats();
    assert_eq!(
        stats.inside_retry_after, 0,
        "no request inside the Retry-After"
    );
    assert_eq!(fake.duplicates(), Vec::new(), "duplicates in Graph");
    assert_eq!(fake.objects().len(), 2, "each partner in Graph once");
    for id in [throttled, queued] {
        assert!(
            rows.iter().any(|row| row["partnerId"] == id.as_str()),
            "{id} delivered"
        );
    }
}
