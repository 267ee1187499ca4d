//! The router driven in-process (`oneshot`) with mocked use cases: one test per use-case
//! error mapping that the end-to-end tests cannot provoke with a healthy store.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cmp_application::query::{
    Comparison, Cursor, Filter, FilterField, FilterValue, ListQuery, PartnerPage, SortField,
    SortKey,
};
use cmp_application::{
    AuthenticationError, Caller, CallerKind, CreatePartnerError, CreatePartnerOutput,
    DeletePartnerError, GetPartnerError, ListPartnersError, MockCallerAuthenticator,
    MockOperatorUseCases, MockPartnerUseCases, UpdatePartnerError,
};
use cmp_domain::{
    DisplayName, NewPartner, Partner, PartnerError, PartnerId, PartnerState, Platform, Platforms,
    Timestamp,
};
use cmp_http_api::{AppState, RequestLimits, router};
use serde_json::Value;
use tower::ServiceExt;

const ROOT: &str = "http://service.test/beta";

/// The collection, served under `/beta`.
const COLLECTION: &str = "/beta/deviceManagement/complianceManagementPartners";

/// The permission of a caller that may read and write partners.
const READ_WRITE: &[&str] = &["DeviceManagementServiceConfig.ReadWrite.All"];

/// The permission of a caller that may only read partners.
const READ_ONLY: &[&str] = &["DeviceManagementServiceConfig.Read.All"];

fn partner() -> Partner {
    Partner::restore(
        PartnerId::from_uuid(uuid::Uuid::from_u128(7)),
        NewPartner {
            display_name: DisplayName::parse("Mocked").expect("valid"),
            state: PartnerState::Enabled,
            last_heartbeat: Timestamp::MIN,
            platforms: Platforms::none(),
        },
    )
}

/// An authenticator that accepts the token `t` as an application holding `permissions`.
fn authenticator(permissions: &'static [&'static str]) -> MockCallerAuthenticator {
    let mut authenticator = MockCallerAuthenticator::new();
    authenticator.expect_authenticate().returning(move |token| {
        if token == "t" {
            Ok(Caller {
                tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
                object_id: "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11".into(),
                app_id: Some("app".into()),
                kind: CallerKind::Application,
                permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            })
        } else {
            Err(AuthenticationError {
                reason: "signature invalid".into(),
                keys_unavailable: false,
            })
        }
    });
    authenticator
}

fn limits() -> RequestLimits {
    RequestLimits {
        body_limit_bytes: 1024,
        request_timeout: Duration::from_secs(5),
        body_read_timeout: Duration::from_secs(5),
        max_concurrent_requests: 16,
        writes_per_caller_per_second: 1000.0,
        write_burst: 1000,
    }
}

/// The router over `mock`, served at `root_path`, for callers holding `permissions`, within
/// `limits`.
fn app_within(
    mock: MockPartnerUseCases,
    root_path: &str,
    permissions: &'static [&'static str],
    limits: RequestLimits,
) -> axum::Router {
    let state = AppState {
        partners: Arc::new(mock),
        operations: Arc::new(MockOperatorUseCases::new()),
        authenticator: Arc::new(authenticator(permissions)),
        public_root: ROOT.into(),
        body_limit_bytes: 1024,
        detached_creates: tokio_util::task::TaskTracker::new(),
    };
    router(state, root_path, limits)
}

fn app_with(
    mock: MockPartnerUseCases,
    root_path: &str,
    permissions: &'static [&'static str],
) -> axum::Router {
    app_within(mock, root_path, permissions, limits())
}

fn app(mock: MockPartnerUseCases, root_path: &str) -> axum::Router {
    app_with(mock, root_path, READ_WRITE)
}

/// A mock whose one create answers with `answer`.
fn creating(
    answer: impl Fn() -> Result<CreatePartnerOutput, CreatePartnerError> + Send + 'static,
) -> MockPartnerUseCases {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_create_partner()
        .times(1)
        .returning(move |_, _| answer());
    mock
}

/// Sends a valid create to the router over `mock`, served under `/beta`.
async fn send_create(mock: MockPartnerUseCases) -> (StatusCode, axum::http::HeaderMap, Value) {
    send(app(mock, "/beta"), post(COLLECTION)).await
}

