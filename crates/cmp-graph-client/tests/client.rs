//! [`HttpGraphClient`] against a fake Graph (wiremock on 127.0.0.1): the request shape, each
//! outcome class of graph-client-behaviour §1.5, the in-call retries of §1.6, paging, and the
//! client-side scenarios of §6. Nothing sleeps: the recording sleeper returns at once, notes
//! the requested wait and moves the test clock; only the timeout test waits for real.

#[path = "client/support.rs"]
mod support;

use std::time::{Duration, UNIX_EPOCH};

use cmp_application::{
    Clock, CreateOutcome, GraphGateway, GraphReadError, RemotePartner, WriteOutcome,
};
use cmp_graph_client::TokenError;
use cmp_graph_client::client::USER_AGENT;
use cmp_graph_model::partner::render_partner_for_graph;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{body_json, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use support::{
    COLLECTION, Harness, TOKEN, created, graph_error, header, partner, partner_named, received,
    rendered, t0,
};

const MS: Duration = Duration::from_millis(1);

/// A 201 with Graph's new id for the test partner.
fn created_response(graph_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(201)
        .insert_header("request-id", "graph-request-1")
        .set_body_json(created(&partner(), graph_id))
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

async fn mount_create(server: &MockServer, response: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(method("POST"))
        .and(path(COLLECTION))
        .respond_with(response);
    match times {
        Some(times) => mock.up_to_n_times(times).mount(server).await,
        None => mock.mount(server).await,
    }
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

// Request shape

#[tokio::test]
async fn a_create_posts_the_rendered_partner_with_every_required_header() {
    let server = MockServer::start().await;
    mount_create(&server, created_response("graph-id-1"), None).await;
    let harness = Harness::for_server(&server);
    let client_request_id = Uuid::new_v4();

    let result = harness
        .client
        .create_partner(&partner(), client_request_id)
        .await;

    assert_eq!(
        result.outcome,
        CreateOutcome::Created {
            graph_id: "graph-id-1".into()
        }
    );
    assert_eq!(result.meta.status, Some(201));
    assert_eq!(result.meta.request_id.as_deref(), Some("graph-request-1"));
    let requests = received(&server).await;
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
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(item_path("a%2Fb%20c")))
        .respond_with(ResponseTemplate::new(200).set_body_json(created(&partner(), "a/b c")))
        .mount(&server)
        .await;
    let harness = Harness::for_server(&server);

    let found = harness.client.get_partner("a/b c").await;

    assert_eq!(
        found,
        Ok(Some(RemotePartner {
            graph_id: "a/b c".into(),
            display_name: Some("Contoso Compliance".into()),
        }))
    );
    let requests = received(&server).await;
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

// Throttling and Retry-After (§1.6)

#[tokio::test]
async fn a_429_with_retry_after_2_then_201_is_two_posts_two_seconds_apart() {
    let server = MockServer::start().await;
    mount_create(&server, throttled(Some("2")), Some(1)).await;
    mount_create(&server, created_response("graph-id-2"), None).await;
    let harness = Harness::for_server(&server);
    let client_request_id = Uuid::new_v4();

    let result = harness
        .client
        .create_partner(&partner(), client_request_id)
        .await;

    assert_eq!(
        result.outcome,
        CreateOutcome::Created {
            graph_id: "graph-id-2".into()
        }
    );
    assert_eq!(harness.sleeper.slept(), vec![Duration::from_secs(2)]);
    let requests = received(&server).await;
    assert_eq!(requests.len(), 2, "exactly two POSTs");
    let expected_id = client_request_id.to_string();
    for request in &requests {
        assert_eq!(request.method.as_str(), "POST");
        assert_eq!(
            header(request, "client-request-id"),
            Some(expected_id.as_str()),
            "the same id on every in-call retry"
        );
    }
    assert_eq!(header(&requests[0], "retry-attempt"), None);
    assert_eq!(header(&requests[1], "retry-attempt"), Some("1"));
}

#[tokio::test]
async fn the_wait_before_a_retry_follows_retry_after_or_backs_off_without_it() {
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
        let server = MockServer::start().await;
        mount_create(&server, throttled(retry_after), Some(1)).await;
        mount_create(&server, created_response("graph-id"), None).await;
        let harness = Harness::for_server(&server);

        let result = harness
            .client
            .create_partner(&partner(), Uuid::new_v4())
            .await;

        assert!(
            matches!(result.outcome, CreateOutcome::Created { .. }),
            "{case}: {result:?}"
        );
        let slept = harness.sleeper.slept();
        assert_eq!(slept.len(), 1, "{case}: {slept:?}");
        assert!(
            (least..=most).contains(&slept[0]),
            "{case}: waited {:?}, expected {least:?}..={most:?}",
            slept[0]
        );
        assert_eq!(received(&server).await.len(), 2, "{case}");
    }
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_ends_the_call_after_one_post_and_pauses_the_tenant() {
    let server = MockServer::start().await;
    mount_create(&server, throttled(Some("300")), None).await;
    let harness = Harness::for_server(&server);

    let first = harness
        .client
        .create_partner(&partner(), Uuid::new_v4())
        .await;
    let second = harness
        .client
        .create_partner(&partner(), Uuid::new_v4())
        .await;
    let read = harness.client.get_partner("graph-id").await;

    assert_eq!(
        first.outcome,
        CreateOutcome::NotApplied {
            retry_after: Some(Duration::from_secs(300))
        }
    );
    assert_eq!(first.meta.status, Some(429));
    assert_eq!(first.meta.error_code.as_deref(), Some("TooManyRequests"));
    assert_eq!(
        second.outcome,
        CreateOutcome::NotApplied {
            retry_after: Some(Duration::from_secs(300))
        },
        "the tenant stays paused: nothing is sent before the Retry-After moment"
    );
    assert_eq!(second.meta.status, None);
    assert!(
        matches!(read, Err(GraphReadError::Transient(_))),
        "{read:?}"
    );
    assert_eq!(
        received(&server).await.len(),
        1,
        "one POST, nothing after it"
    );
    assert!(harness.sleeper.slept().is_empty());
}

#[tokio::test]
async fn a_429_holds_back_every_request_of_the_client_until_its_retry_after_moment() {
    let server = MockServer::start().await;
    mount_create(&server, throttled(Some("60")), None).await;
    Mock::given(method("GET"))
        .and(path(item_path("graph-id")))
        .respond_with(ResponseTemplate::new(200).set_body_json(created(&partner(), "graph-id")))
        .mount(&server)
        .await;
    let harness = Harness::new(&server.uri(), |s| s.max_retries = 0);

    let create = harness
        .client
        .create_partner(&partner(), Uuid::new_v4())
        .await;
    let read = harness.client.get_partner("graph-id").await;

    assert_eq!(
        create.outcome,
        CreateOutcome::NotApplied {
            retry_after: Some(Duration::from_secs(60))
        }
    );
    assert!(matches!(read, Ok(Some(_))), "{read:?}");
    assert_eq!(
        harness.sleeper.slept(),
        vec![Duration::from_secs(60)],
        "the read waits out the pause first"
    );
    assert_eq!(
        harness.clock.now(),
        t0().saturating_add(Duration::from_secs(60)),
        "the read went out at the Retry-After moment"
    );
    assert_eq!(received(&server).await.len(), 2);
}

// Unknown outcomes: never a second POST (§1.5, §3.4)

#[tokio::test]
async fn server_errors_on_a_create_are_unknown_after_exactly_one_post() {
    for status in [500u16, 502, 503, 504, 507, 509] {
        let server = MockServer::start().await;
        mount_create(
            &server,
            ResponseTemplate::new(status)
                .insert_header("Retry-After", "1")
                .insert_header("request-id", "graph-request-5xx")
                .set_body_json(graph_error("serviceNotAvailable", "try later")),
            None,
        )
        .await;
        let harness = Harness::for_server(&server);

        let result = harness
            .client
            .create_partner(&partner(), Uuid::new_v4())
            .await;

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
        assert_eq!(received(&server).await.len(), 1, "{status}: one POST only");
        assert!(harness.sleeper.slept().is_empty(), "{status}");
    }
}

#[tokio::test]
async fn a_create_answer_delayed_past_the_request_timeout_is_unknown_after_one_post() {
    let server = MockServer::start().await;
    mount_create(
        &server,
        created_response("late-id").set_delay(Duration::from_secs(3)),
        None,
    )
    .await;
    let harness = Harness::new(&server.uri(), |s| s.request_timeout_ms = 200);

    let result = harness
        .client
        .create_partner(&partner(), Uuid::new_v4())
        .await;

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
    assert_eq!(received(&server).await.len(), 1);
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
        let server = MockServer::start().await;
        mount_create(&server, response, None).await;
        let harness = Harness::for_server(&server);

        let result = harness
            .client
            .create_partner(&partner(), Uuid::new_v4())
            .await;

        assert_eq!(result.outcome, CreateOutcome::Unknown, "{case}");
        assert_eq!(received(&server).await.len(), 1, "{case}");
    }
}

// Not applied: the request never left

#[tokio::test]
async fn a_refused_connection_is_not_applied_and_retried_with_backoff() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let harness = Harness::new(&format!("http://127.0.0.1:{closed_port}"), |_| {});

    let result = harness
        .client
        .create_partner(&partner(), Uuid::new_v4())
        .await;

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
    let slept = harness.sleeper.slept();
    assert_eq!(slept.len(), 3, "three in-call retries: {slept:?}");
    for (retry, (wait, base_ms)) in slept.iter().zip([3_000u32, 6_000, 12_000]).enumerate() {
        assert!(
            (base_ms * MS..=(base_ms + 1_000) * MS).contains(wait),
            "retry {}: {wait:?}",
            retry + 1
        );
    }
    assert_eq!(harness.tokens.calls().len(), 4);
}

// Permanent refusals and auth (§1.5)

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
        let server = MockServer::start().await;
        mount_create(
            &server,
            ResponseTemplate::new(status)
                .insert_header("request-id", "graph-request-4xx")
                .set_body_json(body),
            None,
        )
        .await;
        let harness = Harness::for_server(&server);

        let result = harness
            .client
            .create_partner(&partner(), Uuid::new_v4())
            .await;

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
            received(&server).await.len(),
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
    let server = MockServer::start().await;
    mount_create(
        &server,
        ResponseTemplate::new(401)
            .insert_header(
                "WWW-Authenticate",
                format!(
                    r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="{claims}""#
                )
                .as_str(),
            )
            .set_body_json(graph_error("InvalidAuthenticationToken", "claims required")),
        Some(1),
    )
    .await;
    mount_create(&server, created_response("graph-id-401"), None).await;
    let harness = Harness::for_server(&server);
    let client_request_id = Uuid::new_v4();

    let result = harness
        .client
        .create_partner(&partner(), client_request_id)
        .await;

    assert_eq!(
        result.outcome,
        CreateOutcome::Created {
            graph_id: "graph-id-401".into()
        }
    );
    assert_eq!(
        harness.tokens.calls(),
        vec![None, Some(claims.to_owned())],
        "one new token request carrying the claims"
    );
    assert_eq!(harness.tokens.invalidations(), 1);
    let requests = received(&server).await;
    assert_eq!(requests.len(), 2, "exactly two POSTs");
    let expected_id = client_request_id.to_string();
    assert!(
        requests
            .iter()
            .all(|r| header(r, "client-request-id") == Some(expected_id.as_str()))
    );
    assert_eq!(header(&requests[1], "retry-attempt"), Some("1"));
}

