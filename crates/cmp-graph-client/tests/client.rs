//! [`HttpGraphClient`] against a fake Graph (wiremock on 127.0.0.1): the request shape, each
//! outcome class, the in-call retries, paging, redirects, write spacing, pre-seeded adoption
//! and the wiring. Nothing sleeps: the recording sleeper returns at once, notes the requested
//! wait and moves the test clock; only the timeout test waits for real.

#[path = "client/support.rs"]
mod support;

use std::time::{Duration, UNIX_EPOCH};

use cmp_application::{
    Budget, Clock, CreateOutcome, GraphGateway, GraphReadError, Pacer, RemotePartner, WriteOutcome,
};
use cmp_graph_client::TokenError;
use cmp_graph_client::client::USER_AGENT;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{body_json, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, ResponseTemplate};

use support::{
    COLLECTION, FakeGraph, Harness, TENANT, TOKEN, created, graph_error, header, partner,
    partner_named, rendered, t0,
};

const MS: Duration = Duration::from_millis(1);

/// A 201 with Graph's new id for the test partner.
fn created_response(graph_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(201)
        .insert_header("request-id", "graph-request-1")
        .set_body_json(created(&partner(), graph_id))
}

/// The outcome of a create Graph answered with `graph_id`.
fn created_as(graph_id: &str) -> CreateOutcome {
    CreateOutcome::Created {
        graph_id: graph_id.into(),
    }
}

/// What a read of the test partner stored under `graph_id` gives.
fn read_as(graph_id: &str) -> RemotePartner {
    RemotePartner {
        graph_id: graph_id.into(),
        display_name: Some("Contoso Compliance".into()),
    }
}

/// A 200 with the test partner under `graph_id`, as a GET answers.
fn found(graph_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(created(&partner(), graph_id))
}

fn throttled(retry_after: Option<&str>) -> ResponseTemplate {
    let template = ResponseTemplate::new(429).set_body_json(graph_error(
        "TooManyRequests",
        "Too many requests from this tenant",
    ));
    match retry_after {
        Some(value) => template.insert_header("Retry-After", value),
        None => template,
    }
}

/// A Graph error answer with `status`.
fn refusal(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(graph_error(code, message))
}

/// Graph's 404 for an id it does not hold.
fn not_found() -> ResponseTemplate {
    refusal(404, "ResourceNotFound", "gone")
}

fn item_path(graph_id: &str) -> String {
    format!("{COLLECTION}/{graph_id}")
}

fn page(items: serde_json::Value, next_link: Option<&str>) -> ResponseTemplate {
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/beta/$metadata#deviceManagement/complianceManagementPartners",
        "value": items,
    });
    if let Some(link) = next_link {
        body["@odata.nextLink"] = json!(link);
    }
    ResponseTemplate::new(200).set_body_json(body)
}

/// What a request went out with: method, then `client-request-id` and `Retry-Attempt`.
fn correlation(request: &wiremock::Request) -> (String, Option<&str>, Option<&str>) {
    (
        request.method.to_string(),
        header(request, "client-request-id"),
        header(request, "retry-attempt"),
    )
}

/// Asserts that `graph` received exactly two POSTs, both under `client_request_id`, the
/// second numbered as the first resend.
async fn assert_one_resent_post(graph: &FakeGraph, client_request_id: Uuid) {
    let requests = graph.received().await;
    let id = client_request_id.to_string();
    assert_eq!(
        requests.iter().map(correlation).collect::<Vec<_>>(),
        vec![
            ("POST".to_owned(), Some(id.as_str()), None),
            ("POST".to_owned(), Some(id.as_str()), Some("1")),
        ],
        "exactly two POSTs, the same id on both, the resend numbered"
    );
}

// Request shape

#[tokio::test]
async fn a_create_posts_the_rendered_partner_with_every_required_header() {
    let graph = FakeGraph::start().await;
    graph.answer_creates(created_response("graph-id-1")).await;
    let harness = graph.harness();
    let client_request_id = Uuid::new_v4();

    let result = harness.create_under(client_request_id).await;

    assert_eq!(result.outcome, created_as("graph-id-1"));
    assert_eq!(result.meta.status, Some(201));
    assert_eq!(result.meta.request_id.as_deref(), Some("graph-request-1"));
    let requests = graph.received().await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), COLLECTION);
    assert_eq!(request.url.query(), None, "no query options are added");
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(header(request, "authorization"), Some(bearer.as_str()));
    assert_eq!(header(request, "accept"), Some("application/json"));
    assert_eq!(header(request, "content-type"), Some("application/json"));
    let expected_id = client_request_id.to_string();
    assert_eq!(
        header(request, "client-request-id"),
        Some(expected_id.as_str())
    );
    assert_eq!(header(request, "user-agent"), Some(USER_AGENT));
    assert!(USER_AGENT.starts_with("cmp-onboarding/"));
    assert_eq!(header(request, "retry-attempt"), None, "first request");
    assert_eq!(header(request, "sdkversion"), None);
    assert_eq!(header(request, "content-encoding"), None, "never gzipped");
    assert_eq!(
        request.body_json::<serde_json::Value>().expect("JSON body"),
        rendered(&partner())
    );
    assert_eq!(harness.tokens.calls(), vec![None]);
}