fn post(path: &str) -> Request<Body> {
    request("POST", path, Some(r#"{"displayName":"Mocked"}"#))
}

/// A create of `body` as `content_type`, carrying the bearer `token`.
fn post_as(token: &str, content_type: &str, body: &'static str) -> Request<Body> {
    Request::post(COLLECTION)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request")
}

/// Sends `request` and returns the status, headers and JSON body.
async fn send(
    app: axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let (status, headers, bytes) = send_raw(app, request).await;
    (
        status,
        headers,
        serde_json::from_slice(&bytes).expect("JSON body"),
    )
}

/// What the Python SDK sends for a list (`docs/wire-contract.md`, "Queries").
const SDK_QUERY: &str = "$count=true&$filter=displayName%20eq%20%27A%20B%27&$orderby=displayName%20desc,id&$select=id,displayName&$skip=20&$top=10";

/// The refusal of `$top` where only a list accepts it.
const TOP_IS_REFUSED: &str = "query option '$top' is not supported on this request";

/// A case of a use-case error mapping: name, error, and the expected status and `error.code`.
type ErrorCase<E> = (&'static str, fn() -> E, (StatusCode, &'static str));

/// What an unknown id maps to.
const RESOURCE_NOT_FOUND: (StatusCode, &str) = (StatusCode::NOT_FOUND, "ResourceNotFound");

/// What a store failure maps to: an opaque 500.
const INTERNAL_SERVER_ERROR: (StatusCode, &str) =
    (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError");

/// Sends `request()` once per case to the mock `failing` makes answer with the case's error,
/// and checks the status and `error.code` it maps to, and that the cause does not leak.
async fn assert_error_mapping<E>(
    cases: &[ErrorCase<E>],
    failing: impl Fn(fn() -> E) -> MockPartnerUseCases,
    request: impl Fn() -> Request<Body>,
) {
    for &(case, error, (expected_status, expected_code)) in cases {
        let (status, _, body) = send(app(failing(error), "/beta"), request()).await;

        assert_eq!(status, expected_status, "case: {case}");
        assert_eq!(body["error"]["code"], expected_code, "case: {case}");
        assert!(!body.to_string().contains("pool"), "case: {case}");
    }
}

fn item_path() -> String {
    format!("{COLLECTION}/{}", partner().id())
}

/// A `method` request to `uri` carrying the accepted token, with a JSON `body` if given.
fn request(method: &str, uri: &str, body: Option<&str>) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", "Bearer t");
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned())),
        None => builder.body(Body::empty()),
    }
    .expect("request")
}

fn get(uri: &str) -> Request<Body> {
    request("GET", uri, None)
}

fn patch(uri: &str, body: &str) -> Request<Body> {
    request("PATCH", uri, Some(body))
}

fn delete(uri: &str) -> Request<Body> {
    request("DELETE", uri, None)
}

/// Sends `request` and returns the status, headers and raw body.
async fn send_raw(
    app: axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, bytes.to_vec())
}

fn header<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn next_cursor() -> Cursor {
    Cursor {
        values: vec![
            FilterValue::Text("Mocked".into()),
            FilterValue::Id(partner().id()),
        ],
    }
}

fn page(next: Option<Cursor>, total: Option<u64>) -> PartnerPage {
    PartnerPage {
        items: vec![partner()],
        next,
        total,
    }
}

fn sdk_list_query() -> ListQuery {
    ListQuery {
        filter: Some(Filter::Compare {
            field: FilterField::DisplayName,
            op: Comparison::Eq,
            value: FilterValue::Text("A B".into()),
        }),
        order: vec![
            SortKey {
                field: SortField::DisplayName,
                descending: true,
            },
            SortKey {
                field: SortField::Id,
                descending: false,
            },
        ],
        page_size: 10,
        skip: 20,
        after: None,
        count: true,
    }
}

#[tokio::test]
async fn an_unexpected_failure_is_an_opaque_500() {
    let mock = creating(|| {
        Err(CreatePartnerError::Unexpected(
            anyhow::anyhow!("SELECT secret FROM partners failed").context("disk on fire"),
        ))
    });

    let (status, _, body) = send_create(mock).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "InternalServerError");
    let text = body.to_string();
    assert!(
        !text.contains("SELECT") && !text.contains("disk"),
        "the cause must not leak: {text}"
    );
}

#[tokio::test]
async fn a_create_that_panics_in_its_own_task_is_an_opaque_500_in_graphs_shape() {
    let mock = creating(|| panic!("create panicked near the secret"));

    let (status, headers, body) = send_create(mock).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "InternalServerError");
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        header(&headers, "request-id")
    );
    assert!(!body.to_string().contains("secret"), "{body}");
}

#[tokio::test]
async fn a_refusal_by_graph_maps_to_400_for_payloads_and_502_otherwise() {
    for (graph_status, expected_status, expected_code) in [
        (400, StatusCode::BAD_REQUEST, "BadRequest"),
        (422, StatusCode::BAD_REQUEST, "BadRequest"),
        (404, StatusCode::BAD_GATEWAY, "BadGateway"),
        (405, StatusCode::BAD_GATEWAY, "BadGateway"),
    ] {
        let mock = creating(move || {
            Err(CreatePartnerError::GraphRejected {
                status: graph_status,
                code: Some("Request_BadRequest".into()),
                message: Some("graph says no".into()),
            })
        });

        let (status, _, body) = send_create(mock).await;

        let case = format!("graph status {graph_status}");
        assert_eq!(status, expected_status, "{case}");
        assert_eq!(body["error"]["code"], expected_code, "{case}");
        assert_eq!(
            body["error"]["innerError"]["code"], "Request_BadRequest",
            "{case}"
        );
    }
}