#[tokio::test]
async fn a_second_401_is_an_auth_failure() {
    let server = MockServer::start().await;
    mount_create(
        &server,
        ResponseTemplate::new(401)
            .insert_header("WWW-Authenticate", r#"Bearer error="invalid_token""#)
            .set_body_json(graph_error(
                "InvalidAuthenticationToken",
                "Access token validation failure.",
            )),
        None,
    )
    .await;
    let harness = Harness::for_server(&server);

    let result = harness
        .client
        .create_partner(&partner(), Uuid::new_v4())
        .await;

    assert_eq!(result.outcome, CreateOutcome::AuthFailure);
    assert_eq!(result.meta.status, Some(401));
    assert_eq!(
        result.meta.error_code.as_deref(),
        Some("InvalidAuthenticationToken")
    );
    assert_eq!(received(&server).await.len(), 2, "one retry, then give up");
    assert_eq!(
        harness.tokens.calls(),
        vec![None, None],
        "no claims in the challenge: a plain fresh token"
    );
    assert_eq!(harness.tokens.invalidations(), 1);
}

#[tokio::test]
async fn token_configuration_errors_are_auth_failures_without_any_graph_request() {
    let errors = [
        TokenError::Configuration {
            error: "invalid_client".into(),
            error_codes: vec![7_000_215],
            description: "AADSTS7000215: Invalid client secret provided.".into(),
            trace_id: Some("trace".into()),
            correlation_id: Some("correlation".into()),
        },
        TokenError::BackingOff {
            until: t0().saturating_add(Duration::from_secs(60)),
            reason: "invalid_client".into(),
        },
    ];
    for error in errors {
        let server = MockServer::start().await;
        mount_create(&server, created_response("never"), None).await;
        let harness = Harness::for_server(&server);
        harness.tokens.fail_with(error.clone());

        let created = harness
            .client
            .create_partner(&partner(), Uuid::new_v4())
            .await;
        let updated = harness
            .client
            .update_partner("graph-id", &partner(), Uuid::new_v4())
            .await;
        let read = harness.client.list_partners().await;

        assert_eq!(created.outcome, CreateOutcome::AuthFailure, "{error:?}");
        assert_eq!(created.meta.status, None, "{error:?}");
        assert!(created.meta.error_message.is_some(), "{error:?}");
        assert_eq!(updated.outcome, WriteOutcome::AuthFailure, "{error:?}");
        assert!(
            matches!(read, Err(GraphReadError::AuthFailure(_))),
            "{error:?}: {read:?}"
        );
        assert!(
            received(&server).await.is_empty(),
            "{error:?}: no Graph call"
        );
    }
}

#[tokio::test]
async fn a_transient_token_error_is_not_applied_until_the_token_endpoint_recovers() {
    let server = MockServer::start().await;
    mount_create(&server, created_response("never"), None).await;
    let harness = Harness::for_server(&server);
    harness.tokens.fail_with(TokenError::Transient {
        retry_at: t0().saturating_add(Duration::from_secs(45)),
        description: "HTTP 503 from the token endpoint".into(),
    });

    let result = harness
        .client
        .create_partner(&partner(), Uuid::new_v4())
        .await;

    assert_eq!(
        result.outcome,
        CreateOutcome::NotApplied {
            retry_after: Some(Duration::from_secs(45))
        }
    );
    assert!(received(&server).await.is_empty(), "no Graph call");
    assert!(harness.sleeper.slept().is_empty());
}

// Reads (§1.6: GETs retry 429, 503, 504 and transport errors)

#[tokio::test]
async fn a_get_retries_503s_and_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(item_path("graph-id")))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("Retry-After", "1")
                .set_body_json(graph_error("serviceNotAvailable", "busy")),
        )
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(item_path("graph-id")))
        .respond_with(ResponseTemplate::new(200).set_body_json(created(&partner(), "graph-id")))
        .mount(&server)
        .await;
    let harness = Harness::for_server(&server);

    let found = harness.client.get_partner("graph-id").await;

    assert_eq!(
        found,
        Ok(Some(RemotePartner {
            graph_id: "graph-id".into(),
            display_name: Some("Contoso Compliance".into()),
        }))
    );
    assert_eq!(
        harness.sleeper.slept(),
        vec![Duration::from_secs(1), Duration::from_secs(1)]
    );
    let requests = received(&server).await;
    assert_eq!(requests.len(), 3);
    let first_id = header(&requests[0], "client-request-id");
    assert!(
        requests
            .iter()
            .all(|r| header(r, "client-request-id") == first_id),
        "one id for the logical read"
    );
    let attempts: Vec<_> = requests
        .iter()
        .map(|r| header(r, "retry-attempt"))
        .collect();
    assert_eq!(attempts, vec![None, Some("1"), Some("2")]);
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
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(status).set_body_json(graph_error("SomeCode", "message")),
            )
            .mount(&server)
            .await;
        let harness = Harness::for_server(&server);

        let read = harness.client.get_partner("graph-id").await;

        let meta = match (status, read) {
            (500 | 503, Err(GraphReadError::Transient(meta)))
            | (403, Err(GraphReadError::AuthFailure(meta)))
            | (400, Err(GraphReadError::Refused(meta))) => meta,
            (_, other) => panic!("{case}: {other:?}"),
        };
        assert_eq!(meta.status, Some(status), "{case}");
        assert_eq!(meta.error_code.as_deref(), Some("SomeCode"), "{case}");
        assert_eq!(received(&server).await.len(), requests, "{case}");
    }
}

