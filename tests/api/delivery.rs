//! Delivery to Microsoft Graph end to end (`docs/delivery.md`, with the outcome classes of its
//! "Outcomes" table): the service in `graph` mode against the stateful fake Graph of
//! `cmp-fake-graph`, whose failures each test shapes at run time. Every partner the API
//! accepted must end in Graph exactly once; tests wait for that by bounded polling only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmp_fake_graph::{FakeGraph, FakeGraphOptions, WriteThrottle};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::create::ONLY_TWO_AUDIT_ENTRIES;
use crate::helpers::{
    FAKE_GRAPH_TOKEN, OutboxRow, TestApp, header, json_body, spawn_app_against, wait_until,
};

/// The partner collection below the fake's Graph root.
const FAKE_COLLECTION: &str = "/deviceManagement/complianceManagementPartners";

/// A settle long enough that a test can look at an `unknown` row, and change the fake's
/// behaviour, before the dispatcher reconciles it.
const SLOW_SETTLE_MS: u64 = 2000;

/// Longest wait for a small queue to drain.
const DRAIN_BOUND: Duration = Duration::from_secs(20);

/// The smallest valid create body.
fn partner_body(name: &str) -> String {
    json!({ "displayName": name }).to_string()
}

/// A fake Graph that fails every call with one of `statuses`, storing a failed POST's object
/// anyway at the rate `applied`.
fn failing(statuses: &[u16], applied: f64) -> FakeGraphOptions {
    FakeGraphOptions {
        failure_rate: 1.0,
        failure_statuses: statuses.to_vec(),
        applied_before_failure_rate: applied,
        ..FakeGraphOptions::default()
    }
}

async fn start_fake(options: FakeGraphOptions) -> FakeGraph {
    FakeGraph::start(options)
        .await
        .expect("the fake Graph listens on 127.0.0.1")
}

/// The fake's objects' ids, keyed by natural key (trimmed, lower-cased display name).
fn fake_ids_by_name(fake: &FakeGraph) -> HashMap<String, Vec<String>> {
    let mut ids: HashMap<String, Vec<String>> = HashMap::new();
    for object in fake.objects() {
        let name = object["displayName"].as_str().expect("displayName");
        let id = object["id"].as_str().expect("id");
        ids.entry(name.trim().to_lowercase())
            .or_default()
            .push(id.to_owned());
    }
    ids
}

/// One create request's answer.
#[derive(Debug)]
struct Created {
    name: String,
    status: u16,
    /// The partner's id when the create was accepted (201 or 202), else the response body.
    id_or_body: String,
}

/// POSTs one partner per name, at most `concurrency` at a time, and returns the answers.
async fn create_partners(app: &Arc<TestApp>, names: &[String], concurrency: usize) -> Vec<Created> {
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for name in names {
        let (app, gate, name) = (Arc::clone(app), Arc::clone(&gate), name.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("the gate stays open");
            let response = app.post_partner(&partner_body(&name)).await;
            let status = response.status().as_u16();
            let id_or_body = if matches!(status, 201 | 202) {
                json_body(response).await["id"]
                    .as_str()
                    .expect("an accepted partner has an id")
                    .to_owned()
            } else {
                response.text().await.unwrap_or_default()
            };
            Created {
                name,
                status,
                id_or_body,
            }
        });
    }
    let mut created = Vec::with_capacity(names.len());
    while let Some(joined) = tasks.join_next().await {
        created.push(joined.expect("a create task panicked"));
    }
    created
}

/// Rows per state, e.g. `{"delivered": 498, "unknown": 2}`.
fn states(rows: &[OutboxRow]) -> BTreeMap<String, usize> {
    let mut states = BTreeMap::new();
    for row in rows {
        *states.entry(row.state.clone()).or_insert(0) += 1;
    }
    states
}

/// Waits until the outbox holds `expected` rows, all delivered; fails at once if one is dead.
async fn wait_until_all_delivered(
    app: &TestApp,
    expected: usize,
    bound: Duration,
) -> Vec<OutboxRow> {
    let what = format!("all {expected} outbox rows delivered");
    wait_until(bound, &what, || async move {
        let rows = app.outbox_rows().await;
        let dead: Vec<_> = rows.iter().filter(|row| row.state == "dead").collect();
        assert!(dead.is_empty(), "no row may go dead here: {dead:#?}");
        if rows.len() == expected && rows.iter().all(|row| row.state == "delivered") {
            Ok(rows)
        } else {
            Err(format!("{} rows: {:?}", rows.len(), states(&rows)))
        }
    })
    .await
}