#[tokio::test]
async fn a_get_percent_encodes_the_id_and_reads_id_and_display_name() {
    let graph = FakeGraph::start().await;
    graph
        .answer("GET", item_path("a%2Fb%20c"), found("a/b c"))
        .await;
    let harness = graph.harness();

    let result = harness.client.get_partner("a/b c").await;

    assert_eq!(result, Ok(Some(read_as("a/b c"))));
    let requests = graph.received().await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(header(request, "authorization"), Some(bearer.as_str()));
    assert_eq!(header(request, "accept"), Some("application/json"));
    assert_eq!(header(request, "content-type"), None, "no body, no type");
    assert!(
        header(request, "client-request-id").is_some_and(|id| Uuid::try_parse(id).is_ok()),
        "a fresh UUID per read"
    );
    assert_eq!(header(request, "user-agent"), Some(USER_AGENT));
}

// Throttling and Retry-After

#[tokio::test]
async fn a_429_on_a_create_ends_the_call_after_one_post_and_pauses_the_tenant_in_the_pacer() {
    let graph = FakeGraph::start().await;
    graph.answer_creates(throttled(Some("2"))).await;
    let harness = graph.harness();

    let result = harness.create().await;

    assert_eq!(
        result.outcome,
        CreateOutcome::NotApplied {
            retry_after: Some(Duration::from_secs(2))
        },
        "a POST is not resent within the call: the outbox resends it after Retry-After"
    );
    assert_eq!(graph.received().await.len(), 1);
    assert!(harness.sleeper.slept().is_empty());
    let state = harness.pacer.state().await.expect("the pacer answers");
    assert_eq!(
        state.paused_until,
        Some(t0().saturating_add(Duration::from_secs(2)))
    );
}

#[tokio::test]
async fn the_wait_before_a_read_is_resent_follows_retry_after_or_backs_off_without_it() {
    let in_seven_seconds = httpdate::fmt_http_date(
        UNIX_EPOCH
            + Duration::from_secs(u64::try_from(t0().unix_seconds()).expect("after 1970") + 7),
    );
    let cases: [(&str, Option<&str>, Duration, Duration); 4] = [
        ("fractional seconds", Some("2.128"), 2_128 * MS, 2_128 * MS),
        (
            "fraction below a millisecond",
            Some("1.0001"),
            1_001 * MS,
            1_001 * MS,
        ),
        ("HTTP-date", Some(&in_seven_seconds), 7_000 * MS, 7_000 * MS),
        ("no header", None, 3_000 * MS, 4_000 * MS),
    ];
    for (case, retry_after, least, most) in cases {
        let graph = FakeGraph::start().await;
        graph
            .answer_times("GET", item_path("graph-id"), throttled(retry_after), 1)
            .await;
        graph
            .answer("GET", item_path("graph-id"), found("graph-id"))
            .await;
        let harness = graph.harness();

        let result = harness.client.get_partner("graph-id").await;

        assert!(matches!(result, Ok(Some(_))), "{case}: {result:?}");
        let slept = harness.sleeper.slept();
        assert_eq!(slept.len(), 1, "{case}: {slept:?}");
        assert!(
            (least..=most).contains(&slept[0]),
            "{case}: waited {:?}, expected {least:?}..={most:?}",
            slept[0]
        );
        assert_eq!(graph.received().await.len(), 2, "{case}");
    }
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_ends_a_read_after_one_get_and_pauses_the_tenant() {
    let graph = FakeGraph::start().await;
    graph
        .answer("GET", item_path("graph-id"), throttled(Some("300")))
        .await;
    let harness = graph.harness();

    let read = harness.client.get_partner("graph-id").await;

    assert!(
        matches!(read, Err(GraphReadError::Transient(_))),
        "{read:?}"
    );
    assert_eq!(graph.methods().await, ["GET"], "one GET, nothing after it");
    assert!(harness.sleeper.slept().is_empty());
    let state = harness.pacer.state().await.expect("the pacer answers");
    assert_eq!(
        state.paused_until,
        Some(t0().saturating_add(Duration::from_secs(300)))
    );
}

#[tokio::test]
async fn a_429_holds_back_the_clients_own_resends_until_its_retry_after_moment() {
    let graph = FakeGraph::start().await;
    graph.answer_creates(throttled(Some("60"))).await;
    graph
        .answer_times("GET", item_path("graph-id"), ResponseTemplate::new(503), 1)
        .await;
    graph
        .answer("GET", item_path("graph-id"), found("graph-id"))
        .await;
    let harness = graph.harness_with(|s| s.max_retries = 1);

    let create = harness.create().await;
    let read = harness.client.get_partner("graph-id").await;

    assert_eq!(
        create.outcome,
        CreateOutcome::NotApplied {
            retry_after: Some(Duration::from_secs(60))
        }
    );
    assert!(matches!(read, Ok(Some(_))), "{read:?}");
    assert_eq!(
        harness.clock.now(),
        t0().saturating_add(Duration::from_secs(60)),
        "the read's resend went out at the Retry-After moment, not after its own back-off"
    );
    assert_eq!(graph.methods().await, ["POST", "GET", "GET"]);
}

// Unknown outcomes: never a second POST

#[tokio::test]
async fn server_errors_on_a_create_are_unknown_after_exactly_one_post() {
    for status in [500u16, 502, 503, 504, 507, 509] {
        let graph = FakeGraph::start().await;
        graph
            .answer_creates(
                refusal(status, "serviceNotAvailable", "try later")
                    .insert_header("Retry-After", "1")
                    .insert_header("request-id", "graph-request-5xx"),
            )
            .await;
        let harness = graph.harness();

        let result = harness.create().await;

        assert_eq!(result.outcome, CreateOutcome::Unknown, "{status}");
        assert_eq!(result.meta.status, Some(status), "{status}");
        assert_eq!(
            result.meta.error_code.as_deref(),
            Some("serviceNotAvailable"),
            "{status}"
        );
        assert_eq!(
            result.meta.request_id.as_deref(),
            Some("graph-request-5xx"),
            "{status}"
        );
        assert_eq!(graph.received().await.len(), 1, "{status}: one POST only");
        assert!(harness.sleeper.slept().is_empty(), "{status}");
    }
}

#[tokio::test]
async fn a_create_answer_delayed_past_the_request_timeout_is_unknown_after_one_post() {
    let graph = FakeGraph::start().await;
    graph
        .answer_creates(created_response("late-id").set_delay(Duration::from_secs(3)))
        .await;
    let harness = graph.harness_with(|s| s.request_timeout_ms = 200);

    let result = harness.create().await;

    assert_eq!(result.outcome, CreateOutcome::Unknown);
    assert_eq!(result.meta.status, None);
    assert!(
        result
            .meta
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("timed out")),
        "{:?}",
        result.meta
    );
    assert_eq!(graph.received().await.len(), 1);
    assert!(harness.sleeper.slept().is_empty());
}