#[tokio::test]
async fn a_get_of_an_unknown_id_is_none() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(item_path("missing")))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(graph_error("ResourceNotFound", "gone")),
        )
        .mount(&server)
        .await;
    let harness = Harness::for_server(&server);

    let found = harness.client.get_partner("missing").await;

    assert_eq!(found, Ok(None));
    assert_eq!(received(&server).await.len(), 1);
}

// Paging (graph-contract §10, graph-client-behaviour §3.4)

#[tokio::test]
async fn a_list_follows_three_pages_of_absolute_next_links_verbatim_in_order() {
    let server = MockServer::start().await;
    let link2 = format!("{}{COLLECTION}?$skiptoken=page%3D2", server.uri());
    let link3 = format!("{}{COLLECTION}?$skiptoken=page%3D3&$top=1", server.uri());
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(page(
            json!([{"id": "p1", "displayName": "One"}]),
            Some(&link2),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .and(query_param("$skiptoken", "page=2"))
        .respond_with(page(
            json!([{"id": "p2", "displayName": null}, {"id": "p3", "displayName": "Three"}]),
            Some(&link3),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .and(query_param("$skiptoken", "page=3"))
        .respond_with(page(json!([{"id": "p4", "displayName": "Four"}]), None))
        .mount(&server)
        .await;
    let harness = Harness::for_server(&server);

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
    let requests = received(&server).await;
    // wiremock rebuilds the URL on a `localhost` base: compare what went on the wire, the
    // request target and the Host header.
    let targets: Vec<_> = requests
        .iter()
        .map(|r| match r.url.query() {
            Some(query) => format!("{}?{query}", r.url.path()),
            None => r.url.path().to_owned(),
        })
        .collect();
    let uri = server.uri();
    let expected: Vec<_> = [format!("{uri}{COLLECTION}"), link2, link3]
        .iter()
        .map(|link| link.strip_prefix(&uri).expect("on the server").to_owned())
        .collect();
    assert_eq!(
        targets, expected,
        "each nextLink requested exactly as given"
    );
    let host = server.address().to_string();
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

#[tokio::test]
async fn a_repeating_next_link_is_a_paging_error() {
    let server = MockServer::start().await;
    let link2 = format!("{}{COLLECTION}?$skiptoken=2", server.uri());
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(page(json!([{"id": "p1"}]), Some(&link2)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .and(query_param("$skiptoken", "2"))
        .respond_with(page(json!([{"id": "p2"}]), Some(&link2)))
        .mount(&server)
        .await;
    let harness = Harness::for_server(&server);

    let listed = harness.client.list_partners().await;

    assert!(
        matches!(&listed, Err(GraphReadError::Paging(m)) if m.contains("repeats")),
        "{listed:?}"
    );
    assert_eq!(received(&server).await.len(), 2);
}

#[tokio::test]
async fn more_pages_than_max_pages_is_a_paging_error() {
    let server = MockServer::start().await;
    for n in 1..=3 {
        let next = format!("{}{COLLECTION}?$skiptoken={}", server.uri(), n + 1);
        let mock = Mock::given(method("GET")).and(path(COLLECTION));
        let mock = if n == 1 {
            mock.and(query_param_is_missing("$skiptoken"))
        } else {
            mock.and(query_param("$skiptoken", n.to_string()))
        };
        mock.respond_with(page(json!([{"id": format!("p{n}")}]), Some(&next)))
            .mount(&server)
            .await;
    }
    let harness = Harness::new(&server.uri(), |s| s.max_pages = 2);

    let listed = harness.client.list_partners().await;

    assert!(
        matches!(&listed, Err(GraphReadError::Paging(m)) if m.contains("more than 2 pages")),
        "{listed:?}"
    );
    assert_eq!(
        received(&server).await.len(),
        2,
        "the third page is never asked for"
    );
}

#[tokio::test]
async fn a_next_link_off_the_graph_host_is_refused_and_never_gets_the_token() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(page(json!([]), None))
        .mount(&elsewhere)
        .await;
    let port = server.address().port();
    let links = [
        (
            "another port",
            format!("{}{COLLECTION}?$skiptoken=2", elsewhere.uri()),
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
        server.reset().await;
        Mock::given(method("GET"))
            .and(path(COLLECTION))
            .respond_with(page(json!([{"id": "p1"}]), Some(&link)))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(page(json!([]), None))
            .mount(&server)
            .await;
        let harness = Harness::for_server(&server);

        let listed = harness.client.list_partners().await;

        assert!(
            matches!(listed, Err(GraphReadError::Paging(_))),
            "{case}: {listed:?}"
        );
        assert_eq!(
            received(&server).await.len(),
            1,
            "{case}: link not followed"
        );
    }
    assert!(
        received(&elsewhere).await.is_empty(),
        "the other host never saw a request, let alone the token"
    );
}

#[tokio::test]
async fn a_redirect_to_another_host_is_followed_without_the_token() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(created(&partner(), "moved")))
        .mount(&elsewhere)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("Location", format!("{}/moved", elsewhere.uri()).as_str()),
        )
        .mount(&server)
        .await;
    let harness = Harness::for_server(&server);

    let found = harness.client.get_partner("graph-id").await;

    assert!(matches!(found, Ok(Some(_))), "{found:?}");
    let requests = received(&elsewhere).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(header(&requests[0], "authorization"), None);
}

#[tokio::test]
async fn a_redirect_loop_is_cut_after_five_redirects() {
    let server = MockServer::start().await;
    let here = format!("{}{}", server.uri(), item_path("graph-id"));
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", here.as_str()))
        .mount(&server)
        .await;
    let harness = Harness::for_server(&server);

    let found = harness.client.get_partner("graph-id").await;

    assert!(
        matches!(found, Err(GraphReadError::Refused(_))),
        "{found:?}"
    );
    assert_eq!(
        received(&server).await.len(),
        6,
        "the request and five redirects"
    );
}

// Updates and deletes

#[tokio::test]
async fn an_update_patches_the_whole_rendered_partner_and_a_404_is_not_found() {
    let server = MockServer::start().await;
    let partner = partner();
    Mock::given(method("PATCH"))
        .and(path(item_path("present")))
        .and(body_json(rendered(&partner)))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(item_path("missing")))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(graph_error("ResourceNotFound", "gone")),
        )
        .mount(&server)
        .await;
    let harness = Harness::for_server(&server);
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
    let requests = received(&server).await;
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
        serde_json::to_value(render_partner_for_graph(&partner)).expect("renders")
    );
}

#[tokio::test]
async fn an_update_retries_a_502_because_it_is_idempotent() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(200).set_body_json(created(&partner(), "graph-id")))
        .mount(&server)
        .await;
    let harness = Harness::for_server(&server);

    let result = harness
        .client
        .update_partner("graph-id", &partner(), Uuid::new_v4())
        .await;

    assert_eq!(result.outcome, WriteOutcome::Applied);
    assert_eq!(received(&server).await.len(), 2);
    let slept = harness.sleeper.slept();
    assert_eq!(slept.len(), 1, "{slept:?}");
    assert!((3_000 * MS..=4_000 * MS).contains(&slept[0]), "{slept:?}");
}