#[tokio::test]
async fn an_accepted_create_answers_202_with_location_and_body() {
    let mock = creating(|| Ok(CreatePartnerOutput::Accepted(partner())));

    let (status, headers, body) = send_create(mock).await;

    assert_eq!(status, StatusCode::ACCEPTED);
    let id = partner().id().to_string();
    assert_eq!(
        header(&headers, "location"),
        format!("{ROOT}/deviceManagement/complianceManagementPartners/{id}")
    );
    assert_eq!(body["id"], Value::String(id));
    assert_eq!(
        body["@odata.context"],
        format!("{ROOT}/$metadata#deviceManagement/complianceManagementPartners/$entity")
    );
}

#[tokio::test]
async fn a_store_failure_on_read_is_an_opaque_500() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_get_partner()
        .times(1)
        .returning(|_| Err(GetPartnerError::Unexpected(anyhow::anyhow!("pool closed"))));

    let (status, _, body) = send(app(mock, "/beta"), get(&item_path())).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.to_string().contains("pool"));
}

#[tokio::test]
async fn the_resource_can_be_served_at_the_root_path() {
    let mock = creating(|| Ok(CreatePartnerOutput::Created(partner())));

    let (status, _, _) = send(
        app(mock, ""),
        post("/deviceManagement/complianceManagementPartners"),
    )
    .await;

    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn validation_errors_never_reach_the_use_cases() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_create_partner().never();
    let request = post_as(
        "t",
        "application/json; charset=utf-8",
        r#"{"displayName":""}"#,
    );

    let (status, _, body) = send(app(mock, "/beta"), request).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["target"], "displayName");
}

#[tokio::test]
async fn a_refused_token_is_a_401_with_the_invalid_token_challenge_and_reaches_no_use_case() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_create_partner().never();
    let request = post_as("forged", "application/json", r#"{"displayName":"x"}"#);

    let (status, headers, body) = send(app(mock, "/beta"), request).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&headers, "www-authenticate"),
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(
        !body.to_string().contains("forged"),
        "the token must not be echoed"
    );
}

#[tokio::test]
async fn a_read_only_caller_may_read_but_not_write() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_create_partner().never();
    mock.expect_get_partner()
        .times(1)
        .returning(|_| Ok(partner()));

    let (write_status, write_headers, write_body) = send(
        app_with(MockPartnerUseCases::new(), "/beta", READ_ONLY),
        post(COLLECTION),
    )
    .await;
    let (read_status, _, _) = send(app_with(mock, "/beta", READ_ONLY), get(&item_path())).await;

    assert_eq!(write_status, StatusCode::FORBIDDEN);
    assert_eq!(
        header(&write_headers, "www-authenticate"),
        "Bearer error=\"insufficient_scope\""
    );
    assert_eq!(write_body["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(read_status, StatusCode::OK);
}

#[tokio::test]
async fn a_list_passes_the_typed_query_and_answers_with_count_selection_and_an_absolute_next_link()
{
    let mut mock = MockPartnerUseCases::new();
    mock.expect_list_partners()
        .withf(|query| *query == sdk_list_query())
        .times(1)
        .returning(|_| Ok(page(Some(next_cursor()), Some(42))));

    let (status, headers, body) = send(
        app(mock, "/beta"),
        get(&format!("{COLLECTION}?{SDK_QUERY}")),
    )
    .await;

    assert_eq!(status, StatusCode::OK);
    assert!(header(&headers, "content-type").starts_with("application/json"));
    assert_eq!(
        body["@odata.context"],
        format!("{ROOT}/$metadata#deviceManagement/complianceManagementPartners(id,displayName)")
    );
    assert_eq!(body["@odata.count"], serde_json::json!(42));
    assert_eq!(
        body["value"],
        serde_json::json!([{
            "@odata.type": "#microsoft.graph.complianceManagementPartner",
            "id": partner().id().to_string(),
            "displayName": "Mocked"
        }])
    );
    let link = body["@odata.nextLink"].as_str().expect("a next link");
    let prefix = format!(
        "{ROOT}/deviceManagement/complianceManagementPartners?$count=true&$filter=displayName%20eq%20%27A%20B%27&$orderby=displayName%20desc,id&$select=id,displayName&$top=10&$skiptoken="
    );
    assert!(link.starts_with(&prefix), "{link}");
    assert!(!link.contains("$skip="), "{link}");
}

#[tokio::test]
async fn following_the_next_link_reads_after_the_cursor_without_skipping() {
    let mut first = MockPartnerUseCases::new();
    first
        .expect_list_partners()
        .returning(|_| Ok(page(Some(next_cursor()), Some(42))));
    let (_, _, body) = send(
        app(first, "/beta"),
        get(&format!("{COLLECTION}?{SDK_QUERY}")),
    )
    .await;
    let link = body["@odata.nextLink"]
        .as_str()
        .expect("a next link")
        .to_owned();
    let mut second = MockPartnerUseCases::new();
    second
        .expect_list_partners()
        .withf(|query| {
            *query
                == ListQuery {
                    skip: 0,
                    after: Some(next_cursor()),
                    ..sdk_list_query()
                }
        })
        .times(1)
        .returning(|_| Ok(page(None, Some(42))));

    let path = link.strip_prefix("http://service.test").expect("our root");
    let (status, _, body) = send(app(second, "/beta"), get(path)).await;

    assert_eq!(status, StatusCode::OK);
    assert!(body.get("@odata.nextLink").is_none(), "{body}");
    assert_eq!(body["@odata.count"], 42);
}

#[tokio::test]
async fn a_plain_list_asks_for_the_default_page_and_has_no_count_or_link_on_the_last_page() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_list_partners()
        .withf(|query| *query == ListQuery::default())
        .times(1)
        .returning(|_| Ok(page(None, None)));

    let (status, _, body) = send(app(mock, "/beta"), get(COLLECTION)).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["@odata.context"],
        format!("{ROOT}/$metadata#deviceManagement/complianceManagementPartners")
    );
    assert!(body.get("@odata.count").is_none());
    assert!(body.get("@odata.nextLink").is_none());
    let item = &body["value"][0];
    assert_eq!(item["id"], partner().id().to_string());
    assert_eq!(item["partnerState"], "enabled");
    assert_eq!(item["linuxEnrollmentAssignments"], serde_json::json!([]));
    assert!(item.get("@odata.context").is_none());
}