#[tokio::test]
async fn a_create_answered_2xx_without_an_id_is_unknown() {
    for (case, response) in [
        ("empty body", ResponseTemplate::new(201)),
        (
            "no id",
            ResponseTemplate::new(201).set_body_json(rendered(&partner())),
        ),
        (
            "not JSON",
            ResponseTemplate::new(200).set_body_string("<html>ok</html>"),
        ),
    ] {
        let graph = FakeGraph::start().await;
        graph.answer_creates(response).await;
        let harness = graph.harness();

        let result = harness.create().await;

        assert_eq!(result.outcome, CreateOutcome::Unknown, "{case}");
        assert_eq!(graph.received().await.len(), 1, "{case}");
    }
}

// Not applied: the request never left

#[tokio::test]
async fn a_refused_connection_is_not_applied_and_left_to_the_outbox() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let harness = Harness::new(&format!("http://127.0.0.1:{closed_port}"), |_| {});

    let result = harness.create().await;

    assert_eq!(
        result.outcome,
        CreateOutcome::NotApplied { retry_after: None }
    );
    assert_eq!(result.meta.status, None);
    assert!(
        result
            .meta
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("connection failed")),
        "{:?}",
        result.meta
    );
    assert!(
        harness.sleeper.slept().is_empty(),
        "a POST is never resent within the call: the outbox resends it"
    );
}

// Permanent refusals and auth

#[tokio::test]
async fn refusals_of_a_create_end_after_one_request_and_keep_graphs_error_code() {
    let nested = json!({"error": {
        "code": "BadRequest",
        "message": "Invalid partner",
        "innerError": {
            "code": "invalidPartnerState",
            "request-id": "r",
            "innerError": {"code": "partnerStateNotSupported"}
        }
    }});
    let cases = [
        (
            400,
            graph_error("BadRequest", "bad enum"),
            CreateOutcome::Rejected,
            "BadRequest",
            "bad enum",
        ),
        (
            400,
            nested,
            CreateOutcome::Rejected,
            "partnerStateNotSupported",
            "Invalid partner",
        ),
        (
            403,
            graph_error("Forbidden", "no licence"),
            CreateOutcome::AuthFailure,
            "Forbidden",
            "no licence",
        ),
        (
            404,
            graph_error("ResourceNotFound", "gone"),
            CreateOutcome::Rejected,
            "ResourceNotFound",
            "gone",
        ),
        (
            405,
            graph_error("BadRequest", "verb"),
            CreateOutcome::Rejected,
            "BadRequest",
            "verb",
        ),
        (
            409,
            graph_error("Conflict", "exists"),
            CreateOutcome::Conflict,
            "Conflict",
            "exists",
        ),
        (
            415,
            graph_error("UnsupportedMediaType", "type"),
            CreateOutcome::Rejected,
            "UnsupportedMediaType",
            "type",
        ),
        (
            422,
            graph_error("UnprocessableEntity", "no"),
            CreateOutcome::Rejected,
            "UnprocessableEntity",
            "no",
        ),
    ];
    for (status, body, expected, code, message) in cases {
        let graph = FakeGraph::start().await;
        graph
            .answer_creates(
                ResponseTemplate::new(status)
                    .insert_header("request-id", "graph-request-4xx")
                    .set_body_json(body),
            )
            .await;
        let harness = graph.harness();

        let result = harness.create().await;

        assert_eq!(result.outcome, expected, "{status} {code}");
        assert_eq!(result.meta.status, Some(status), "{status} {code}");
        assert_eq!(result.meta.error_code.as_deref(), Some(code), "{status}");
        assert_eq!(
            result.meta.error_message.as_deref(),
            Some(message),
            "{status}"
        );
        assert_eq!(
            result.meta.request_id.as_deref(),
            Some("graph-request-4xx"),
            "{status}"
        );
        assert_eq!(
            graph.received().await.len(),
            1,
            "{status} {code}: one request"
        );
        assert_eq!(harness.tokens.invalidations(), 0, "{status}");
    }
}

