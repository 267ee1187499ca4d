//! Limits under abuse, with bounded bursts on 127.0.0.1: the per-caller write rate (429), load
//! shedding (503), and the header and body read timeouts.
//!
//! Nothing here waits on the clock to synchronise: the write rate is set so low that no token
//! refills during a test, slots are observed by polling with a bounded number of attempts,
//! and the 10 s bounds are hang guards, never timing assertions.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    COLLECTION, SEED_REQUEST, TestApp, header, json_body, mint_as, spawn_app_with,
};

/// Upper bound on anything that could otherwise hang a test; never reached when the service
/// behaves.
const HANG_GUARD: Duration = Duration::from_secs(10);

/// Attempts of a polling loop before it gives up.
const MAX_POLLS: usize = 500;

/// An id no partner has.
const UNKNOWN_ID: &str = "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11";

/// A second caller of the same tenant.
const OTHER_OBJECT_ID: &str = "a7c3e9f1-2b4d-4f6a-8c0e-1d3f5a7b9c2e";

/// The Graph error body of `response`, after checking that it names the `request-id` the
/// response carries; `case` says which request failed the check.
async fn error_naming_its_request(response: reqwest::Response, case: &str) -> Value {
    let request_id = header(&response, "request-id");
    let body = json_body(response).await;
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        Value::String(request_id),
        "{case}"
    );
    body
}

#[tokio::test]
async fn writes_beyond_a_callers_burst_get_429_while_other_callers_and_reads_pass() {
    let app = spawn_app_with(|s| {
        s.http.writes_per_caller_per_second = 0.001;
        s.http.write_burst = 3;
    })
    .await;
    let other_caller = mint_as(
        &app.settings,
        &["DeviceManagementServiceConfig.ReadWrite.All"],
        OTHER_OBJECT_ID,
    );

    let mut responses = Vec::new();
    for n in 1..=5 {
        let body = json!({"displayName": format!("Rate limited partner {n}")});
        responses.push(app.post_partner(&body.to_string()).await);
    }

    let mut created_ids = Vec::new();
    for (index, response) in responses.into_iter().enumerate() {
        let attempt = index + 1;
        if attempt <= 3 {
            assert_eq!(response.status(), 201, "write {attempt}");
            let body = json_body(response).await;
            created_ids.push(body["id"].as_str().expect("id").to_owned());
        } else {
            assert_eq!(response.status(), 429, "write {attempt}");
            let retry_after = header(&response, "retry-after");
            let seconds: u64 = retry_after.parse().unwrap_or_else(|_| {
                panic!("write {attempt}: Retry-After {retry_after:?} is whole seconds")
            });
            assert!(seconds >= 1, "write {attempt}: Retry-After {seconds}");
            let body = error_naming_its_request(response, &format!("write {attempt}")).await;
            assert_eq!(
                body["error"]["code"], "activityLimitReached",
                "write {attempt}"
            );
        }
    }
    assert_eq!(
        app.count_rows("partners").await,
        3,
        "a refused write commits nothing"
    );
    let other = app
        .post_partner_as(
            &other_caller,
            &json!({"displayName": "Another caller's partner"}).to_string(),
        )
        .await;
    assert_eq!(other.status(), 201, "buckets are per caller");
    for id in &created_ids {
        assert_eq!(
            app.get_partner(id).await.status(),
            200,
            "reads are not limited"
        );
    }
    assert_eq!(app.count_rows("partners").await, 4);
}

