//! The OpenAPI document the service serves at `/openapi.json`: without a token, outside the
//! root, the same bytes on every call, OpenAPI 3.1 with every path and component the service
//! answers with. The live run (`tests/contract/run-live-checks.sh`) checks the service against
//! it; here it is checked as a document.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::{COLLECTION, assert_method_not_allowed, header, spawn_app};
use crate::resource::property_names;

#[tokio::test]
async fn the_document_is_served_without_a_token_and_is_the_same_bytes_on_every_call() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let url = app.url_outside_root("/openapi.json");

    let first = client
        .get(&url)
        .send()
        .await
        .expect("GET reaches the service");
    let first_request_id = header(&first, "request-id");
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "content-type"), "application/json");
    let first = first.bytes().await.expect("the body reads");
    let second = client
        .get(&url)
        .send()
        .await
        .expect("GET reaches the service");
    assert_eq!(second.status(), 200);
    assert_ne!(header(&second, "request-id"), first_request_id);
    let second = second.bytes().await.expect("the body reads");

    assert_eq!(first, second, "two calls give the same bytes");
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_the_paths_and_components_the_service_answers_with() {
    let app = spawn_app().await;

    let document: Value = reqwest::get(app.url_outside_root("/openapi.json"))
        .await
        .expect("GET reaches the service")
        .json()
        .await
        .expect("the document is JSON");

    assert_eq!(document["openapi"], "3.1.0");
    let paths = property_names(&document["paths"]);
    let collection = format!("/beta{COLLECTION}");
    for path in [
        collection.clone(),
        format!("{collection}/$count"),
        format!("{collection}/{{id}}"),
        "/admin/partners/{id}/sync".to_owned(),
        "/admin/partners/{id}/history".to_owned(),
        "/admin/outbox".to_owned(),
        "/admin/outbox/counts".to_owned(),
        "/admin/outbox/{outbox_id}/requeue".to_owned(),
        "/openapi.json".to_owned(),
        "/development/keys".to_owned(),
    ] {
        assert!(paths.contains(path.as_str()), "missing {path}: {paths:?}");
    }
    let create = &document["paths"][collection.as_str()]["post"];
    let statuses = property_names(&create["responses"]);
    assert_eq!(
        statuses,
        BTreeSet::from([
            "201", "202", "400", "401", "403", "408", "409", "413", "415", "429", "500", "502",
            "503"
        ])
    );
    let schemas = &document["components"]["schemas"];
    for name in [
        "complianceManagementPartner",
        "complianceManagementPartnerCreate",
        "deviceAndAppManagementAssignmentTargetInput",
        "deviceManagementPartnerTenantState",
        "ODataError",
    ] {
        assert!(schemas.get(name).is_some(), "missing schema {name}");
    }
    let targets = schemas["deviceAndAppManagementAssignmentTarget"]["oneOf"]
        .as_array()
        .expect("the target is a oneOf");
    assert_eq!(targets.len(), 7);
}

#[tokio::test]
async fn other_methods_on_the_document_get_405_in_graph_shape() {
    let app = spawn_app().await;

    let response = reqwest::Client::new()
        .delete(app.url_outside_root("/openapi.json"))
        .send()
        .await
        .expect("DELETE reaches the service");

    assert_method_not_allowed(response, "GET").await;
}