#[tokio::test]
async fn a_401_with_a_claims_challenge_gets_a_token_with_those_claims_and_one_retry() {
    let claims =
        "eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0=";
    let challenge = format!(
        r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="{claims}""#
    );
    let graph = FakeGraph::start().await;
    graph
        .answer_creates_times(
            refusal(401, "InvalidAuthenticationToken", "claims required")
                .insert_header("WWW-Authenticate", challenge.as_str()),
            1,
        )
        .await;
    graph.answer_creates(created_response("graph-id-401")).await;
    let harness = graph.harness();
    let client_request_id = Uuid::new_v4();

    let result = harness.create_under(client_request_id).await;

    assert_eq!(result.outcome, created_as("graph-id-401"));
    assert_eq!(
        harness.tokens.calls(),
        vec![None, Some(claims.to_owned())],
        "one new token request carrying the claims"
    );
    assert_eq!(harness.tokens.invalidations(), 1);
    assert_one_resent_post(&graph, client_request_id).await;
}

#[tokio::test]
async fn a_second_401_is_an_auth_failure() {
    let graph = FakeGraph::start().await;
    graph
        .answer_creates(
            refusal(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure.",
            )
            .insert_header("WWW-Authenticate", r#"Bearer error="invalid_token""#),
        )
        .await;
    let harness = graph.harness();

    let result = harness.create().await;

    assert_eq!(result.outcome, CreateOutcome::AuthFailure);
    assert_eq!(result.meta.status, Some(401));
    assert_eq!(
        result.meta.error_code.as_deref(),
        Some("InvalidAuthenticationToken")
    );
    assert_eq!(graph.received().await.len(), 2, "one retry, then give up");
    assert_eq!(
        harness.tokens.calls(),
        vec![None, None],
        "no claims in the challenge: a plain fresh token"
    );
    assert_eq!(harness.tokens.invalidations(), 1);
}

#[tokio::test]
async fn token_failures_end_every_call_without_any_graph_request() {
    let in_45_seconds = Duration::from_secs(45);
    let cases = [
        (
            "refused credential",
            TokenError::Configuration {
                error: "invalid_client".into(),
                error_codes: vec![7_000_215],
                description: "AADSTS7000215: Invalid client secret provided.".into(),
                trace_id: Some("trace".into()),
                correlation_id: Some("correlation".into()),
            },
            CreateOutcome::AuthFailure,
            WriteOutcome::AuthFailure,
        ),
        (
            "back-off after a refusal",
            TokenError::BackingOff {
                until: t0().saturating_add(Duration::from_secs(60)),
                reason: "invalid_client".into(),
            },
            CreateOutcome::AuthFailure,
            WriteOutcome::AuthFailure,
        ),
        (
            "token endpoint unavailable",
            TokenError::Transient {
                retry_at: t0().saturating_add(in_45_seconds),
                description: "HTTP 503 from the token endpoint".into(),
            },
            CreateOutcome::NotApplied {
                retry_after: Some(in_45_seconds),
            },
            WriteOutcome::NotApplied {
                retry_after: Some(in_45_seconds),
            },
        ),
    ];
    for (case, error, expected_create, expected_update) in cases {
        let graph = FakeGraph::start().await;
        graph.answer_creates(created_response("never")).await;
        let harness = graph.harness();
        harness.tokens.fail_with(error.clone());

        let created = harness.create().await;
        let slept_for_the_create = harness.sleeper.slept();
        let updated = harness
            .client
            .update_partner("graph-id", &partner(), Uuid::new_v4())
            .await;
        let read = harness.client.list_partners().await;

        assert_eq!(created.outcome, expected_create, "{case}");
        assert_eq!(created.meta.status, None, "{case}");
        assert!(created.meta.error_message.is_some(), "{case}");
        assert_eq!(updated.outcome, expected_update, "{case}");
        let read_matches = match &error {
            TokenError::Transient { .. } => matches!(read, Err(GraphReadError::Transient(_))),
            _ => matches!(read, Err(GraphReadError::AuthFailure(_))),
        };
        assert!(read_matches, "{case}: {read:?}");
        assert!(graph.received().await.is_empty(), "{case}: no Graph call");
        assert!(slept_for_the_create.is_empty(), "{case}: no waiting");
    }
}

// Reads: a GET is resent after 429, 503, 504 and transport errors

#[tokio::test]
async fn a_get_retries_503s_and_then_succeeds() {
    let graph = FakeGraph::start().await;
    graph
        .answer_times(
            "GET",
            item_path("graph-id"),
            refusal(503, "serviceNotAvailable", "busy").insert_header("Retry-After", "1"),
            2,
        )
        .await;
    graph
        .answer("GET", item_path("graph-id"), found("graph-id"))
        .await;
    let harness = graph.harness();

    let result = harness.client.get_partner("graph-id").await;

    assert_eq!(result, Ok(Some(read_as("graph-id"))));
    assert_eq!(
        harness.sleeper.slept(),
        vec![Duration::from_secs(1), Duration::from_secs(1)]
    );
    let requests = graph.received().await;
    let first_id = header(&requests[0], "client-request-id");
    assert!(first_id.is_some(), "every read carries an id");
    assert_eq!(
        requests.iter().map(correlation).collect::<Vec<_>>(),
        vec![
            ("GET".to_owned(), first_id, None),
            ("GET".to_owned(), first_id, Some("1")),
            ("GET".to_owned(), first_id, Some("2")),
        ],
        "one id for the logical read, the resends numbered"
    );
}

#[tokio::test]
async fn read_failures_map_onto_read_errors() {
    let cases = [
        (503, 4, "transient, retried three times"),
        (500, 1, "transient, not retried"),
        (403, 1, "auth failure"),
        (400, 1, "refused"),
    ];
    for (status, requests, case) in cases {
        let graph = FakeGraph::start().await;
        graph
            .answer(
                "GET",
                item_path("graph-id"),
                refusal(status, "SomeCode", "message"),
            )
            .await;
        let harness = graph.harness();

        let read = harness.client.get_partner("graph-id").await;

        let meta = match (status, read) {
            (500 | 503, Err(GraphReadError::Transient(meta)))
            | (403, Err(GraphReadError::AuthFailure(meta)))
            | (400, Err(GraphReadError::Refused(meta))) => meta,
            (_, other) => panic!("{case}: {other:?}"),
        };
        assert_eq!(meta.status, Some(status), "{case}");
        assert_eq!(meta.error_code.as_deref(), Some("SomeCode"), "{case}");
        assert_eq!(graph.received().await.len(), requests, "{case}");
    }
}

#[tokio::test]
async fn a_get_of_an_unknown_id_is_none() {
    let graph = FakeGraph::start().await;
    graph.answer("GET", item_path("missing"), not_found()).await;
    let harness = graph.harness();

    let result = harness.client.get_partner("missing").await;

    assert_eq!(result, Ok(None));
    assert_eq!(graph.received().await.len(), 1);
}

// Paging: every @odata.nextLink followed verbatim, on Graph's host only

#[tokio::test]
async fn a_list_follows_three_pages_of_absolute_next_links_verbatim_in_order() {
    let graph = FakeGraph::start().await;
    let uri = graph.server.uri();
    let link2 = format!("{uri}{COLLECTION}?$skiptoken=page%3D2");
    let link3 = format!("{uri}{COLLECTION}?$skiptoken=page%3D3&$top=1");
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(page(
            json!([{"id": "p1", "displayName": "One"}]),
            Some(&link2),
        ))
        .mount(&graph.server)
        .await;
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .and(query_param("$skiptoken", "page=2"))
        .respond_with(page(
            json!([{"id": "p2", "displayName": null}, {"id": "p3", "displayName": "Three"}]),
            Some(&link3),
        ))
        .mount(&graph.server)
        .await;
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .and(query_param("$skiptoken", "page=3"))
        .respond_with(page(json!([{"id": "p4", "displayName": "Four"}]), None))
        .mount(&graph.server)
        .await;
    let harness = graph.harness();

    let listed = harness.client.list_partners().await.expect("three pages");

    let remote = |id: &str, name: Option<&str>| RemotePartner {
        graph_id: id.into(),
        display_name: name.map(str::to_owned),
    };
    assert_eq!(
        listed,
        vec![
            remote("p1", Some("One")),
            remote("p2", None),
            remote("p3", Some("Three")),
            remote("p4", Some("Four")),
        ]
    );
    let requests = graph.received().await;
    // wiremock rebuilds the URL on a `localhost` base: compare what went on the wire, the
    // request target and the Host header.
    let targets: Vec<_> = requests
        .iter()
        .map(|r| match r.url.query() {
            Some(query) => format!("{}?{query}", r.url.path()),
            None => r.url.path().to_owned(),
        })
        .collect();
    let expected: Vec<_> = [format!("{uri}{COLLECTION}"), link2, link3]
        .iter()
        .map(|link| link.strip_prefix(&uri).expect("on the server").to_owned())
        .collect();
    assert_eq!(
        targets, expected,
        "each nextLink requested exactly as given"
    );
    let host = graph.server.address().to_string();
    assert!(
        requests
            .iter()
            .all(|r| header(r, "host") == Some(host.as_str()))
    );
    let bearer = format!("Bearer {TOKEN}");
    assert!(
        requests
            .iter()
            .all(|r| header(r, "authorization") == Some(bearer.as_str()))
    );
}

/// Mounts pages `1..=count` of the collection, each linking to the next by
/// `$skiptoken={n + 1}`; the last page's link points at `last_link` instead when given.
async fn mount_linked_pages(graph: &FakeGraph, count: u32, last_link: Option<u32>) {
    for n in 1..=count {
        let target = if n == count {
            last_link.unwrap_or(n + 1)
        } else {
            n + 1
        };
        let next = format!("{}{COLLECTION}?$skiptoken={target}", graph.server.uri());
        let mock = Mock::given(method("GET")).and(path(COLLECTION));
        let mock = if n == 1 {
            mock.and(query_param_is_missing("$skiptoken"))
        } else {
            mock.and(query_param("$skiptoken", n.to_string()))
        };
        mock.respond_with(page(json!([{"id": format!("p{n}")}]), Some(&next)))
            .mount(&graph.server)
            .await;
    }
}

#[tokio::test]
async fn next_links_that_never_end_are_paging_errors() {
    let cases = [
        (
            "a link back to the page itself",
            2,
            Some(2),
            100,
            "repeats",
            2,
        ),
        (
            "more pages than max_pages",
            3,
            None,
            2,
            "more than 2 pages",
            2,
        ),
    ];
    for (case, pages, last_link, max_pages, needle, requests) in cases {
        let graph = FakeGraph::start().await;
        mount_linked_pages(&graph, pages, last_link).await;
        let harness = graph.harness_with(|s| s.max_pages = max_pages);

        let listed = harness.client.list_partners().await;

        assert!(
            matches!(&listed, Err(GraphReadError::Paging(m)) if m.contains(needle)),
            "{case}: {listed:?}"
        );
        assert_eq!(
            graph.received().await.len(),
            requests,
            "{case}: no page is asked for twice or beyond the cap"
        );
    }
}

#[tokio::test]
async fn a_next_link_off_the_graph_host_is_refused_and_never_gets_the_token() {
    let graph = FakeGraph::start().await;
    let elsewhere = FakeGraph::start().await;
    elsewhere
        .answer("GET", COLLECTION, page(json!([]), None))
        .await;
    let port = graph.server.address().port();
    let links = [
        (
            "another port",
            format!("{}{COLLECTION}?$skiptoken=2", elsewhere.server.uri()),
        ),
        (
            "another host name",
            format!("http://localhost:{port}{COLLECTION}?$skiptoken=2"),
        ),
        (
            "another scheme",
            format!("https://127.0.0.1:{port}{COLLECTION}?$skiptoken=2"),
        ),
        ("relative", format!("{COLLECTION}?$skiptoken=2")),
    ];
    for (case, link) in links {
        graph.server.reset().await;
        graph
            .answer_times(
                "GET",
                COLLECTION,
                page(json!([{"id": "p1"}]), Some(&link)),
                1,
            )
            .await;
        graph.answer("GET", COLLECTION, page(json!([]), None)).await;
        let harness = graph.harness();

        let listed = harness.client.list_partners().await;

        assert!(
            matches!(listed, Err(GraphReadError::Paging(_))),
            "{case}: {listed:?}"
        );
        assert_eq!(graph.received().await.len(), 1, "{case}: link not followed");
    }
    assert!(
        elsewhere.received().await.is_empty(),
        "the other host never saw a request, let alone the token"
    );
}

// Redirects

/// A 302 to `location`.
fn redirect_to(location: &str) -> ResponseTemplate {
    ResponseTemplate::new(302).insert_header("Location", location)
}

#[tokio::test]
async fn a_redirect_to_another_host_is_followed_without_the_token() {
    let graph = FakeGraph::start().await;
    let elsewhere = FakeGraph::start().await;
    elsewhere.answer("GET", "/moved", found("moved")).await;
    let moved = format!("{}/moved", elsewhere.server.uri());
    graph
        .answer("GET", item_path("graph-id"), redirect_to(&moved))
        .await;

    let result = graph.harness().client.get_partner("graph-id").await;

    assert!(matches!(result, Ok(Some(_))), "{result:?}");
    let requests = elsewhere.received().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(header(&requests[0], "authorization"), None);
}

#[tokio::test]
async fn a_redirect_loop_is_cut_after_five_redirects() {
    let graph = FakeGraph::start().await;
    let here = format!("{}{}", graph.server.uri(), item_path("graph-id"));
    graph
        .answer("GET", item_path("graph-id"), redirect_to(&here))
        .await;

    let result = graph.harness().client.get_partner("graph-id").await;

    assert!(
        matches!(result, Err(GraphReadError::Refused(_))),
        "{result:?}"
    );
    assert_eq!(
        graph.received().await.len(),
        6,
        "the request and five redirects"
    );
}

// Updates and deletes

#[tokio::test]
async fn an_update_patches_the_whole_rendered_partner_and_a_404_is_not_found() {
    let graph = FakeGraph::start().await;
    let partner = partner();
    Mock::given(method("PATCH"))
        .and(path(item_path("present")))
        .and(body_json(rendered(&partner)))
        .respond_with(ResponseTemplate::new(204))
        .mount(&graph.server)
        .await;
    graph
        .answer("PATCH", item_path("missing"), not_found())
        .await;
    let harness = graph.harness();
    let client_request_id = Uuid::new_v4();

    let applied = harness
        .client
        .update_partner("present", &partner, client_request_id)
        .await;
    let missing = harness
        .client
        .update_partner("missing", &partner, Uuid::new_v4())
        .await;

    assert_eq!(applied.outcome, WriteOutcome::Applied);
    assert_eq!(applied.meta.status, Some(204));
    assert_eq!(missing.outcome, WriteOutcome::NotFound);
    assert_eq!(missing.meta.error_code.as_deref(), Some("ResourceNotFound"));
    let requests = graph.received().await;
    assert_eq!(requests.len(), 2);
    let expected_id = client_request_id.to_string();
    assert_eq!(
        header(&requests[0], "client-request-id"),
        Some(expected_id.as_str())
    );
    assert_eq!(
        header(&requests[0], "content-type"),
        Some("application/json")
    );
    assert_eq!(header(&requests[0], "accept"), Some("application/json"));
    assert_eq!(
        requests[0]
            .body_json::<serde_json::Value>()
            .expect("JSON body"),
        rendered(&partner)
    );
}

#[tokio::test]
async fn an_update_answered_502_is_unknown_after_one_patch_and_left_to_the_outbox() {
    let graph = FakeGraph::start().await;
    graph
        .answer("PATCH", item_path("graph-id"), ResponseTemplate::new(502))
        .await;
    let harness = graph.harness();

    let result = harness
        .client
        .update_partner("graph-id", &partner(), Uuid::new_v4())
        .await;

    assert_eq!(result.outcome, WriteOutcome::Unknown);
    assert_eq!(graph.received().await.len(), 1);
    assert!(harness.sleeper.slept().is_empty());
}

#[tokio::test]
async fn a_delete_sends_no_body_and_a_404_counts_as_applied() {
    let graph = FakeGraph::start().await;
    graph
        .answer("DELETE", item_path("present"), ResponseTemplate::new(204))
        .await;
    graph
        .answer("DELETE", item_path("missing"), not_found())
        .await;
    let harness = graph.harness();
    let client_request_id = Uuid::new_v4();

    let deleted = harness
        .client
        .delete_partner("present", client_request_id)
        .await;
    let gone = harness
        .client
        .delete_partner("missing", Uuid::new_v4())
        .await;

    assert_eq!(deleted.outcome, WriteOutcome::Applied);
    assert_eq!(gone.outcome, WriteOutcome::Applied);
    assert_eq!(gone.meta.status, Some(404));
    let requests = graph.received().await;
    assert_eq!(requests.len(), 2);
    let expected_id = client_request_id.to_string();
    assert_eq!(
        header(&requests[0], "client-request-id"),
        Some(expected_id.as_str())
    );
    assert_eq!(header(&requests[0], "content-type"), None);
    assert!(requests[0].body.is_empty());
}

// Write rate

#[tokio::test]
async fn the_pages_after_the_first_take_read_slots_of_the_tenants_pacer() {
    let graph = FakeGraph::start().await;
    let link2 = format!("{}{COLLECTION}?$skiptoken=two", graph.server.uri());
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(page(
            json!([{"id": "p1", "displayName": "One"}]),
            Some(&link2),
        ))
        .mount(&graph.server)
        .await;
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .and(query_param("$skiptoken", "two"))
        .respond_with(page(json!([{"id": "p2", "displayName": "Two"}]), None))
        .mount(&graph.server)
        .await;
    let harness = graph.harness_with(|s| s.read_rate_per_second = 4.0);
    // The caller's slot for the first page, as the outbox takes it.
    harness
        .pacer
        .book(Budget::Read, t0(), t0())
        .await
        .expect("the pacer answers");

    let listed = harness.client.list_partners().await.expect("two pages");

    assert_eq!(listed.len(), 2);
    assert_eq!(
        harness.sleeper.slept(),
        vec![250 * MS],
        "the second page waits one read interval after the first"
    );
}

// Pre-seeded partners

/// Intune's answer to a POST on a collection holding pre-seeded records.
fn routing_refusal() -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(graph_error(
        "no method match route template",
        "No OData route exists that match template ~/singleton/navigation with http verb POST for request /StatelessDeviceConfigurationFEService/deviceManagement/complianceManagementPartners.",
    ))
}