/// The one outbox row of the only partner, once it is in `state`.
async fn wait_for_state(app: &TestApp, state: &str) -> OutboxRow {
    wait_until(
        DRAIN_BOUND,
        &format!("the outbox row {state}"),
        || async move {
            match app.outbox_rows().await.as_slice() {
                [row] if row.state == state => Ok(row.clone()),
                rows => Err(format!("{rows:?}")),
            }
        },
    )
    .await
}

/// Asserts Graph holds every name of `rows` exactly once, under the id the row recorded, and
/// nothing else.
fn assert_graph_holds_each_row_once(fake: &FakeGraph, rows: &[OutboxRow]) {
    assert_eq!(fake.duplicates(), Vec::new(), "duplicates in Graph");
    let in_graph = fake_ids_by_name(fake);
    assert_eq!(in_graph.len(), rows.len(), "names in Graph vs rows");
    assert_eq!(fake.objects().len(), rows.len(), "objects in Graph vs rows");
    for row in rows {
        let ids = in_graph
            .get(&row.display_name.trim().to_lowercase())
            .unwrap_or_else(|| panic!("{} is not in Graph", row.display_name));
        assert_eq!(
            Some(&ids[0]),
            row.graph_id.as_ref(),
            "graph id of {}",
            row.display_name
        );
    }
}

/// A fake Graph with `options`, and the service against it with a settle long enough to look
/// at a row of unknown outcome before the dispatcher reconciles it.
async fn slowly_settling(options: FakeGraphOptions) -> (FakeGraph, TestApp) {
    let fake = start_fake(options).await;
    let app = spawn_app_against(&fake, |s| {
        s.outbox.settle = Duration::from_millis(SLOW_SETTLE_MS);
    })
    .await;
    (fake, app)
}

/// The sync state and delivery history of `partner_id`, as the operator holding `token` sees it.
async fn sync_of(app: &TestApp, token: &str, partner_id: &str) -> Value {
    admin_get(app, token, &format!("/admin/partners/{partner_id}/sync")).await
}