#[tokio::test]
async fn a_bad_list_option_is_a_400_naming_it_and_reaches_no_use_case() {
    let cases = [
        ("$expand=*", "$expand is not supported"),
        ("$search=%22x%22", "$search is not supported"),
        ("$top=0", "$top: '0' is not a page size"),
        (
            "$filter=displayName%20eq%20%27x%27%20foo",
            "$filter: unexpected 'foo' at position 19",
        ),
        (
            "$orderby=colour",
            "$orderby: 'colour' is not a property you can order by",
        ),
        ("$skiptoken=nonsense", "$skiptoken: not a skip token"),
    ];
    for (query, message) in cases {
        let mut mock = MockPartnerUseCases::new();
        mock.expect_list_partners().never();

        let (status, _, body) =
            send(app(mock, "/beta"), get(&format!("{COLLECTION}?{query}"))).await;

        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["error"]["code"], "BadRequest", "{query}");
        let text = body["error"]["message"].as_str().unwrap_or_default();
        assert!(text.starts_with(message), "{query}: {text}");
    }
}

#[tokio::test]
async fn a_cursor_the_store_refuses_is_a_400() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_list_partners()
        .times(1)
        .returning(|_| Err(ListPartnersError::BadCursor));

    let (status, _, body) = send(app(mock, "/beta"), get(COLLECTION)).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        "the $skiptoken does not belong to this query"
    );
}

#[tokio::test]
async fn a_store_failure_on_list_is_an_opaque_500() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_list_partners().times(1).returning(|_| {
        Err(ListPartnersError::Unexpected(anyhow::anyhow!(
            "pool closed"
        )))
    });

    let (status, _, body) = send(app(mock, "/beta"), get(COLLECTION)).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.to_string().contains("pool"));
}

#[tokio::test]
async fn count_answers_a_plain_text_integer_honouring_the_filter() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_get_partner().never();
    mock.expect_count_partners()
        .withf(|filter| {
            *filter
                == Some(Filter::Compare {
                    field: FilterField::Onboarded(Platform::Ios),
                    op: Comparison::Eq,
                    value: FilterValue::Bool(true),
                })
        })
        .times(1)
        .returning(|_| Ok(3));
    let mut request = get(&format!(
        "{COLLECTION}/$count?$filter=iosOnboarded%20eq%20true"
    ));
    request
        .headers_mut()
        .insert("accept", "text/plain;q=0.9".parse().expect("header"));

    let (status, headers, body) = send_raw(app(mock, "/beta"), request).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "text/plain");
    assert_eq!(body, b"3");
}

#[tokio::test]
async fn count_without_a_filter_counts_everything_and_refuses_other_options() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_count_partners()
        .withf(Option::is_none)
        .times(1)
        .returning(|_| Ok(0));
    let (status, _, body) =
        send_raw(app(mock, "/beta"), get(&format!("{COLLECTION}/$count"))).await;
    let mut refusing = MockPartnerUseCases::new();
    refusing.expect_count_partners().never();

    let (refused, _, error) = send(
        app(refusing, "/beta"),
        get(&format!("{COLLECTION}/$count?$top=1")),
    )
    .await;

    assert_eq!((status, body.as_slice()), (StatusCode::OK, b"0".as_slice()));
    assert_eq!(refused, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["message"], TOP_IS_REFUSED);
}