/// A fake Graph that refuses creates with the routing error and lists `records`, and a client
/// for it with `adopt_preseeded` as given.
async fn preseeded_tenant(records: serde_json::Value, adopt: bool) -> (FakeGraph, Harness) {
    let graph = FakeGraph::start().await;
    graph.answer_creates(routing_refusal()).await;
    graph.answer("GET", COLLECTION, page(records, None)).await;
    let harness = graph.harness_with(|s| s.adopt_preseeded = adopt);
    (graph, harness)
}

#[tokio::test]
async fn a_routing_refusal_adopts_the_single_preseeded_record_of_the_same_name() {
    let partner = partner_named("Contoso Compliance");
    let (graph, harness) = preseeded_tenant(
        json!([
            {"id": "fabrikam", "displayName": "Fabrikam"},
            {"id": "preseeded-1", "displayName": "  contoso COMPLIANCE "},
            {"id": "nameless", "displayName": null},
        ]),
        true,
    )
    .await;
    Mock::given(method("PATCH"))
        .and(path(item_path("preseeded-1")))
        .and(body_json(rendered(&partner)))
        .respond_with(ResponseTemplate::new(204))
        .mount(&graph.server)
        .await;

    let result = harness
        .client
        .create_partner(&partner, Uuid::new_v4())
        .await;

    assert_eq!(result.outcome, created_as("preseeded-1"));
    assert_eq!(graph.methods().await, ["POST", "GET", "PATCH"]);
}

