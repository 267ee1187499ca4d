//! `cmp-server check-graph` against local fakes of Entra ID and Microsoft Graph.

use std::path::PathBuf;

use cmp_graph_client::{AzureEnvironment, CredentialKind};
use cmp_server::check::check_graph;
use cmp_server::config::{Environment, GraphMode, Settings, load_from};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// Where the fake serves the managed identity endpoints.
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
const APP_SERVICE_PATH: &str = "/msi/token";
const IDENTITY_HEADER: &str = "identity-header-value";

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

/// A fake Graph that fails the test if it receives any request.
async fn graph_never_called() -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&graph)
        .await;
    graph
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
        report.contains("partners:   2") && report.contains("Partner B"),
        "{report}"
    );
    assert!(report.contains("credential: client secret"), "{report}");
    assert!(
        report
            .trim_end()
            .ends_with("OK (credential: client secret): Microsoft Graph answered for this tenant"),
        "{report}"
    );
    assert!(
        !report.contains("check-secret"),
        "the secret must never be printed"
    );
}

#[tokio::test]
async fn a_refused_secret_is_reported_with_its_aadsts_code_and_graph_is_not_called() {
    let (entra, graph) = (MockServer::start().await, graph_never_called().await);
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

    let (healthy, report) = run(&settings(&entra, &graph)).await;

    assert!(!healthy, "{report}");
    for expected in [
        "REFUSED",
        "invalid_client",
        "AADSTS7000215",
        "trace-1",
        "corr-1",
        "FAIL (credential: client secret): no token",
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

/// A fake Graph that lists one partner.
async fn graph_listing_one_partner() -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/beta/deviceManagement/complianceManagementPartners"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"value": [{"id": "a1", "displayName": "Partner A"}]})),
        )
        .mount(&graph)
        .await;
    graph
}

/// A fake Entra ID and identity endpoints, each answering with a token: the client-credentials
/// POST, and the GETs of both managed identity forms (with the header each form requires).
async fn token_endpoints() -> MockServer {
    let entra = MockServer::start().await;
    let token = ResponseTemplate::new(200)
        .set_body_json(json!({"token_type": "Bearer", "expires_in": "3599", "access_token": "t"}));
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(token.clone())
        .mount(&entra)
        .await;
    Mock::given(method("GET"))
        .and(path(IMDS_PATH))
        .and(header("Metadata", "true"))
        .and(query_param("api-version", "2018-02-01"))
        .respond_with(token.clone())
        .mount(&entra)
        .await;
    Mock::given(method("GET"))
        .and(path(APP_SERVICE_PATH))
        .and(header("X-IDENTITY-HEADER", IDENTITY_HEADER))
        .and(query_param("api-version", "2019-08-01"))
        .respond_with(token)
        .mount(&entra)
        .await;
    entra
}

/// Sets a credential up in the settings, given the fake identity endpoint's URI and a
/// federated token file.
type Configure = fn(&mut Settings, &str, &std::path::Path);

/// Switches `settings` from the client secret to `credential`.
fn use_credential(settings: &mut Settings, credential: CredentialKind) {
    settings.graph.client.client_secret = None;
    settings.graph.client.credential = Some(credential);
}

#[tokio::test]
async fn the_report_and_its_verdict_name_the_credential_used() {
    let token_dir = tempfile::tempdir().expect("temp dir");
    let token_file = token_dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "federated-jwt").expect("write");
    let cases: [(&str, &str, &str, Configure); 4] = [
        ("client secret", "POST", "/oauth2/v2.0/token", |_, _, _| {}),
        (
            "workload identity (federated token file",
            "POST",
            "/oauth2/v2.0/token",
            |settings, _, token_file| {
                use_credential(settings, CredentialKind::WorkloadIdentity);
                settings.graph.client.azure.federated_token_file = Some(token_file.into());
            },
        ),
        (
            "managed identity (instance metadata)",
            "GET",
            IMDS_PATH,
            |settings, identity, _| {
                use_credential(settings, CredentialKind::ManagedIdentity);
                settings.graph.client.managed_identity_endpoint = format!("{identity}{IMDS_PATH}");
            },
        ),
        (
            "managed identity (App Service)",
            "GET",
            APP_SERVICE_PATH,
            |settings, identity, _| {
                use_credential(settings, CredentialKind::ManagedIdentity);
                settings.graph.client.azure = AzureEnvironment {
                    identity_endpoint: Some(format!("{identity}{APP_SERVICE_PATH}")),
                    identity_header: Some(SecretString::from(IDENTITY_HEADER)),
                    ..AzureEnvironment::default()
                };
            },
        ),
    ];
    for (credential, verb, endpoint, configure) in cases {
        let (entra, graph) = (token_endpoints().await, graph_listing_one_partner().await);
        let mut settings = settings(&entra, &graph);
        configure(&mut settings, &entra.uri(), &token_file);

        let (healthy, report) = run(&settings).await;

        assert!(healthy, "{credential}: {report}");
        assert!(
            report.contains(&format!("credential: {credential}")),
            "{credential}: {report}"
        );
        let verdict = report.trim_end().lines().last().unwrap_or_default();
        assert!(
            verdict.starts_with(&format!("OK (credential: {credential}"))
                && verdict.ends_with("Microsoft Graph answered for this tenant"),
            "{credential}: {verdict}"
        );
        let token_requests: Vec<_> = entra
            .received_requests()
            .await
            .expect("recording")
            .into_iter()
            .map(|request| (request.method.to_string(), request.url.path().to_owned()))
            .collect();
        assert_eq!(token_requests.len(), 1, "{credential}: {token_requests:?}");
        assert_eq!(token_requests[0].0, verb, "{credential}");
        assert!(
            token_requests[0].1.ends_with(endpoint),
            "{credential}: {token_requests:?}"
        );
        for secret in ["check-secret", IDENTITY_HEADER, "federated-jwt"] {
            assert!(!report.contains(secret), "{credential}: {secret} printed");
        }
    }
}

#[tokio::test]
async fn a_managed_identity_the_endpoint_does_not_know_fails_naming_the_credential() {
    let (identity, graph) = (MockServer::start().await, graph_never_called().await);
    Mock::given(method("GET"))
        .and(path(IMDS_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_request",
            "error_description": "Identity not found"
        })))
        .expect(1)
        .mount(&identity)
        .await;
    let mut settings = settings(&identity, &graph);
    use_credential(&mut settings, CredentialKind::ManagedIdentity);
    settings.graph.client.client_id = String::new();
    settings.graph.client.managed_identity_endpoint = format!("{}{IMDS_PATH}", identity.uri());

    let (healthy, report) = run(&settings).await;

    assert!(!healthy, "{report}");
    for expected in [
        "client id:  (system-assigned identity)",
        "credential: managed identity (instance metadata)",
        "REFUSED",
        "invalid_request",
        "Identity not found",
        "FAIL (credential: managed identity (instance metadata)): no token; check that the managed identity is assigned",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected} in:\n{report}"
        );
    }
}