#[tokio::test]
async fn get_with_select_returns_only_the_selected_properties_and_a_projected_context() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_get_partner()
        .withf(|id| *id == partner().id())
        .times(1)
        .returning(|_| Ok(partner()));

    let (status, _, body) = send(
        app(mock, "/beta"),
        get(&format!("{}?$select=partnerState,displayName", item_path())),
    )
    .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({
            "@odata.context": format!("{ROOT}/$metadata#deviceManagement/complianceManagementPartners(displayName,partnerState)/$entity"),
            "@odata.type": "#microsoft.graph.complianceManagementPartner",
            "id": partner().id().to_string(),
            "displayName": "Mocked",
            "partnerState": "enabled"
        })
    );
}

#[tokio::test]
async fn get_refuses_options_other_than_select() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_get_partner().never();

    let (status, _, body) = send(
        app(mock, "/beta"),
        get(&format!("{}?$expand=assignments", item_path())),
    )
    .await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("$expand is not supported")
    );
}

#[tokio::test]
async fn patch_merges_the_body_and_answers_200_with_the_whole_entity() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_update_partner()
        .withf(|id, patch, context| {
            *id == partner().id()
                && patch.display_name.as_ref().map(DisplayName::as_str) == Some("Renamed")
                && patch.state.is_none()
                && patch.platforms.iter().all(|(_, change)| change.is_empty())
                && !context.request_id.is_empty()
                && context
                    .caller
                    .contains("0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11")
        })
        .times(1)
        .returning(|_, _, _| Ok(partner()));

    let (status, headers, body) = send(
        app(mock, "/beta"),
        patch(&item_path(), r#"{"displayName":"Renamed"}"#),
    )
    .await;

    assert_eq!(status, StatusCode::OK);
    assert!(header(&headers, "content-type").starts_with("application/json"));
    assert!(headers.get("preference-applied").is_none());
    assert_eq!(
        body["@odata.context"],
        format!("{ROOT}/$metadata#deviceManagement/complianceManagementPartners/$entity")
    );
    assert_eq!(body["id"], partner().id().to_string());
    assert_eq!(
        body["lastHeartbeatDateTime"],
        "0001-01-01T00:00:00.0000000Z"
    );
    assert_eq!(body["windowsEnrollmentAssignments"], serde_json::json!([]));
}

#[tokio::test]
async fn patch_with_return_minimal_answers_204_without_a_body() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_update_partner()
        .times(1)
        .returning(|_, _, _| Ok(partner()));
    let mut request = patch(&item_path(), r#"{"iosOnboarded":true}"#);
    request
        .headers_mut()
        .insert("prefer", "return=minimal".parse().expect("header"));

    let (status, headers, body) = send_raw(app(mock, "/beta"), request).await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(header(&headers, "preference-applied"), "return=minimal");
    assert!(body.is_empty());
}

#[tokio::test]
async fn patch_accepts_the_sdks_read_modify_write_body() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_update_partner()
        .withf(|_, patch, _| {
            patch.display_name.as_ref().map(DisplayName::as_str) == Some("Mocked")
                && patch.state == Some(PartnerState::Enabled)
                && patch.last_heartbeat.is_some()
                && patch
                    .platforms
                    .iter()
                    .all(|(_, change)| change.onboarded.is_some() && change.assignments.is_some())
        })
        .times(1)
        .returning(|_, _, _| Ok(partner()));
    let id = partner().id().to_string();
    let body = serde_json::json!({
        "id": id.to_uppercase(),
        "@odata.type": "#microsoft.graph.complianceManagementPartner",
        "@odata.context": format!("{ROOT}/$metadata#deviceManagement/complianceManagementPartners/$entity"),
        "displayName": "Mocked",
        "lastHeartbeatDateTime": "2017-01-01T07:59:37.917497+00:00",
        "partnerState": "enabled",
        "macOsOnboarded": false, "windowsOnboarded": false, "androidOnboarded": false,
        "iosOnboarded": false, "linuxOnboarded": false,
        "macOsEnrollmentAssignments": [], "windowsEnrollmentAssignments": [],
        "androidEnrollmentAssignments": [],
        "iosEnrollmentAssignments": [{
            "@odata.type": "#microsoft.graph.complianceManagementPartnerAssignment",
            "target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget",
                       "deviceAndAppManagementAssignmentFilterId": null,
                       "deviceAndAppManagementAssignmentFilterType": "none"}
        }],
        "linuxEnrollmentAssignments": []
    });

    let (status, _, _) = send(app(mock, "/beta"), patch(&item_path(), &body.to_string())).await;

    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn patch_with_another_id_in_the_body_is_a_400_and_changes_nothing() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_update_partner().never();

    let (status, _, body) = send(
        app(mock, "/beta"),
        patch(
            &item_path(),
            r#"{"id":"d6d46d0d-6d0d-d6d4-0d6d-d4d60d6dd4d6","displayName":"x"}"#,
        ),
    )
    .await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "BadRequest");
    assert_eq!(body["error"]["target"], "id");
    assert_eq!(
        body["error"]["message"],
        format!(
            "the id in the body ('d6d46d0d-6d0d-d6d4-0d6d-d4d60d6dd4d6') is not the id in the URL ('{}')",
            partner().id()
        )
    );
}