#[tokio::test]
async fn a_routing_refusal_without_exactly_one_same_named_record_is_rejected() {
    let cases = [
        (
            "none",
            json!([{"id": "fabrikam", "displayName": "Fabrikam"}]),
            "0 pre-seeded",
        ),
        (
            "two",
            json!([
                {"id": "a", "displayName": "Contoso Compliance"},
                {"id": "b", "displayName": "contoso compliance"},
            ]),
            "2 pre-seeded",
        ),
    ];
    for (case, records, needle) in cases {
        let (graph, harness) = preseeded_tenant(records, true).await;

        let result = harness.create().await;

        assert_eq!(result.outcome, CreateOutcome::Rejected, "{case}");
        assert_eq!(result.meta.status, Some(400), "{case}");
        assert!(
            result
                .meta
                .error_message
                .as_deref()
                .is_some_and(|m| m.contains(needle)),
            "{case}: {:?}",
            result.meta
        );
        assert_eq!(graph.methods().await, ["POST", "GET"], "{case}: no PATCH");
    }
}

#[tokio::test]
async fn a_routing_refusal_is_a_plain_rejection_when_adoption_is_off() {
    let (graph, harness) = preseeded_tenant(
        json!([{"id": "preseeded-1", "displayName": "Contoso Compliance"}]),
        false,
    )
    .await;

    let result = harness.create().await;

    assert_eq!(result.outcome, CreateOutcome::Rejected);
    assert_eq!(
        result.meta.error_code.as_deref(),
        Some("no method match route template")
    );
    assert_eq!(graph.methods().await, ["POST"], "no list");
}

