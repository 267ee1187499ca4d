//! [`FakeGraph`] driven over loopback HTTP with reqwest, the way the service's Graph client
//! talks to it: Graph's behaviour, the injected failures, the inspection API, and the
//! standalone binary. Nothing sleeps and no option adds latency.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cmp_fake_graph::{FakeGraph, FakeGraphOptions, FakeGraphStats, WriteThrottle};
use reqwest::{Client, Response};
use serde_json::{Value, json};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const COLLECTION: &str = "/deviceManagement/complianceManagementPartners";

/// A fake and one client for it: building a client loads the TLS roots, so tests reuse one.
struct Harness {
    fake: FakeGraph,
    client: Client,
}

impl Harness {
    async fn start(options: FakeGraphOptions) -> Self {
        let fake = FakeGraph::start(options).await.expect("fake Graph starts");
        Self {
            fake,
            client: cmp_fake_graph::http_client(),
        }
    }

    fn collection(&self) -> String {
        format!("{}{COLLECTION}", self.fake.graph_root())
    }

    fn token_url(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/token", self.fake.authority())
    }

    async fn create(&self, body: Value) -> Response {
        let request = self
            .client
            .post(self.collection())
            .bearer_auth("fake-token")
            .json(&body);
        request.send().await.expect("POST is answered")
    }

    async fn get(&self, url: &str) -> Response {
        let request = self.client.get(url).bearer_auth("fake-token");
        request.send().await.expect("GET is answered")
    }
}

async fn body(response: Response) -> Value {
    response.json().await.expect("JSON body")
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

#[tokio::test]
async fn healthy_fake_round_trips_create_list_get_patch_and_delete() {
    let h = Harness::start(FakeGraphOptions::default()).await;

    let token = h
        .client
        .post(h.token_url())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
    let created = h
        .create(json!({"displayName": "Partner A", "partnerState": "enabled"}))
        .await;

    let token = token.expect("token answered");
    assert_eq!(token.status(), 200);
    assert_eq!(
        body(token).await,
        json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "fake-token"})
    );
    assert_eq!(created.status(), 201);
    assert!(header(&created, "request-id").is_some());
    let created = body(created).await;
    let id = created["id"]
        .as_str()
        .expect("Graph assigns an id")
        .to_owned();
    assert_eq!(created["displayName"], "Partner A");
    let context = "/$metadata#deviceManagement/complianceManagementPartners/$entity";
    assert_eq!(
        created["@odata.context"],
        format!("{}{context}", h.fake.graph_root())
    );
    let item = format!("{}/{id}", h.collection());

    let listed = body(h.get(&h.collection()).await).await;
    let expected = json!([{"id": id, "displayName": "Partner A", "partnerState": "enabled"}]);
    assert_eq!(listed["value"], expected);
    assert!(listed.get("@odata.nextLink").is_none());
    assert_eq!(body(h.get(&item).await).await["partnerState"], "enabled");

    let patch = h
        .client
        .patch(&item)
        .bearer_auth("fake-token")
        .json(&json!({"partnerState": "unavailable"}));
    let patched = patch.send().await.expect("PATCH answered");
    assert_eq!(patched.status(), 200);
    assert_eq!(body(patched).await["partnerState"], "unavailable");
    assert_eq!(h.fake.objects()[0]["partnerState"], "unavailable");

    let deleted = h
        .client
        .delete(&item)
        .bearer_auth("fake-token")
        .send()
        .await
        .expect("DELETE answered");
    assert_eq!(deleted.status(), 204);
    let missing = h.get(&item).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(body(missing).await["error"]["code"], "ResourceNotFound");
    assert!(h.fake.objects().is_empty());
    let expected = FakeGraphStats {
        token_requests: 1,
        posts: 1,
        posts_applied: 1,
        gets: 3,
        patches: 1,
        deletes: 1,
        failures_injected: 0,
        ..FakeGraphStats::default()
    };
    assert_eq!(h.fake.stats(), expected);
}

#[tokio::test]
async fn list_of_250_objects_pages_by_100_and_following_next_links_returns_each_once() {
    let h = Harness::start(FakeGraphOptions::default()).await;
    for n in 0..250 {
        assert_eq!(
            h.create(json!({"displayName": format!("P{n}")}))
                .await
                .status(),
            201
        );
    }

    let mut names = Vec::new();
    let mut page_sizes = Vec::new();
    let mut next = Some(h.collection());
    while let Some(url) = next.take() {
        let page = body(h.get(&url).await).await;
        let value = page["value"].as_array().expect("value array");
        page_sizes.push(value.len());
        names.extend(
            value
                .iter()
                .map(|object| object["displayName"].as_str().expect("name").to_owned()),
        );
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
        if let Some(link) = &next {
            assert!(link.starts_with(&h.collection()), "absolute link: {link}");
            assert!(link.contains("$skiptoken="), "{link}");
        }
    }

    assert_eq!(page_sizes, [100, 100, 50]);
    let expected: Vec<String> = (0..250).map(|n| format!("P{n}")).collect();
    assert_eq!(names, expected, "every object once, in insertion order");
}