#[tokio::test]
async fn a_delete_sends_no_body_and_a_404_counts_as_applied() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path(item_path("present")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(item_path("missing")))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(graph_error("ResourceNotFound", "gone")),
        )
        .mount(&server)
        .await;
    let harness = Harness::for_server(&server);
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
    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    let expected_id = client_request_id.to_string();
    assert_eq!(
        header(&requests[0], "client-request-id"),
        Some(expected_id.as_str())
    );
    assert_eq!(header(&requests[0], "content-type"), None);
    assert!(requests[0].body.is_empty());
}

// Write rate (§3.3)

#[tokio::test]
async fn two_writes_back_to_back_are_spaced_by_the_write_interval() {
    let server = MockServer::start().await;
    mount_create(&server, created_response("graph-id"), None).await;
    let harness = Harness::new(&server.uri(), |s| s.write_rate_per_second = 4.0);

    let first = harness
        .client
        .create_partner(&partner(), Uuid::new_v4())
        .await;
    let second = harness
        .client
        .create_partner(&partner(), Uuid::new_v4())
        .await;

    assert!(matches!(first.outcome, CreateOutcome::Created { .. }));
    assert!(matches!(second.outcome, CreateOutcome::Created { .. }));
    assert_eq!(
        harness.sleeper.slept(),
        vec![250 * MS],
        "the second write waits one interval; the first does not wait"
    );
    assert_eq!(received(&server).await.len(), 2);
}