// Wiring

#[tokio::test]
async fn connect_wires_the_token_provider_and_the_client_to_one_configuration() {
    let graph = FakeGraph::start().await;
    graph
        .answer(
            "POST",
            format!("/{TENANT}/oauth2/v2.0/token"),
            ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer",
                "expires_in": 3599,
                "access_token": "token-from-entra",
            })),
        )
        .await;
    graph
        .answer(
            "GET",
            COLLECTION,
            page(json!([{"id": "p1", "displayName": "One"}]), None),
        )
        .await;
    let mut settings = support::settings(&graph.server.uri());
    settings.authority = graph.server.uri();
    let resolved = settings.resolve(TENANT).expect("valid settings");
    let harness = graph.harness();

    let connection = cmp_graph_client::client::connect(
        &resolved,
        harness.clock.clone(),
        harness.sleeper.clone(),
        harness.pacer.clone(),
    )
    .expect("wires");
    let listed = connection.client.list_partners().await;

    assert_eq!(listed.map(|l| l.len()), Ok(1));
    let requests = graph.received().await;
    assert_eq!(
        graph.methods().await,
        ["POST", "GET"],
        "one token request, then the list"
    );
    assert_eq!(
        header(&requests[1], "authorization"),
        Some("Bearer token-from-entra")
    );
    assert_eq!(header(&requests[0], "user-agent"), Some(USER_AGENT));
}

