//! What operators watch: the probes (`/healthz`, `/readyz`) on the API's listener, without a
//! token, and the Prometheus metrics on a listener of their own.
//!
//! The metrics recorder is one per process and every test of this binary shares it, so counts
//! are asserted as lower bounds: a test adds to them, others may too.

use std::time::Duration;

use cmp_fake_graph::{FakeGraph, FakeGraphOptions};
use serde_json::{Value, json};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    COLLECTION, SEED_REQUEST, TestApp, spawn_app, spawn_app_against, spawn_app_with, wait_until,
};

/// How long a test waits for a condition the service reaches on its own.
const BOUND: Duration = Duration::from_secs(20);

/// `GET path` on the API's listener with no token: the status, the `request-id` header if
/// any, and the JSON body.
async fn probe(app: &TestApp, path: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::get(app.url_outside_root(path))
        .await
        .expect("the probe reaches the service");
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.expect("a JSON body");
    (status, request_id, body)
}

/// The readiness answer with its checks, and `graph_token` as given.
fn ready_with(graph_token: &str) -> Value {
    json!({
        "status": "ready",
        "checks": {"store": "ok", "migrations": "ok", "dispatcher": "ok", "graph_token": graph_token},
    })
}

/// The metrics listener's exposition.
async fn scrape(app: &TestApp) -> String {
    let url = app.metrics_url.as_deref().expect("metrics are on in tests");
    let response = reqwest::get(url)
        .await
        .expect("the scrape reaches the service");
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/plain")),
        "Prometheus' text format"
    );
    response.text().await.expect("a text body")
}

/// The value of `series` (a name with its labels, as rendered) in an exposition.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

// Probes

#[tokio::test]
async fn healthz_answers_ok_without_a_token_and_without_the_graph_envelope() {
    let app = spawn_app().await;

    let (status, request_id, body) = probe(&app, "/healthz").await;

    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok"}));
    assert_eq!(request_id, None, "probes are outside the Graph envelope");
}

#[tokio::test]
async fn readyz_is_ready_with_every_check_named_and_no_graph_token_in_simulated_mode() {
    let app = spawn_app().await;

    let (status, _, body) = probe(&app, "/readyz").await;

    assert_eq!(status, 200);
    assert_eq!(body, ready_with("not_used"));
}

#[tokio::test]
async fn readyz_is_not_ready_while_another_process_holds_the_write_lock_and_ready_after() {
    // The busy timeout bounds how long the check waits for the lock, not what the test sees.
    let app = spawn_app_with(|settings| settings.sqlite.busy_timeout_ms = 50).await;
    let mut other_process = SqliteConnectOptions::new()
        .filename(&app.database)
        .connect()
        .await
        .expect("a second connection to the file");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other_process)
        .await
        .expect("the write lock");

    let (held_status, _, held) = probe(&app, "/readyz").await;
    sqlx::query("ROLLBACK")
        .execute(&mut other_process)
        .await
        .expect("release");
    other_process.close().await.expect("close");
    let (released_status, _, released) = probe(&app, "/readyz").await;

    assert_eq!(held_status, 503);
    assert_eq!(held["status"], "not_ready");
    assert_eq!(held["checks"]["store"], "failing");
    assert_eq!(held["checks"]["migrations"], "ok", "reads still work");
    assert_eq!(released_status, 200);
    assert_eq!(released, ready_with("not_used"));
}