/// `GET /admin/...` as an operator, expecting 200 and JSON.
async fn admin_get(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app.get_outside_root(token, path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    json_body(response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_500_partners_against_a_graph_failing_half_its_calls_end_in_graph_exactly_once() {
    const PARTNERS: usize = 500;
    let fake = start_fake(FakeGraphOptions {
        failure_rate: 0.5,
        failure_statuses: vec![429, 500, 502, 503, 504],
        applied_before_failure_rate: 0.5,
        latency_ms: (5, 30),
        retry_after: "0.05".to_owned(),
        seed: Some(4),
        // Graph's page size of 100: a reconciliation pages through up to 500 partners, each
        // page failing half the time. A list that fails sends nothing and counts no attempt;
        // one good list serves every row that settled before it was read.
        ..FakeGraphOptions::default()
    })
    .await;
    let app = Arc::new(spawn_app_against(&fake, |_| {}).await);
    let names: Vec<String> = (1..=PARTNERS)
        .map(|n| format!("Soak Partner {n:03}"))
        .collect();
    let started = Instant::now();

    let created = tokio::time::timeout(Duration::from_secs(60), create_partners(&app, &names, 16))
        .await
        .expect("500 creates are answered within 60 s");
    let created_in = started.elapsed();
    let last_create = Instant::now();
    let rows = wait_until_all_delivered(&app, PARTNERS, Duration::from_secs(90)).await;
    let drain = last_create.elapsed();

    let refused: Vec<_> = created
        .iter()
        .filter(|c| !matches!(c.status, 201 | 202))
        .collect();
    assert!(
        refused.is_empty(),
        "every create is answered 201 or 202: {refused:#?}"
    );
    let accepted: HashSet<&str> = created.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(accepted.len(), PARTNERS);
    let ids: HashSet<&str> = created.iter().map(|c| c.id_or_body.as_str()).collect();
    assert_eq!(
        rows.iter()
            .map(|r| r.partner_id.as_str())
            .collect::<HashSet<_>>(),
        ids,
        "one outbox row per accepted partner"
    );
    assert_graph_holds_each_row_once(&fake, &rows);
    let stats = fake.stats();
    let answered_201 = created.iter().filter(|c| c.status == 201).count();
    let attempts: i64 = rows.iter().map(|r| r.attempts).sum();
    println!(
        "soak: partners {PARTNERS} (201: {answered_201}, 202: {}), created in {created_in:?}; \
         Graph calls: {} POSTs ({} applied), {} GETs, {} failures injected, {} token requests; \
         outbox attempts {attempts}; duplicates found {}; drain time after the last create {drain:?}",
        PARTNERS - answered_201,
        stats.posts,
        stats.posts_applied,
        stats.gets,
        stats.failures_injected,
        stats.token_requests,
        fake.duplicates().len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_injected_429s_no_request_goes_inside_a_retry_after_and_each_partner_reaches_graph_once()
 {
    const PARTNERS: usize = 40;
    // 429s two ways: injected at random, and from a write throttle of 5 writes in any 500 ms,
    // below the service's write budget of 20 a second, so the service keeps running into it.
    let fake = start_fake(FakeGraphOptions {
        failure_rate: 0.3,
        failure_statuses: vec![429],
        retry_after_ms: Some((50, 150)),
        write_throttle: Some(WriteThrottle {
            writes: 5,
            window_ms: 500,
        }),
        seed: Some(10),
        ..FakeGraphOptions::default()
    })
    .await;
    let app = Arc::new(
        spawn_app_against(&fake, |settings| {
            // Writes one every 50 ms: far apart compared with a loopback round trip, so that
            // no request is in flight at the moment a 429 is answered. What is asserted is
            // that none *starts* after it and before its Retry-After has passed.
            settings.graph.client.write_rate_per_second = 20.0;
            settings.graph.client.burst = 1;
            settings.outbox.dispatcher_workers = 2;
        })
        .await,
    );
    let names: Vec<String> = (1..=PARTNERS)
        .map(|n| format!("Throttled Partner {n:02}"))
        .collect();

    let created = create_partners(&app, &names, 8).await;
    let rows = wait_until_all_delivered(&app, PARTNERS, Duration::from_secs(60)).await;

    assert!(
        created.iter().all(|c| matches!(c.status, 201 | 202)),
        "{created:#?}"
    );
    assert_graph_holds_each_row_once(&fake, &rows);
    let stats = fake.stats();
    assert!(
        stats.throttled > 0 && stats.failures_injected > 0,
        "Graph throttled and injected 429s: {stats:?}"
    );
    assert_eq!(
        stats.inside_retry_after, 0,
        "no request reached Graph inside a Retry-After it had answered: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_budget_saturated_no_worker_waits_for_a_slot_past_its_lease_so_no_row_is_recovered()
 {
    const PARTNERS: usize = 30;
    let fake = start_fake(FakeGraphOptions::default()).await;
    let app = Arc::new(
        spawn_app_against(&fake, |settings| {
            // 4 workers share 4 writes a second, and a row's lease (1.5 s) covers 6 write
            // slots: a worker that waited for its turn in the queue would outlive its lease,
            // and another worker would recover the row as `unknown` while its holder is still
            // about to POST it.
            settings.graph.client.write_rate_per_second = 4.0;
            settings.outbox.dispatcher_workers = 4;
        })
        .await,
    );
    let names: Vec<String> = (1..=PARTNERS)
        .map(|n| format!("Queued Partner {n:02}"))
        .collect();

    let created = create_partners(&app, &names, 8).await;
    let rows = wait_until_all_delivered(&app, PARTNERS, Duration::from_secs(60)).await;

    assert!(
        created.iter().all(|c| matches!(c.status, 201 | 202)),
        "{created:#?}"
    );
    assert_graph_holds_each_row_once(&fake, &rows);
    let stats = fake.stats();
    assert_eq!(
        stats.gets, 0,
        "no row turned unknown, so none needed a reconciliation read: {stats:?}"
    );
    assert_eq!(
        stats.posts, PARTNERS as u64,
        "one POST per partner: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partners_accepted_while_graph_is_down_are_kept_and_delivered_once_it_is_back() {
    const PARTNERS: usize = 50;
    let fake = start_fake(FakeGraphOptions {
        down: true,
        ..FakeGraphOptions::default()
    })
    .await;
    let app = Arc::new(spawn_app_against(&fake, |_| {}).await);
    let operator = app.operator_token();
    let names: Vec<String> = (1..=PARTNERS)
        .map(|n| format!("Outage Partner {n:02}"))
        .collect();

    let created = create_partners(&app, &names, 8).await;

    let statuses: Vec<u16> = created.iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![202; PARTNERS], "{created:#?}");
    // The dispatcher keeps trying while Graph is down (a row whose outcome is unknown lists
    // Graph first, and a failed list records no attempt: nothing was sent), and none is
    // delivered, dead-lettered or lost.
    let calls_after_creates = {
        let stats = fake.stats();
        stats.posts + stats.gets
    };
    wait_until(
        DRAIN_BOUND,
        "Graph called again for every row during the outage",
        || {
            let stats = fake.stats();
            let calls = stats.posts + stats.gets - calls_after_creates;
            let wanted = 3 * PARTNERS as u64;
            async move {
                if calls >= wanted {
                    Ok(())
                } else {
                    Err(format!("{calls} of {wanted} calls"))
                }
            }
        },
    )
    .await;
    let counts = admin_get(&app, &operator, "/admin/outbox/counts").await;
    assert_eq!(
        (counts["delivered"].as_u64(), counts["dead"].as_u64()),
        (Some(0), Some(0)),
        "{counts}"
    );
    let waiting = ["pending", "unknown", "in_flight"]
        .iter()
        .map(|state| counts[*state].as_u64().expect("a count"))
        .sum::<u64>();
    assert_eq!(waiting, PARTNERS as u64, "{counts}");
    assert!(fake.objects().is_empty(), "a down Graph stores nothing");

    fake.set_options(FakeGraphOptions::default());
    let back = Instant::now();
    let rows = wait_until_all_delivered(&app, PARTNERS, DRAIN_BOUND).await;
    let drain = back.elapsed();

    assert_graph_holds_each_row_once(&fake, &rows);
    let counts = admin_get(&app, &operator, "/admin/outbox/counts").await;
    assert_eq!(counts["delivered"], PARTNERS, "{counts}");
    let stats = fake.stats();
    println!(
        "outage: partners {PARTNERS}; Graph calls: {} POSTs, {} GETs, {} failures injected; \
         duplicates found {}; drain time after Graph came back {drain:?}",
        stats.posts,
        stats.gets,
        stats.failures_injected,
        fake.duplicates().len()
    );
}

#[tokio::test]
async fn a_503_create_absent_from_graph_turns_unknown_then_one_list_and_one_new_post_deliver_it() {
    let (fake, app) = slowly_settling(failing(&[503], 0.0)).await;

    let response = app.post_partner(&partner_body("Unknown Absent")).await;

    assert_eq!(response.status(), 202);
    wait_for_state(&app, "unknown").await;
    assert_eq!(
        (fake.stats().posts, fake.stats().gets),
        (1, 0),
        "a 503 POST is not resent in the call"
    );
    assert!(fake.objects().is_empty());
    fake.set_options(FakeGraphOptions::default());
    let row = wait_for_state(&app, "delivered").await;
    let stats = fake.stats();
    assert_eq!(
        (stats.posts, stats.gets, stats.filtered_gets),
        (2, 2, 1),
        "one query by name (empty, and the filter not yet seen finding anything, so checked by \
         one list of the collection) and one new POST"
    );
    assert_graph_holds_each_row_once(&fake, std::slice::from_ref(&row));
    let sync = sync_of(&app, &app.operator_token(), &row.partner_id).await;
    let history = sync["deliveries"].as_array().expect("history");
    let outcomes: Vec<_> = history
        .iter()
        .map(|a| (a["httpStatus"].clone(), a["outcome"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (json!(503), json!("unknown")),
            (json!(201), json!("created"))
        ]
    );
    assert_eq!(row.attempts, 2);
}

#[tokio::test]
async fn a_504_create_graph_applied_anyway_is_adopted_from_the_list_without_a_second_post() {
    let (fake, app) = slowly_settling(failing(&[504], 1.0)).await;

    let response = app.post_partner(&partner_body("Unknown Present")).await;

    assert_eq!(response.status(), 202);
    wait_for_state(&app, "unknown").await;
    let stored = fake.objects();
    assert_eq!(
        stored.len(),
        1,
        "the fake applied the POST before failing it"
    );
    fake.set_options(FakeGraphOptions::default());
    let row = wait_for_state(&app, "delivered").await;
    let stats = fake.stats();
    assert_eq!(
        (stats.posts, stats.gets),
        (1, 1),
        "one list, no second POST"
    );
    assert_eq!(
        row.graph_id.as_deref(),
        stored[0]["id"].as_str(),
        "Graph's id adopted"
    );
    assert_graph_holds_each_row_once(&fake, std::slice::from_ref(&row));
    let sync = sync_of(&app, &app.operator_token(), &row.partner_id).await;
    assert_eq!(sync["deliveries"][1]["outcome"], "adopted", "{sync}");
    assert_eq!(sync["graphId"], stored[0]["id"], "{sync}");
}

#[tokio::test]
async fn a_create_graph_refuses_with_400_is_answered_400_after_one_post_and_nothing_is_kept() {
    // create.rs covers the refusal against the simulated Graph; this is the real client
    // against a Graph answering 400, which must not be retried.
    let fake = start_fake(failing(&[400], 0.0)).await;
    let app = spawn_app_against(&fake, |_| {}).await;

    let response = app.post_partner(&partner_body("Refused Partner")).await;

    assert_eq!(response.status(), 400);
    let body = json_body(response).await;
    assert_eq!(body["error"]["innerError"]["code"], "BadRequest", "{body}");
    assert_eq!(fake.stats().posts, 1, "a refusal is final: one POST only");
    assert!(fake.objects().is_empty());
    assert_eq!(app.table_counts().await, ONLY_TWO_AUDIT_ENTRIES);
}

#[tokio::test]
async fn two_objects_of_one_name_in_graph_dead_letter_the_row_until_an_operator_removes_one_and_requeues()
 {
    let (fake, app) = slowly_settling(FakeGraphOptions::default()).await;
    let graph = cmp_fake_graph::http_client();
    let fake_collection = format!("{}{FAKE_COLLECTION}", fake.graph_root());
    let extra = graph
        .post(&fake_collection)
        .bearer_auth(FAKE_GRAPH_TOKEN)
        .json(&json!({ "displayName": "Twin Partner" }))
        .send()
        .await
        .expect("the fake answers");
    assert_eq!(extra.status(), 201);
    let extra_id = extra.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    fake.set_options(failing(&[503], 1.0));
    let operator = app.operator_token();

    let response = app.post_partner(&partner_body("Twin Partner")).await;

    assert_eq!(response.status(), 202);
    fake.set_options(FakeGraphOptions::default());
    let row = wait_for_state(&app, "dead").await;
    let reason = row.dead_reason.clone().expect("a dead row says why");
    assert!(reason.contains("duplicate in Graph"), "{reason}");
    assert_eq!(
        (fake.stats().posts, fake.stats().gets),
        (2, 1),
        "no POST after the list found two"
    );
    let sync = sync_of(&app, &operator, &row.partner_id).await;
    assert_eq!(sync["state"], "dead", "{sync}");
    assert!(
        sync["deadReason"]
            .as_str()
            .is_some_and(|r| r.contains("duplicate in Graph")),
        "{sync}"
    );
    assert_eq!(
        sync["deliveries"][1]["outcome"], "duplicate_in_graph",
        "{sync}"
    );

    let deleted = graph
        .delete(format!("{fake_collection}/{extra_id}"))
        .bearer_auth(FAKE_GRAPH_TOKEN)
        .send()
        .await
        .expect("the fake answers");
    assert_eq!(deleted.status(), 204);
    let requeued = app
        .post_outside_root(&operator, &format!("/admin/outbox/{}/requeue", row.id))
        .await;
    assert_eq!(requeued.status(), 200);
    let row = wait_for_state(&app, "delivered").await;

    let kept = fake.objects();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        row.graph_id.as_deref(),
        kept[0]["id"].as_str(),
        "the remaining object is adopted"
    );
    assert_eq!(
        fake.stats().posts,
        2,
        "re-queuing reconciles; it does not POST again"
    );
}

#[tokio::test]
async fn operators_see_counts_rows_by_state_and_only_with_the_operator_role() {
    let (fake, app) = slowly_settling(FakeGraphOptions::default()).await;
    let operator = app.operator_token();
    for name in ["Operator View A", "Operator View B", "Operator View C"] {
        assert_eq!(
            app.post_partner(&partner_body(name)).await.status(),
            201,
            "{name}"
        );
    }
    fake.set_options(failing(&[503], 0.0));
    let waiting = json_body(app.post_partner(&partner_body("Operator View D")).await).await;
    let waiting_id = waiting["id"].as_str().expect("id");

    let counts = admin_get(&app, &operator, "/admin/outbox/counts").await;
    let delivered = admin_get(&app, &operator, "/admin/outbox?state=delivered").await;
    let unknown = admin_get(&app, &operator, "/admin/outbox?state=unknown&limit=10").await;

    assert_eq!(
        counts,
        json!({"pending": 0, "in_flight": 0, "delivered": 3, "unknown": 1, "dead": 0})
    );
    let delivered = delivered["value"].as_array().expect("value");
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    let in_graph = fake_ids_by_name(&fake);
    for row in delivered {
        assert_eq!(row["state"], "delivered", "{row}");
        let key = row["naturalKey"].as_str().expect("naturalKey");
        assert_eq!(
            row["graphId"].as_str(),
            Some(in_graph[key][0].as_str()),
            "{row}"
        );
        assert!(
            row.get("deliveries").is_none(),
            "listings carry no history: {row}"
        );
    }
    let unknown = unknown["value"].as_array().expect("value");
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0]["partnerId"], waiting_id);
    assert_eq!(unknown[0]["lastStatus"], 503);
    let bad_state = app
        .get_outside_root(&operator, "/admin/outbox?state=zombie")
        .await;
    assert_eq!(bad_state.status(), 400);
    let not_dead = app
        .post_outside_root(
            &operator,
            &format!(
                "/admin/outbox/{}/requeue",
                unknown[0]["outboxId"].as_str().expect("outboxId")
            ),
        )
        .await;
    assert_eq!(not_dead.status(), 409, "only dead rows are re-queued");
    let missing = app
        .get_outside_root(
            &operator,
            &format!("/admin/partners/{}/sync", uuid::Uuid::new_v4()),
        )
        .await;
    assert_eq!(missing.status(), 404);
    // The Graph write permission does not open the operator endpoints.
    for path in [
        "/admin/outbox/counts".to_owned(),
        "/admin/outbox?state=dead".to_owned(),
        format!("/admin/partners/{waiting_id}/sync"),
    ] {
        let refused = app.get_outside_root(&app.token, &path).await;
        assert_eq!(refused.status(), 403, "{path}");
        assert!(
            header(&refused, "www-authenticate").contains("insufficient_scope"),
            "{path}"
        );
    }
    let refused = app
        .post_outside_root(
            &app.token,
            &format!("/admin/outbox/{}/requeue", uuid::Uuid::new_v4()),
        )
        .await;
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn an_accepted_partners_sync_state_and_attempt_history_show_on_the_first_look_after_the_202()
{
    let (fake, app) = slowly_settling(failing(&[503], 0.0)).await;
    let operator = app.operator_token();

    let response = app.post_partner(&partner_body("Accepted Partner")).await;
    let location = header(&response, "location");
    assert_eq!(response.status(), 202);
    let id = json_body(response).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let sync = sync_of(&app, &operator, &id).await;

    assert_eq!(sync["partnerId"], id.as_str());
    assert_eq!(sync["state"], "unknown", "{sync}");
    assert_eq!(
        (sync["attempts"].clone(), sync["lastStatus"].clone()),
        (json!(1), json!(503))
    );
    assert!(sync["graphId"].is_null());
    let first = &sync["deliveries"][0];
    assert_eq!(
        (
            first["attempt"].clone(),
            first["httpStatus"].clone(),
            first["outcome"].clone()
        ),
        (json!(1), json!(503), json!("unknown")),
        "{sync}"
    );
    assert_eq!(first["graphErrorCode"], "serviceNotAvailable");
    let first_request_id = first["clientRequestId"]
        .as_str()
        .expect("clientRequestId")
        .to_owned();
    assert!(
        uuid::Uuid::try_parse(&first_request_id).is_ok(),
        "{first_request_id}"
    );
    assert_eq!(sync["lastClientRequestId"], first_request_id.as_str());
    assert!(
        !first["finishedAt"].is_null() && !first["graphRequestId"].is_null(),
        "{sync}"
    );
    let followed = app
        .request(reqwest::Method::GET, &location)
        .send()
        .await
        .expect("Location resolves");
    assert_eq!(followed.status(), 200);
    assert_eq!(json_body(followed).await["id"], id.as_str());

    fake.set_options(FakeGraphOptions::default());
    wait_for_state(&app, "delivered").await;
    let sync = sync_of(&app, &operator, &id).await;
    let history = sync["deliveries"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{sync}");
    assert_eq!(
        (
            history[1]["httpStatus"].clone(),
            history[1]["outcome"].clone()
        ),
        (json!(201), json!("created"))
    );
    let second_request_id = history[1]["clientRequestId"]
        .as_str()
        .expect("clientRequestId");
    assert_ne!(
        second_request_id, first_request_id,
        "a new call gets a new client-request-id"
    );
    assert_eq!(sync["lastClientRequestId"], second_request_id);
    assert_eq!(sync["graphId"], fake.objects()[0]["id"], "{sync}");
}