// Metrics

/// The value of `series` (a name with its labels, as rendered) in a Prometheus exposition.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn requests_are_counted_by_operation_and_status_and_the_tenant_pause_counts_down() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let exposition = recorder.handle();
    // The test runs on one thread, so a thread-local recorder sees every count it causes.
    let _recording = metrics::set_default_local_recorder(&recorder);
    let graph = FakeGraph::start().await;
    graph
        .answer("GET", item_path("graph-id"), found("graph-id"))
        .await;
    graph.answer("GET", COLLECTION, page(json!([]), None)).await;
    graph.answer_creates(throttled(Some("300"))).await;
    let harness = graph.harness();

    harness.client.get_partner("graph-id").await.expect("read");
    harness.client.list_partners().await.expect("listed");
    harness.create().await;
    harness.client.report_tenant_pause().await;
    let at_the_429 = exposition.render();
    harness.clock.advance(Duration::from_secs(100));
    harness.client.report_tenant_pause().await;
    let later = exposition.render();

    for (series, expected) in [
        (
            r#"cmp_graph_requests_total{operation="get",status="200"}"#,
            1.0,
        ),
        (
            r#"cmp_graph_requests_total{operation="list",status="200"}"#,
            1.0,
        ),
        (
            r#"cmp_graph_requests_total{operation="create",status="429"}"#,
            1.0,
        ),
        ("cmp_graph_throttled_total", 1.0),
        ("cmp_graph_tenant_pause_seconds", 300.0),
    ] {
        assert_eq!(
            sample(&at_the_429, series),
            Some(expected),
            "{series} in\n{at_the_429}"
        );
    }
    assert_eq!(
        sample(&later, "cmp_graph_tenant_pause_seconds"),
        Some(200.0)
    );
}
