//! The whole service in `graph` mode against local fakes of Entra ID's token endpoint and of
//! Microsoft Graph: the seed request is provisioned with exactly one token request and one POST.

use cmp_server::config::GraphMode;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::create::expected_seed_body;
use crate::helpers::{SEED_REQUEST, json_body, spawn_app_with};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const GRAPH_ID: &str = "3c2a8f55-9a1e-4a43-8a61-0c5f7f1b2d10";

#[tokio::test]
async fn graph_mode_provisions_the_seed_partner_with_one_token_request_and_one_post() {
    let entra = MockServer::start().await;
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_secret=fake-secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "fake-access-token"
        })))
        .expect(1)
        .mount(&entra)
        .await;
    Mock::given(method("POST"))
        .and(path("/beta/deviceManagement/complianceManagementPartners"))
        .and(header("authorization", "Bearer fake-access-token"))
        .and(header("content-type", "application/json"))
        .respond_with(move |request: &wiremock::Request| {
            let mut created: Value =
                serde_json::from_slice(&request.body).expect("the POST body is JSON");
            created["id"] = Value::String(GRAPH_ID.into());
            ResponseTemplate::new(201)
                .set_body_json(created)
                .insert_header("request-id", "graph-request-1")
        })
        .expect(1)
        .mount(&graph)
        .await;
    let (entra_uri, graph_uri) = (entra.uri(), graph.uri());
    let app = spawn_app_with(move |settings| {
        settings.graph.mode = GraphMode::Graph;
        settings.graph.tenant_id = TENANT.parse().expect("GUID");
        settings.graph.client.root = format!("{graph_uri}/beta");
        settings.graph.client.authority = entra_uri;
        settings.graph.client.client_id = CLIENT_ID.into();
        settings.graph.client.client_secret = Some(SecretString::from("fake-secret".to_owned()));
    })
    .await;

    let response = app.post_partner(SEED_REQUEST).await;

    assert_eq!(response.status(), 201);
    let body = json_body(response).await;
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(body, expected_seed_body(&id, &app.root));
    assert_eq!(app.outbox_state(&id).await, "delivered");
    let posted: Value =
        serde_json::from_slice(&graph.received_requests().await.expect("recorded")[0].body)
            .expect("JSON");
    assert_eq!(posted["displayName"], "Display Name value");
    assert!(posted.get("id").is_none(), "Graph assigns the id");
    assert_eq!(
        posted["macOsEnrollmentAssignments"][0]["target"]["collectionId"],
        "Collection Id value"
    );
    // `expect(1)` on both fakes is verified when they drop: one token request, one POST.
}