#[tokio::test]
async fn injected_503_on_post_can_store_the_object_before_answering() {
    let h = Harness::start(FakeGraphOptions {
        failure_rate: 1.0,
        failure_statuses: vec![503],
        applied_before_failure_rate: 1.0,
        retry_after: "2.128".to_owned(),
        ..FakeGraphOptions::default()
    })
    .await;

    let response = h.create(json!({"displayName": "Unknown outcome"})).await;

    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after"), Some("2.128"));
    let error = body(response).await;
    assert_eq!(error["error"]["code"], "serviceNotAvailable");
    assert!(error["error"]["innerError"]["request-id"].is_string());
    let objects = h.fake.objects();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["displayName"], "Unknown outcome");
    let stats = h.fake.stats();
    assert_eq!(
        (stats.posts, stats.posts_applied, stats.failures_injected),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn down_fake_answers_503_and_stores_nothing_while_tokens_still_work() {
    let h = Harness::start(FakeGraphOptions {
        down: true,
        applied_before_failure_rate: 1.0,
        ..FakeGraphOptions::default()
    })
    .await;

    let posted = h.create(json!({"displayName": "A"})).await;
    let listed = h.get(&h.collection()).await;
    let token = h
        .client
        .post(h.token_url())
        .send()
        .await
        .expect("token answered");

    assert_eq!(posted.status(), 503);
    assert_eq!(header(&posted, "retry-after"), Some("0.05"));
    assert_eq!(listed.status(), 503);
    assert_eq!(token.status(), 200);
    assert!(h.fake.objects().is_empty());
    let stats = h.fake.stats();
    assert_eq!(
        (
            stats.posts_applied,
            stats.failures_injected,
            stats.token_requests
        ),
        (0, 2, 1)
    );
}

#[tokio::test]
async fn graph_calls_without_the_fake_token_get_401() {
    let h = Harness::start(FakeGraphOptions::default()).await;

    let anonymous = h.client.get(h.collection()).send().await.expect("answered");
    let wrong = h
        .client
        .post(h.collection())
        .bearer_auth("other-token")
        .json(&json!({"displayName": "A"}));
    let wrong = wrong.send().await.expect("answered");

    for response in [anonymous, wrong] {
        assert_eq!(response.status(), 401);
        let challenge = header(&response, "www-authenticate");
        assert!(
            challenge.is_some_and(|value| value.starts_with("Bearer")),
            "{challenge:?}"
        );
        assert_eq!(
            body(response).await["error"]["code"],
            "InvalidAuthenticationToken"
        );
    }
    assert!(h.fake.objects().is_empty());
}

#[tokio::test]
async fn duplicates_finds_display_names_equal_after_trimming_and_lower_casing() {
    let h = Harness::start(FakeGraphOptions::default()).await;

    for name in ["A", " a ", "B"] {
        assert_eq!(h.create(json!({"displayName": name})).await.status(), 201);
    }

    assert_eq!(h.fake.duplicates(), [("a".to_owned(), 2)]);
    assert_eq!(h.fake.count_by_display_name()["b"], 1);
}

#[tokio::test]
async fn options_endpoint_changes_behaviour_at_run_time() {
    let h = Harness::start(FakeGraphOptions {
        down: true,
        ..FakeGraphOptions::default()
    })
    .await;
    assert_eq!(h.create(json!({"displayName": "A"})).await.status(), 503);

    let changed = h
        .client
        .post(format!("{}/_fake/options", h.fake.uri()))
        .json(&json!({"down": false}));
    let changed = changed.send().await.expect("answered");
    let created = h.create(json!({"displayName": "A"})).await;

    assert_eq!(changed.status(), 200);
    assert_eq!(h.fake.options(), FakeGraphOptions::default());
    assert_eq!(created.status(), 201);
    let objects = body(h.get(&format!("{}/_fake/objects", h.fake.uri())).await).await;
    assert_eq!(objects.as_array().map(Vec::len), Some(1));
    let stats = h.get(&format!("{}/_fake/stats", h.fake.uri())).await;
    let stats: FakeGraphStats = stats.json().await.expect("stats");
    assert_eq!(
        (stats.posts, stats.posts_applied, stats.failures_injected),
        (2, 1, 1)
    );
}

/// Kills the child process even when an assertion fails first.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn standalone_binary_prints_its_listening_line_and_serves_stats() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cmp-fake-graph"))
        .args(["--port", "0", "--failure-rate", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let _child = Killed(child);

    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let uri = line
        .trim()
        .strip_prefix("LISTENING ")
        .expect("LISTENING line")
        .to_owned();
    let stats = cmp_fake_graph::http_client()
        .get(format!("{uri}/_fake/stats"))
        .send()
        .await
        .expect("answered");

    assert!(uri.starts_with("http://127.0.0.1:"), "{uri}");
    assert_eq!(stats.status(), 200);
    assert_eq!(
        stats.json::<FakeGraphStats>().await.expect("stats"),
        FakeGraphStats::default()
    );
}

#[tokio::test]
async fn a_held_create_is_counted_but_neither_applied_nor_answered_until_released() {
    let harness = std::sync::Arc::new(Harness::start(FakeGraphOptions::default()).await);
    harness.fake.hold_creates();
    let creating = tokio::spawn({
        let harness = std::sync::Arc::clone(&harness);
        async move { harness.create(json!({"displayName": "Held"})).await }
    });
    // The single-threaded test runtime runs the server while this task yields.
    while harness.fake.stats().posts == 0 {
        tokio::task::yield_now().await;
    }

    assert!(harness.fake.objects().is_empty());
    assert!(!creating.is_finished());

    harness.fake.release_creates();
    let response = creating.await.expect("the create task ends");
    assert_eq!(response.status(), 201);
    assert_eq!(harness.fake.objects().len(), 1);
}

#[tokio::test]
async fn writes_beyond_the_throttle_get_429_and_calls_inside_its_retry_after_are_counted() {
    // A window far longer than the test: the third write is throttled, whatever the timing.
    let h = Harness::start(FakeGraphOptions {
        write_throttle: Some(WriteThrottle {
            writes: 2,
            window_ms: 600_000,
        }),
        ..FakeGraphOptions::default()
    })
    .await;

    for name in ["one", "two"] {
        assert_eq!(h.create(json!({"displayName": name})).await.status(), 201);
    }
    assert_eq!(h.fake.stats().inside_retry_after, 0);
    let throttled = h.create(json!({"displayName": "three"})).await;
    assert_eq!(throttled.status(), 429);
    let retry_after: f64 = header(&throttled, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(
        retry_after > 500.0,
        "the window's room comes back only when the first write ages out: {retry_after}"
    );
    let read = h.get(&h.collection()).await;
    assert_eq!(read.status(), 200);

    let stats = h.fake.stats();
    assert_eq!(
        (stats.posts, stats.posts_applied, stats.throttled),
        (3, 2, 1)
    );
    assert_eq!(
        stats.inside_retry_after, 1,
        "the GET came inside the Retry-After"
    );
    assert_eq!(
        h.fake.busiest_write_window(Duration::from_secs(600)),
        3,
        "every write that arrived counts in the busiest window, the throttled one too"
    );
}

#[tokio::test]
async fn a_display_name_filter_answers_the_named_objects_unless_the_fake_ignores_filters() {
    let h = Harness::start(FakeGraphOptions {
        page_size: 2,
        ..FakeGraphOptions::default()
    })
    .await;
    for name in ["Contoso", "Fabrikam", "O'Neil", "contoso"] {
        assert_eq!(h.create(json!({"displayName": name})).await.status(), 201);
    }
    let names = |page: &Value| -> Vec<String> {
        page["value"]
            .as_array()
            .expect("value")
            .iter()
            .map(|object| object["displayName"].as_str().expect("name").to_owned())
            .collect()
    };
    let filtered = |literal: &str| format!("{}?$filter=displayName eq '{literal}'", h.collection());

    let contoso = body(h.get(&filtered("CONTOSO")).await).await;
    assert_eq!(names(&contoso), ["Contoso", "contoso"]);
    assert!(contoso.get("@odata.nextLink").is_none());
    let quoted = body(h.get(&filtered("O''Neil")).await).await;
    assert_eq!(names(&quoted), ["O'Neil"]);

    h.fake.set_options(FakeGraphOptions {
        page_size: 2,
        filter_ignored: true,
        ..FakeGraphOptions::default()
    });
    let ignored = body(h.get(&filtered("Fabrikam")).await).await;
    assert_eq!(
        names(&ignored),
        ["Contoso", "Fabrikam"],
        "the first page, unfiltered"
    );
    assert!(ignored.get("@odata.nextLink").is_some());
    assert_eq!(h.fake.stats().filtered_gets, 3);
}
