//! The router driven in-process (`oneshot`) with mocked use cases: one test per use-case
//! error mapping that the end-to-end tests cannot provoke with a healthy store.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cmp_application::{
    AuthenticationError, Caller, CallerKind, CreatePartnerError, CreatePartnerOutput,
    GetPartnerError, MockCallerAuthenticator, MockOperatorUseCases, MockPartnerUseCases,
};
use cmp_domain::{DisplayName, NewPartner, Partner, PartnerId, PartnerState, Platforms, Timestamp};
use cmp_http_api::{AppState, RequestLimits, router};
use serde_json::Value;
use tower::ServiceExt;

const ROOT: &str = "http://service.test/beta";

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

fn app_with(
    mock: MockPartnerUseCases,
    root_path: &str,
    permissions: &'static [&'static str],
) -> axum::Router {
    let state = AppState {
        partners: Arc::new(mock),
        operations: Arc::new(MockOperatorUseCases::new()),
        authenticator: Arc::new(authenticator(permissions)),
        public_root: ROOT.into(),
        body_limit_bytes: 1024,
    };
    router(state, root_path, limits())
}

fn app(mock: MockPartnerUseCases, root_path: &str) -> axum::Router {
    app_with(
        mock,
        root_path,
        &["DeviceManagementServiceConfig.ReadWrite.All"],
    )
}

fn post(path: &str) -> Request<Body> {
    Request::post(path)
        .header("authorization", "Bearer t")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"displayName":"Mocked"}"#))
        .expect("request")
}

async fn send(
    app: axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        headers,
        serde_json::from_slice(&bytes).expect("JSON body"),
    )
}

#[tokio::test]
async fn an_unexpected_failure_is_an_opaque_500() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_create_partner().times(1).returning(|_, _| {
        Err(CreatePartnerError::Unexpected(
            anyhow::anyhow!("SELECT secret FROM partners failed").context("disk on fire"),
        ))
    });

    let (status, _, body) = send(
        app(mock, "/beta"),
        post("/beta/deviceManagement/complianceManagementPartners"),
    )
    .await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "InternalServerError");
    let text = body.to_string();
    assert!(
        !text.contains("SELECT") && !text.contains("disk"),
        "the cause must not leak: {text}"
    );
}

#[tokio::test]
async fn a_refusal_by_graph_maps_to_400_for_payloads_and_502_otherwise() {
    for (graph_status, expected_status, expected_code) in [
        (400, StatusCode::BAD_REQUEST, "BadRequest"),
        (422, StatusCode::BAD_REQUEST, "BadRequest"),
        (404, StatusCode::BAD_GATEWAY, "BadGateway"),
        (405, StatusCode::BAD_GATEWAY, "BadGateway"),
    ] {
        let mut mock = MockPartnerUseCases::new();
        mock.expect_create_partner()
            .times(1)
            .returning(move |_, _| {
                Err(CreatePartnerError::GraphRejected {
                    status: graph_status,
                    code: Some("Request_BadRequest".into()),
                    message: Some("graph says no".into()),
                })
            });

        let (status, _, body) = send(
            app(mock, "/beta"),
            post("/beta/deviceManagement/complianceManagementPartners"),
        )
        .await;

        assert_eq!(status, expected_status, "graph status {graph_status}");
        assert_eq!(
            body["error"]["code"], expected_code,
            "graph status {graph_status}"
        );
        assert_eq!(
            body["error"]["innerError"]["code"], "Request_BadRequest",
            "graph status {graph_status}"
        );
    }
}

#[tokio::test]
async fn an_accepted_create_answers_202_with_location_and_body() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_create_partner()
        .times(1)
        .returning(|_, _| Ok(CreatePartnerOutput::Accepted(partner())));

    let (status, headers, body) = send(
        app(mock, "/beta"),
        post("/beta/deviceManagement/complianceManagementPartners"),
    )
    .await;

    assert_eq!(status, StatusCode::ACCEPTED);
    let id = partner().id().to_string();
    assert_eq!(
        headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("{ROOT}/deviceManagement/complianceManagementPartners/{id}").as_str())
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
    let request = Request::get(format!(
        "/beta/deviceManagement/complianceManagementPartners/{}",
        partner().id()
    ))
    .header("authorization", "Bearer t")
    .body(Body::empty())
    .expect("request");

    let (status, _, body) = send(app(mock, "/beta"), request).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.to_string().contains("pool"));
}

#[tokio::test]
async fn the_resource_can_be_served_at_the_root_path() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_create_partner()
        .times(1)
        .returning(|_, _| Ok(CreatePartnerOutput::Created(partner())));

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
    let request = Request::post("/beta/deviceManagement/complianceManagementPartners")
        .header("authorization", "Bearer t")
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(r#"{"displayName":""}"#))
        .expect("request");

    let (status, _, body) = send(app(mock, "/beta"), request).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["target"], "displayName");
}

#[tokio::test]
async fn a_refused_token_is_a_401_with_the_invalid_token_challenge_and_reaches_no_use_case() {
    let mut mock = MockPartnerUseCases::new();
    mock.expect_create_partner().never();
    let request = Request::post("/beta/deviceManagement/complianceManagementPartners")
        .header("authorization", "Bearer forged")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"displayName":"x"}"#))
        .expect("request");

    let (status, headers, body) = send(app(mock, "/beta"), request).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer error=\"invalid_token\"")
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
    let read_only: &'static [&'static str] = &["DeviceManagementServiceConfig.Read.All"];
    let get = Request::get(format!(
        "/beta/deviceManagement/complianceManagementPartners/{}",
        partner().id()
    ))
    .header("authorization", "Bearer t")
    .body(Body::empty())
    .expect("request");

    let (write_status, write_headers, write_body) = send(
        app_with(MockPartnerUseCases::new(), "/beta", read_only),
        post("/beta/deviceManagement/complianceManagementPartners"),
    )
    .await;
    let (read_status, _, _) = send(app_with(mock, "/beta", read_only), get).await;

    assert_eq!(write_status, StatusCode::FORBIDDEN);
    assert_eq!(
        write_headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer error=\"insufficient_scope\"")
    );
    assert_eq!(write_body["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(read_status, StatusCode::OK);
}