// Pre-seeded partners

/// Intune's answer to a POST on a collection holding pre-seeded records.
fn routing_refusal() -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(graph_error(
        "no method match route template",
        "No OData route exists that match template ~/singleton/navigation with http verb POST for request /StatelessDeviceConfigurationFEService/deviceManagement/complianceManagementPartners.",
    ))
}

#[tokio::test]
async fn a_routing_refusal_adopts_the_single_preseeded_record_of_the_same_name() {
    let server = MockServer::start().await;
    let partner = partner_named("Contoso Compliance");
    mount_create(&server, routing_refusal(), None).await;
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .respond_with(page(
            json!([
                {"id": "fabrikam", "displayName": "Fabrikam"},
                {"id": "preseeded-1", "displayName": "  contoso COMPLIANCE "},
                {"id": "nameless", "displayName": null},
            ]),
            None,
        ))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(item_path("preseeded-1")))
        .and(body_json(rendered(&partner)))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let harness = Harness::new(&server.uri(), |s| s.adopt_preseeded = true);

    let result = harness
        .client
        .create_partner(&partner, Uuid::new_v4())
        .await;

    assert_eq!(
        result.outcome,
        CreateOutcome::Created {
            graph_id: "preseeded-1".into()
        }
    );
    let methods: Vec<_> = received(&server)
        .await
        .iter()
        .map(|r| r.method.to_string())
        .collect();
    assert_eq!(methods, vec!["POST", "GET", "PATCH"]);
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
    for (case, items, needle) in cases {
        let server = MockServer::start().await;
        mount_create(&server, routing_refusal(), None).await;
        Mock::given(method("GET"))
            .and(path(COLLECTION))
            .respond_with(page(items, None))
            .mount(&server)
            .await;
        let harness = Harness::new(&server.uri(), |s| s.adopt_preseeded = true);

        let result = harness
            .client
            .create_partner(&partner(), Uuid::new_v4())
            .await;

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
        let methods: Vec<_> = received(&server)
            .await
            .iter()
            .map(|r| r.method.to_string())
            .collect();
        assert_eq!(methods, vec!["POST", "GET"], "{case}: no PATCH");
    }
}