#[tokio::test]
async fn patch_maps_each_update_error() {
    let cases: [ErrorCase<UpdatePartnerError>; 4] = [
        (
            "unknown id",
            || UpdatePartnerError::NotFound(partner().id()),
            RESOURCE_NOT_FOUND,
        ),
        (
            "name taken",
            || UpdatePartnerError::DuplicateDisplayName {
                display_name: "Taken".into(),
            },
            (StatusCode::CONFLICT, "nameAlreadyExists"),
        ),
        (
            "invariant",
            || {
                UpdatePartnerError::Invalid(PartnerError::HeartbeatInFuture {
                    heartbeat: Timestamp::MAX,
                    latest_allowed: Timestamp::MIN,
                })
            },
            (StatusCode::BAD_REQUEST, "BadRequest"),
        ),
        (
            "store failure",
            || UpdatePartnerError::Unexpected(anyhow::anyhow!("pool closed")),
            INTERNAL_SERVER_ERROR,
        ),
    ];
    assert_error_mapping(
        &cases,
        |error| {
            let mut mock = MockPartnerUseCases::new();
            mock.expect_update_partner()
                .times(1)
                .returning(move |_, _, _| Err(error()));
            mock
        },
        || patch(&item_path(), r#"{"displayName":"Taken"}"#),
    )
    .await;
}

#[tokio::test]
async fn patch_refuses_bodies_as_create_does() {
    let cases = [
        (
            "not JSON content",
            Some("text/plain"),
            r#"{"displayName":"x"}"#.to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no content type",
            None,
            r#"{"displayName":"x"}"#.to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "malformed JSON",
            Some("application/json"),
            "{".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown property",
            Some("application/json"),
            r#"{"colour":"red"}"#.to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "over the size limit",
            Some("application/json"),
            format!(r#"{{"displayName":"{}"}}"#, "x".repeat(2048)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (case, content_type, body, expected) in cases {
        let mut mock = MockPartnerUseCases::new();
        mock.expect_update_partner().never();
        let mut request = Request::patch(item_path()).header("authorization", "Bearer t");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Body::from(body)).expect("request");

        let (status, _, _) = send_raw(app(mock, "/beta"), request).await;

        assert_eq!(status, expected, "case: {case}");
    }
}

#[tokio::test]
async fn an_id_that_is_not_a_guid_is_a_404_for_every_method_without_reaching_a_use_case() {
    let path = format!("{COLLECTION}/a%2Fb%20c");
    for request in [
        get(&path),
        patch(&path, r#"{"displayName":"x"}"#),
        delete(&path),
    ] {
        let method = request.method().clone();
        let mut mock = MockPartnerUseCases::new();
        mock.expect_get_partner().never();
        mock.expect_update_partner().never();
        mock.expect_delete_partner().never();

        let (status, _, body) = send(app(mock, "/beta"), request).await;

        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(
            body["error"]["message"], "no complianceManagementPartner has id 'a/b c'",
            "{method}"
        );
    }
}

#[tokio::test]
async fn delete_answers_204_with_no_body() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_delete_partner()
        .withf(|id, context| *id == partner().id() && !context.request_id.is_empty())
        .times(1)
        .returning(|_, _| Ok(()));

    let (status, headers, body) = send_raw(app(mock, "/beta"), delete(&item_path())).await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    assert!(headers.get("content-type").is_none());
    assert!(!header(&headers, "request-id").is_empty());
}

#[tokio::test]
async fn delete_maps_each_delete_error() {
    let cases: [ErrorCase<DeletePartnerError>; 2] = [
        (
            "unknown id",
            || DeletePartnerError::NotFound(partner().id()),
            RESOURCE_NOT_FOUND,
        ),
        (
            "store failure",
            || DeletePartnerError::Unexpected(anyhow::anyhow!("pool closed")),
            INTERNAL_SERVER_ERROR,
        ),
    ];
    assert_error_mapping(
        &cases,
        |error| {
            let mut mock = MockPartnerUseCases::new();
            mock.expect_delete_partner()
                .times(1)
                .returning(move |_, _| Err(error()));
            mock
        },
        || delete(&item_path()),
    )
    .await;
}

#[tokio::test]
async fn writes_refuse_query_options() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_delete_partner().never();
    mock.expect_update_partner().never();

    let (delete_status, _, _) = send(
        app(MockPartnerUseCases::new(), "/beta"),
        delete(&format!("{}?$select=id", item_path())),
    )
    .await;
    let (patch_status, _, body) = send(
        app(mock, "/beta"),
        patch(&format!("{}?$top=1", item_path()), "{}"),
    )
    .await;

    assert_eq!(delete_status, StatusCode::BAD_REQUEST);
    assert_eq!(patch_status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], TOP_IS_REFUSED);
}

