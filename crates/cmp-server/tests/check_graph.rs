//! `cmp-server check-graph` against local fakes of Entra ID and Microsoft Graph.

use std::path::PathBuf;

use cmp_server::check::check_graph;
use cmp_server::config::{Environment, GraphMode, Settings, load_from};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

fn settings(entra: &MockServer, graph: &MockServer) -> Settings {
    let config_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config"));
    let mut settings =
        load_from(&config_dir, Environment::Test).expect("the shipped test config loads");
    settings.graph.mode = GraphMode::Graph;
    settings.graph.tenant_id = TENANT.parse().expect("GUID");
    settings.graph.client.root = format!("{}/beta", graph.uri());
    settings.graph.client.authority = entra.uri();
    settings.graph.client.client_id = "11111111-2222-3333-4444-555555555555".into();
    settings.graph.client.client_secret = Some(SecretString::from("check-secret".to_owned()));
    settings
}

async fn run(settings: &Settings) -> (bool, String) {
    let mut out = Vec::new();
    let healthy = check_graph(settings, &mut out)
        .await
        .expect("the check runs");
    (healthy, String::from_utf8(out).expect("UTF-8 report"))
}

#[tokio::test]
async fn a_working_configuration_lists_the_tenants_partners_and_says_ok() {
    let (entra, graph) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "t"}),
        ))
        .expect(1)
        .mount(&entra)
        .await;
    Mock::given(method("GET"))
        .and(path("/beta/deviceManagement/complianceManagementPartners"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"id": "a1", "displayName": "Partner A"}, {"id": "b2", "displayName": "Partner B"}]})))
        .expect(1)
        .mount(&graph)
        .await;

    let (healthy, report) = run(&settings(&entra, &graph)).await;

    assert!(healthy, "{report}");
    assert!(
        report.contains("partners:  2") && report.contains("Partner B"),
        "{report}"
    );
    assert!(
        report
            .trim_end()
            .ends_with("OK: Microsoft Graph answered for this tenant"),
        "{report}"
    );
    assert!(
        !report.contains("check-secret"),
        "the secret must never be printed"
    );
}

#[tokio::test]
async fn a_refused_secret_is_reported_with_its_aadsts_code_and_graph_is_not_called() {
    let (entra, graph) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "error_codes": [7000215],
            "trace_id": "trace-1",
            "correlation_id": "corr-1"
        })))
        .expect(1)
        .mount(&entra)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&graph)
        .await;

    let (healthy, report) = run(&settings(&entra, &graph)).await;

    assert!(!healthy, "{report}");
    for expected in [
        "REFUSED",
        "invalid_client",
        "AADSTS7000215",
        "trace-1",
        "corr-1",
        "FAIL",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected} in:\n{report}"
        );
    }
}

#[tokio::test]
async fn a_403_from_graph_points_at_the_missing_permission() {
    let (entra, graph) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "t"}),
        ))
        .mount(&entra)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"error": {"code": "Forbidden", "message": "denied"}})),
        )
        .mount(&graph)
        .await;

    let (healthy, report) = run(&settings(&entra, &graph)).await;

    assert!(!healthy, "{report}");
    assert!(
        report.contains("DeviceManagementServiceConfig.ReadWrite.All"),
        "{report}"
    );
}

#[tokio::test]
async fn the_check_refuses_the_simulated_mode() {
    let (entra, graph) = (MockServer::start().await, MockServer::start().await);
    let mut settings = settings(&entra, &graph);
    settings.graph.mode = GraphMode::Simulated;

    let (healthy, report) = run(&settings).await;

    assert!(!healthy);
    assert!(report.contains("CMP__GRAPH__MODE=graph"), "{report}");
}