#[tokio::test]
async fn a_routing_refusal_is_a_plain_rejection_when_adoption_is_off() {
    let server = MockServer::start().await;
    mount_create(&server, routing_refusal(), None).await;
    let harness = Harness::for_server(&server);

    let result = harness
        .client
        .create_partner(&partner(), Uuid::new_v4())
        .await;

    assert_eq!(result.outcome, CreateOutcome::Rejected);
    assert_eq!(
        result.meta.error_code.as_deref(),
        Some("no method match route template")
    );
    assert_eq!(received(&server).await.len(), 1, "no list");
}

// Wiring

#[tokio::test]
async fn connect_wires_the_token_provider_and_the_client_to_one_configuration() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{}/oauth2/v2.0/token", support::TENANT)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "access_token": "token-from-entra",
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COLLECTION))
        .respond_with(page(json!([{"id": "p1", "displayName": "One"}]), None))
        .mount(&server)
        .await;
    let mut settings = support::settings(&server.uri());
    settings.authority = server.uri();
    let resolved = settings.resolve(support::TENANT).expect("valid settings");
    let harness = Harness::for_server(&server);

    let connection = cmp_graph_client::client::connect(
        &resolved,
        harness.clock.clone(),
        harness.sleeper.clone(),
    )
    .expect("wires");
    let listed = connection.client.list_partners().await;

    assert_eq!(listed.map(|l| l.len()), Ok(1));
    let requests = received(&server).await;
    let methods: Vec<_> = requests.iter().map(|r| r.method.to_string()).collect();
    assert_eq!(
        methods,
        vec!["POST", "GET"],
        "one token request, then the list"
    );
    assert_eq!(
        header(&requests[1], "authorization"),
        Some("Bearer token-from-entra")
    );
    assert_eq!(header(&requests[0], "user-agent"), Some(USER_AGENT));
}