#[tokio::test]
async fn a_read_only_caller_may_list_and_count_but_not_patch_or_delete() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_list_partners()
        .returning(|_| Ok(page(None, None)));
    mock.expect_count_partners().returning(|_| Ok(1));
    mock.expect_update_partner().never();
    mock.expect_delete_partner().never();
    let app = app_with(mock, "/beta", READ_ONLY);

    let (list, _, _) = send_raw(app.clone(), get(COLLECTION)).await;
    let (count, _, _) = send_raw(app.clone(), get(&format!("{COLLECTION}/$count"))).await;
    let (update, _, _) = send_raw(app.clone(), patch(&item_path(), "{}")).await;
    let (removal, _, _) = send_raw(app, delete(&item_path())).await;

    assert_eq!(
        [list, count, update, removal],
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::FORBIDDEN,
            StatusCode::FORBIDDEN
        ]
    );
}

#[tokio::test]
async fn unsupported_methods_are_405_with_the_allowed_ones() {
    let item = item_path();
    let count = format!("{COLLECTION}/$count");
    let cases = [
        ("PUT", COLLECTION, "GET, POST"),
        ("DELETE", COLLECTION, "GET, POST"),
        ("PATCH", COLLECTION, "GET, POST"),
        ("POST", item.as_str(), "GET, PATCH, DELETE"),
        ("PUT", item.as_str(), "GET, PATCH, DELETE"),
        ("POST", count.as_str(), "GET"),
        ("DELETE", count.as_str(), "GET"),
    ];
    for (method, uri, allow) in cases {
        let request = request(method, uri, Some("{}"));

        let (status, headers, body) = send(app(MockPartnerUseCases::new(), "/beta"), request).await;

        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(header(&headers, "allow"), allow, "{method} {uri}");
        assert_eq!(body["error"]["code"], "BadRequest", "{method} {uri}");
    }
}

/// The `request.id` and `http.route` fields of every `http_request` span of this test binary.
/// Installed once as the global subscriber: a per-test (thread-local) subscriber would race with
/// the other tests of the binary over the callsite's cached interest.
fn recorded_routes() -> &'static std::sync::Mutex<Vec<(String, String)>> {
    use tracing_subscriber::layer::SubscriberExt;
    static ROUTES: std::sync::OnceLock<&'static std::sync::Mutex<Vec<(String, String)>>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let routes: &'static std::sync::Mutex<Vec<(String, String)>> =
            Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(RouteRecorder(routes)),
        )
        .expect("the only global subscriber of this test binary");
        routes
    })
}