#[tokio::test]
async fn requests_over_the_concurrency_cap_are_shed_with_503_until_a_slot_frees_up() {
    let app = spawn_app_with(|s| {
        s.http.max_concurrent_requests = 2;
        s.http.body_read_timeout_ms = 120_000;
        s.http.request_timeout_ms = 120_000;
    })
    .await;
    cmp_fake_graph::install_tls_provider();
    let client = reqwest::Client::builder()
        .timeout(HANG_GUARD)
        .build()
        .expect("client");
    let item = format!("{}/{UNKNOWN_ID}", app.collection_url());
    let get = |client: &reqwest::Client| client.get(&item).bearer_auth(&app.token).send();

    let first = start_stalled_post(&app).await;
    let second = start_stalled_post(&app).await;
    let mut shed = None;
    for _ in 0..MAX_POLLS {
        let response = get(&client).await.expect("GET is answered");
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            shed = Some(response);
            break;
        }
        tokio::task::yield_now().await;
    }
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..20 {
        let client = client.clone();
        let request = client
            .get(&item)
            .bearer_auth(&app.token)
            .header("client-request-id", format!("burst-{n}"));
        burst.spawn(async move { (n, request.send().await.expect("GET is answered")) });
    }
    let answers = burst.join_all().await;
    let shed_create = app
        .request(reqwest::Method::POST, &app.collection_url())
        .header("Content-Type", "application/json")
        .header("client-request-id", "burst-20")
        .body(SEED_REQUEST)
        .send()
        .await
        .expect("POST is answered");

    assert!(
        shed.is_some(),
        "the two stalled POSTs never filled both slots"
    );
    assert_eq!(answers.len(), 20);
    for (n, response) in answers.into_iter().chain([(20, shed_create)]) {
        assert_eq!(response.status(), 503, "burst request {n}");
        assert_eq!(header(&response, "retry-after"), "1", "burst request {n}");
        let body = error_naming_its_request(response, &format!("burst request {n}")).await;
        assert_eq!(
            body["error"]["code"], "serviceNotAvailable",
            "burst request {n}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "burst request {n}"
        );
        assert_eq!(
            body["error"]["innerError"]["client-request-id"],
            format!("burst-{n}"),
            "burst request {n}"
        );
    }

    // The slots free up once the stalled clients go away.
    drop(first);
    drop(second);
    let mut served = None;
    for _ in 0..MAX_POLLS {
        let response = get(&client).await.expect("GET is answered");
        if response.status() != StatusCode::SERVICE_UNAVAILABLE {
            served = Some(response.status());
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        matches!(served, Some(StatusCode::OK | StatusCode::NOT_FOUND)),
        "after the stalled POSTs went away a GET got {served:?}"
    );
    for (table, rows) in app.table_counts().await {
        assert_eq!(
            rows, 0,
            "table {table}: shed and stalled requests write nothing"
        );
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = spawn_app_with(|s| s.http.header_read_timeout_ms = 200).await;
    let mut stream = TcpStream::connect(app.socket_address())
        .await
        .expect("connects");
    stream
        .write_all(format!("POST /beta{COLLECTION} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .await
        .expect("the first header lines are sent");

    let closed = tokio::time::timeout(HANG_GUARD, read_until_closed(&mut stream)).await;

    assert!(
        closed.is_ok(),
        "the connection is still open after the hang guard"
    );
    assert_eq!(
        app.get_partner(UNKNOWN_ID).await.status(),
        404,
        "the service still serves other clients"
    );
}

#[tokio::test]
async fn a_body_that_never_arrives_in_full_gets_408_and_writes_nothing() {
    let app = spawn_app_with(|s| s.http.body_read_timeout_ms = 200).await;
    let mut stream = start_stalled_post(&app).await;

    let response = tokio::time::timeout(HANG_GUARD, read_response(&mut stream))
        .await
        .expect("the service answers before the hang guard");

    assert_eq!(response.status, 408, "{response:?}");
    let body: Value = serde_json::from_slice(&response.body).expect("the body is JSON");
    assert_eq!(body["error"]["code"], "RequestTimeout", "{body}");
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        Value::String(response.header("request-id")),
        "{body}"
    );
    for (table, rows) in app.table_counts().await {
        assert_eq!(
            rows, 0,
            "table {table}: a body that never came writes nothing"
        );
    }
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_gets_400_at_once_and_writes_nothing() {
    // A body timeout far beyond the hang guard: only the end of the stream can end the wait.
    let app = spawn_app_with(|s| s.http.body_read_timeout_ms = 600_000).await;
    let mut stream = start_stalled_post(&app).await;
    stream
        .shutdown()
        .await
        .expect("the client closes its side early");

    let response = tokio::time::timeout(HANG_GUARD, read_response(&mut stream))
        .await
        .expect("the service answers before the hang guard");

    assert_bad_request_in_graph_shape(&response);
    for (table, rows) in app.table_counts().await {
        assert_eq!(rows, 0, "table {table}: a truncated body writes nothing");
    }
}

#[tokio::test]
async fn a_malformed_chunked_body_gets_400_and_writes_nothing() {
    let app = spawn_app_with(|s| s.http.body_read_timeout_ms = 600_000).await;
    let mut stream = TcpStream::connect(app.socket_address())
        .await
        .expect("connects");
    let request = format!(
        "POST /beta{COLLECTION} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\n{{\"dis\r\nzz\r\nplayName\r\n",
        app.socket_address(),
        app.token
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("the request is sent");

    let response = tokio::time::timeout(HANG_GUARD, read_response(&mut stream))
        .await
        .expect("the service answers before the hang guard");

    assert_bad_request_in_graph_shape(&response);
    for (table, rows) in app.table_counts().await {
        assert_eq!(rows, 0, "table {table}: a malformed body writes nothing");
    }
}

/// A 400 `BadRequest` in Graph's error shape whose request id is the header's.
fn assert_bad_request_in_graph_shape(response: &RawResponse) {
    assert_eq!(response.status, 400, "{response:?}");
    assert!(
        response
            .header("content-type")
            .starts_with("application/json"),
        "{response:?}"
    );
    let body: Value = serde_json::from_slice(&response.body).expect("the body is JSON");
    assert_eq!(body["error"]["code"], "BadRequest", "{body}");
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        Value::String(response.header("request-id")),
        "{body}"
    );
}

/// Opens a raw connection and sends an authorized create with `Content-Length: 100` but only
/// the first bytes of its body, so the request stays in flight waiting for the rest.
async fn start_stalled_post(app: &TestApp) -> TcpStream {
    let mut stream = TcpStream::connect(app.socket_address())
        .await
        .expect("connects");
    let head = format!(
        "POST /beta{COLLECTION} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"displayName\": \"Sta",
        app.socket_address(),
        app.token
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("the headers and part of the body are sent");
    stream
}

/// Reads until the peer closes the connection (end of stream or a reset).
async fn read_until_closed(stream: &mut TcpStream) {
    let mut buffer = [0u8; 1024];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
    }
}

/// An HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    /// The value of header `name` (lower case), or "".
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    }
}

/// Reads one response: the head, then `Content-Length` bytes of body, or everything up to the
/// end of the stream when there is no length.
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(position) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break position + 4;
        }
        let read = stream.read(&mut buffer).await.expect("the response reads");
        assert!(read > 0, "the connection closed before a response head");
        received.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8(received[..head_end].to_vec()).expect("the head is text");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = received[head_end..].to_vec();
    let length = headers
        .iter()
        .find(|(key, _)| key == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok());
    loop {
        if length.is_some_and(|length| body.len() >= length) {
            break;
        }
        let read = stream.read(&mut buffer).await.expect("the body reads");
        if read == 0 {
            break;
        }
        body.extend_from_slice(&buffer[..read]);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}