#[tokio::test]
async fn readyz_is_not_ready_while_a_dispatcher_pass_hangs_on_graph() {
    // Graph holds every call for ten minutes, and the client waits that long: the create is
    // answered 202 at its inline deadline, and the dispatcher's pass that picks the row up
    // hangs in the call.
    let fake = FakeGraph::start(FakeGraphOptions {
        latency_ms: (600_000, 600_000),
        ..FakeGraphOptions::default()
    })
    .await
    .expect("fake Graph");
    let app = spawn_app_against(&fake, |settings| {
        settings.graph.client.request_timeout_ms = 900_000;
        settings.graph.client.token_timeout_ms = 900_000;
        settings.readiness.dispatcher_stale_after_ms = 200;
    })
    .await;
    let (ready_status, _, _) = probe(&app, "/readyz").await;

    let created = app.post_partner(SEED_REQUEST).await;

    assert_eq!(created.status(), 202);
    assert_eq!(ready_status, 200, "ready before the hang");
    let body = wait_until(BOUND, "the dispatcher check to fail", || async {
        match probe(&app, "/readyz").await {
            (503, _, body) if body["checks"]["dispatcher"] == "failing" => Ok(body),
            (status, _, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["store"], "ok");
}

#[tokio::test]
async fn readyz_reports_the_graph_token_and_stays_ready_when_entra_refuses_it() {
    let graph = FakeGraph::start(FakeGraphOptions::default())
        .await
        .expect("fake Graph");
    let working = spawn_app_against(&graph, |_| {}).await;
    let entra = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "error_codes": [7_000_215],
        })))
        .mount(&entra)
        .await;
    let entra_uri = entra.uri();
    let refused = spawn_app_against(&graph, move |settings| {
        settings.graph.client.authority = entra_uri;
    })
    .await;
    let (before_any_call, _, before) = probe(&working, "/readyz").await;

    let obtained = working.post_partner(SEED_REQUEST).await;
    let not_obtained = refused.post_partner(SEED_REQUEST).await;

    assert_eq!((before_any_call, before), (200, ready_with("unknown")));
    assert_eq!(obtained.status(), 201);
    assert_eq!(
        probe(&working, "/readyz").await,
        (200, None, ready_with("ok"))
    );
    assert_eq!(not_obtained.status(), 202, "kept and queued");
    assert_eq!(
        probe(&refused, "/readyz").await,
        (200, None, ready_with("failing")),
        "an Entra outage must not take every replica out of the load balancer"
    );
}

// Metrics

#[tokio::test]
async fn metrics_count_creates_deliveries_and_refusals_on_their_own_listener() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let body = SEED_REQUEST.replace(
            "Display Name value",
            &format!("Metered {}", uuid::Uuid::new_v4()),
        );
        assert_eq!(app.post_partner(&body).await.status(), 201);
    }
    let without_token = reqwest::get(app.collection_url()).await.expect("sent");

    let exposition = scrape(&app).await;
    let on_the_api_listener = app
        .get_outside_root(&app.token, "/metrics")
        .await
        .text()
        .await
        .expect("a body");

    assert_eq!(without_token.status(), 401);
    let collection = format!("/beta{COLLECTION}");
    for (series, at_least) in [
        (
            format!(
                r#"cmp_http_requests_total{{route="{collection}",method="POST",status="201"}}"#
            ),
            3.0,
        ),
        (
            format!(r#"cmp_http_requests_total{{route="{collection}",method="GET",status="401"}}"#),
            1.0,
        ),
        (
            format!(
                r#"cmp_http_request_duration_seconds_count{{route="{collection}",method="POST"}}"#
            ),
            3.0,
        ),
        (
            r#"cmp_outbox_deliveries_total{outcome="created"}"#.to_owned(),
            3.0,
        ),
        (
            r#"cmp_auth_refusals_total{reason="missing_token"}"#.to_owned(),
            1.0,
        ),
    ] {
        let value = sample(&exposition, &series);
        assert!(
            value.is_some_and(|value| value >= at_least),
            "{series} is {value:?}, expected at least {at_least}"
        );
    }
    assert!(
        !on_the_api_listener.contains("cmp_http_requests_total"),
        "the API's listener does not serve the metrics"
    );
}

#[tokio::test]
async fn the_outbox_gauges_are_refreshed_from_the_store() {
    let app = spawn_app_with(|settings| settings.metrics.refresh_interval_ms = 20).await;
    assert_eq!(app.post_partner(SEED_REQUEST).await.status(), 201);

    let exposition = wait_until(BOUND, "the outbox gauges", || async {
        let exposition = scrape(&app).await;
        let present = [
            r#"cmp_outbox_rows{state="pending"}"#,
            r#"cmp_outbox_rows{state="in_flight"}"#,
            r#"cmp_outbox_rows{state="delivered"}"#,
            r#"cmp_outbox_rows{state="unknown"}"#,
            r#"cmp_outbox_rows{state="dead"}"#,
            "cmp_outbox_oldest_waiting_age_seconds",
        ]
        .iter()
        .all(|series| sample(&exposition, series).is_some());
        if present {
            Ok(exposition)
        } else {
            Err("not yet".to_owned())
        }
    })
    .await;

    assert!(
        sample(&exposition, "cmp_outbox_oldest_waiting_age_seconds").is_some_and(|age| age >= 0.0)
    );
    assert!(exposition.contains("# HELP cmp_outbox_rows "), "described");
}