/// Records the `request.id` and `http.route` fields of every `http_request` span.
struct RouteRecorder(&'static std::sync::Mutex<Vec<(String, String)>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RouteRecorder {
    fn on_new_span(
        &self,
        attributes: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        #[derive(Default)]
        struct Fields {
            request_id: String,
            route: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "request.id" => self.request_id = format!("{value:?}"),
                    "http.route" => self.route = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        if attributes.metadata().name() == "http_request" {
            let mut fields = Fields::default();
            attributes.record(&mut fields);
            self.0
                .lock()
                .expect("no panic while recording")
                .push((fields.request_id, fields.route));
        }
    }
}

#[tokio::test]
async fn the_request_span_names_the_route_template_not_the_raw_path() {
    let routes = recorded_routes();
    let id = "d6d46d0d-6d0d-d6d4-0d6d-d4d60d6dd4d6";
    let mut mock = MockPartnerUseCases::new();
    mock.expect_get_partner()
        .returning(|id| Err(GetPartnerError::NotFound(id)));

    let (status, headers, _) = send(
        app(mock, "/beta"),
        get(&format!("{COLLECTION}/{id}?$select=id")),
    )
    .await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    let request_id = headers["request-id"].to_str().expect("ascii").to_owned();
    let ours: Vec<String> = routes
        .lock()
        .expect("no panic while recording")
        .iter()
        .filter(|(recorded, _)| *recorded == request_id)
        .map(|(_, route)| route.clone())
        .collect();
    assert_eq!(
        ours,
        [format!("{COLLECTION}/{{id}}")],
        "no id and no query string in the span"
    );
}

// Metrics

/// A Prometheus recorder local to the test's thread, and the means to read it. The tests run
/// on one thread, so the recorder sees every count they cause and no other test's.
struct Recording {
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
}

impl Recording {
    fn new() -> Self {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&cmp_http_api::request_metrics::REQUEST_DURATION_BUCKETS)
            .expect("buckets")
            .build_recorder();
        Self { recorder }
    }

    /// The value of `series` (a name with its labels, as rendered), if recorded.
    fn sample(&self, series: &str) -> Option<f64> {
        self.recorder
            .handle()
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

#[tokio::test]
async fn requests_are_counted_by_route_template_method_and_status_and_timed() {
    let recording = Recording::new();
    let _local = metrics::set_default_local_recorder(&recording.recorder);
    let mut mock = MockPartnerUseCases::new();
    mock.expect_create_partner()
        .times(1)
        .returning(|_, _| Ok(CreatePartnerOutput::Created(partner())));
    mock.expect_get_partner()
        .returning(|id| Err(GetPartnerError::NotFound(id)));
    let app = app(mock, "/beta");

    send_raw(app.clone(), post(COLLECTION)).await;
    send_raw(app.clone(), get(&item_path())).await;
    send_raw(app.clone(), get("/beta/somewhere/else")).await;
    send_raw(app, request("BREW", COLLECTION, None)).await;

    let item = format!("{COLLECTION}/{{id}}");
    for (series, expected) in [
        (
            format!(
                r#"cmp_http_requests_total{{route="{COLLECTION}",method="POST",status="201"}}"#
            ),
            1.0,
        ),
        (
            format!(r#"cmp_http_requests_total{{route="{item}",method="GET",status="404"}}"#),
            1.0,
        ),
        (
            r#"cmp_http_requests_total{route="(unmatched)",method="GET",status="404"}"#.to_owned(),
            1.0,
        ),
        (
            format!(
                r#"cmp_http_requests_total{{route="{COLLECTION}",method="other",status="405"}}"#
            ),
            1.0,
        ),
        (
            format!(r#"cmp_http_request_duration_seconds_count{{route="{item}",method="GET"}}"#),
            1.0,
        ),
        (
            format!(
                r#"cmp_http_request_duration_seconds_bucket{{route="{item}",method="GET",le="+Inf"}}"#
            ),
            1.0,
        ),
    ] {
        assert_eq!(recording.sample(&series), Some(expected), "{series}");
    }
}

#[tokio::test]
async fn refusals_are_counted_by_reason_rate_and_load() {
    let recording = Recording::new();
    let _local = metrics::set_default_local_recorder(&recording.recorder);
    let read_only = || app_with(MockPartnerUseCases::new(), "/beta", READ_ONLY);
    let with_authorization = |value: &str| {
        Request::get(COLLECTION)
            .header("authorization", value)
            .body(Body::empty())
            .expect("request")
    };
    let limited = |limits: RequestLimits| {
        let mut mock = MockPartnerUseCases::new();
        mock.expect_delete_partner().returning(|_, _| Ok(()));
        app_within(mock, "/beta", READ_WRITE, limits)
    };
    let one_write = limited(RequestLimits {
        writes_per_caller_per_second: 0.001,
        write_burst: 1,
        ..limits()
    });
    let shedding = limited(RequestLimits {
        max_concurrent_requests: 0,
        ..limits()
    });

    let no_header = Request::get(COLLECTION)
        .body(Body::empty())
        .expect("request");
    send_raw(read_only(), no_header).await;
    send_raw(read_only(), with_authorization("Basic dXNlcjpwYXNz")).await;
    send_raw(read_only(), with_authorization("Bearer not-t")).await;
    send_raw(read_only(), post(COLLECTION)).await;
    let (first_write, _, _) = send_raw(one_write.clone(), delete(&item_path())).await;
    let (second_write, _, _) = send_raw(one_write, delete(&item_path())).await;
    let (shed, _, _) = send_raw(shedding, get(COLLECTION)).await;

    assert_eq!(first_write, StatusCode::NO_CONTENT);
    assert_eq!(second_write, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(shed, StatusCode::SERVICE_UNAVAILABLE);
    for (series, expected) in [
        (r#"cmp_auth_refusals_total{reason="missing_token"}"#, 1.0),
        (r#"cmp_auth_refusals_total{reason="malformed_header"}"#, 1.0),
        (r#"cmp_auth_refusals_total{reason="invalid_token"}"#, 1.0),
        (
            r#"cmp_auth_refusals_total{reason="missing_permission"}"#,
            1.0,
        ),
        ("cmp_http_rate_limited_total", 1.0),
        ("cmp_http_load_shed_total", 1.0),
    ] {
        assert_eq!(recording.sample(series), Some(expected), "{series}");
    }
}
