//! Creating a partner: the seed request end to end, the 202 path, Graph's refusal.

use std::time::Duration;

use cmp_graph_model::datetime;
use cmp_server::config::Settings;
use serde_json::{Value, json};

use crate::helpers::{
    COLLECTION, SEED_REQUEST, SEED_RESPONSE, header, json_body, spawn_app, spawn_app_with,
};

/// The table counts once a partner is gone for good and only its two audit entries remain: its
/// creation, and the undoing of a create Graph refused or its deletion before Graph held it.
pub const ONLY_TWO_AUDIT_ENTRIES: [(&str, i64); 5] = [
    ("partners", 0),
    ("partner_assignments", 0),
    ("outbox", 0),
    ("deliveries", 0),
    ("audit_log", 2),
];

/// The seed's example response as our service must answer it: Graph's `#` on nested type
/// names, the `id` we assigned, the heartbeat rendered in UTC with seven digits, and the
/// properties the seed's older schema lacks (`linux*`) plus `@odata.context`.
pub fn expected_seed_body(id: &str, root: &str) -> Value {
    let mut expected: Value = serde_json::from_str(SEED_RESPONSE).expect("seed response is JSON");
    expected["id"] = Value::String(id.to_owned());
    for platform in ["macOs", "windows", "android", "ios"] {
        for assignment in expected[format!("{platform}EnrollmentAssignments")]
            .as_array_mut()
            .expect("array")
        {
            add_hash(&mut assignment["@odata.type"]);
            add_hash(&mut assignment["target"]["@odata.type"]);
        }
    }
    let seed_heartbeat = expected["lastHeartbeatDateTime"]
        .as_str()
        .expect("string")
        .to_owned();
    let instant = datetime::parse(&seed_heartbeat).expect("seed heartbeat parses");
    expected["lastHeartbeatDateTime"] = Value::String(datetime::format(instant));
    expected["linuxOnboarded"] = json!(false);
    expected["linuxEnrollmentAssignments"] = json!([]);
    expected["@odata.context"] = Value::String(format!(
        "{root}/$metadata#deviceManagement/complianceManagementPartners/$entity"
    ));
    expected
}

fn add_hash(type_name: &mut Value) {
    let bare = type_name.as_str().expect("type name").to_owned();
    assert!(
        !bare.starts_with('#'),
        "the seed response writes nested types without '#'"
    );
    *type_name = Value::String(format!("#{bare}"));
}

#[tokio::test]
async fn the_seed_request_is_created_and_answered_like_the_seed_response() {
    let app = spawn_app().await;

    let response = app
        .request(reqwest::Method::POST, &app.collection_url())
        .header("Content-Type", "application/json")
        .header("client-request-id", "5f0e9c2a-caller-chosen")
        .body(SEED_REQUEST)
        .send()
        .await
        .expect("POST reaches the service");

    assert_eq!(response.status(), 201);
    assert_eq!(
        header(&response, "client-request-id"),
        "5f0e9c2a-caller-chosen"
    );
    assert!(uuid::Uuid::try_parse(&header(&response, "request-id")).is_ok());
    let location = header(&response, "location");
    let body = json_body(response).await;
    let id = body["id"].as_str().expect("id is a string").to_owned();
    assert!(uuid::Uuid::try_parse(&id).is_ok(), "id {id} is a GUID");
    assert_eq!(location, format!("{}{COLLECTION}/{id}", app.root));
    assert_eq!(body, expected_seed_body(&id, &app.root));
    // The heartbeat is the seed's instant, kept to the 100 ns.
    assert_eq!(
        body["lastHeartbeatDateTime"],
        "2017-01-01T07:59:37.9174975Z"
    );
    assert_eq!(
        app.table_counts().await,
        vec![
            ("partners", 1),
            ("partner_assignments", 4),
            ("outbox", 1),
            ("deliveries", 1),
            ("audit_log", 1)
        ]
    );
    assert_eq!(app.outbox_state(&id).await, "delivered");
}

#[tokio::test]
async fn get_returns_the_body_the_create_answered() {
    let app = spawn_app().await;
    let created = json_body(app.post_partner(SEED_REQUEST).await).await;
    let id = created["id"].as_str().expect("id");

    let response = app.get_partner(id).await;

    assert_eq!(response.status(), 200);
    assert!(!header(&response, "request-id").is_empty());
    assert_eq!(
        header(&response, "client-request-id"),
        header(&response, "request-id")
    );
    assert_eq!(json_body(response).await, created);
}

#[tokio::test]
async fn a_display_name_taken_in_another_case_or_spacing_is_a_conflict_and_writes_nothing() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_partner(r#"{"displayName": "Contoso Compliance"}"#)
            .await
            .status(),
        201
    );
    let before = app.table_counts().await;

    let response = app
        .post_partner(r#"{"displayName": "  contoso COMPLIANCE "}"#)
        .await;

    assert_eq!(response.status(), 409);
    let body = json_body(response).await;
    assert_eq!(body["error"]["code"], "nameAlreadyExists");
    assert_eq!(app.table_counts().await, before);
}

#[tokio::test]
async fn the_sdks_own_create_body_is_accepted() {
    let app = spawn_app().await;
    // What msgraph-beta-sdk sends for a model built in code (`docs/wire-contract.md`, "SDK
    // compatibility"), with the platforms that carry assignments onboarded.
    let body = json!({
        "androidEnrollmentAssignments": [
            {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}},
            {"target": {"deviceAndAppManagementAssignmentFilterType": "none", "@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"}},
            {"target": {"@odata.type": "#microsoft.graph.configurationManagerCollectionAssignmentTarget", "collectionId": "SMS00001"}}
        ],
        "androidOnboarded": true, "displayName": "SDK native partner",
        "iosEnrollmentAssignments": [{"target": {"deviceAndAppManagementAssignmentFilterId": "9e0f5d71-2c55-4c1b-8a8e-1b2f3c4d5e6f",
            "deviceAndAppManagementAssignmentFilterType": "exclude",
            "@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11"}}],
        "iosOnboarded": true, "lastHeartbeatDateTime": "2024-05-06T07:08:09.123456+00:00",
        "linuxEnrollmentAssignments": [{"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}],
        "linuxOnboarded": true,
        "macOsEnrollmentAssignments": [{"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "6f2c1a55-0000-4000-8000-000000000002"}}],
        "macOsOnboarded": true, "partnerState": "enabled"
    });

    let response = app.post_partner(&body.to_string()).await;

    assert_eq!(response.status(), 201);
    let created = json_body(response).await;
    assert_eq!(
        created["lastHeartbeatDateTime"],
        "2024-05-06T07:08:09.1234560Z"
    );
    assert_eq!(
        created["androidEnrollmentAssignments"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(
        created["iosEnrollmentAssignments"][0]["target"],
        json!({"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget",
               "deviceAndAppManagementAssignmentFilterId": "9e0f5d71-2c55-4c1b-8a8e-1b2f3c4d5e6f",
               "deviceAndAppManagementAssignmentFilterType": "exclude",
               "groupId": "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11"})
    );
    let fetched = json_body(app.get_partner(created["id"].as_str().expect("id")).await).await;
    assert_eq!(fetched, created);
}

fn failing_graph(failure: &str) -> impl FnOnce(&mut Settings) {
    let failure = failure.to_owned();
    move |settings: &mut Settings| {
        settings.graph.simulated.failure =
            serde_json::from_value(Value::String(failure)).expect("a simulated failure mode");
        settings.graph.simulated.failure_rate = 1.0;
        settings.outbox.inline_deadline = Duration::from_millis(300);
    }
}

#[tokio::test]
async fn a_create_graph_cannot_confirm_is_accepted_and_queued_for_the_dispatcher() {
    for (failure, outbox_state) in [
        ("unavailable", "unknown"),
        ("throttle", "pending"),
        ("hang", "unknown"),
    ] {
        let app = spawn_app_with(failing_graph(failure)).await;

        let response = app.post_partner(SEED_REQUEST).await;

        assert_eq!(response.status(), 202, "{failure}");
        let location = header(&response, "location");
        let body = json_body(response).await;
        let id = body["id"].as_str().expect("id").to_owned();
        assert_eq!(body, expected_seed_body(&id, &app.root), "{failure}");
        assert_eq!(app.outbox_state(&id).await, outbox_state, "{failure}");
        let followed = app
            .request(reqwest::Method::GET, &location)
            .send()
            .await
            .expect("Location resolves");
        assert_eq!(followed.status(), 200, "{failure}");
        assert_eq!(json_body(followed).await, body, "{failure}");
    }
}

#[tokio::test]
async fn a_create_graph_refuses_is_undone_and_the_refusal_reported() {
    let app = spawn_app_with(failing_graph("reject")).await;

    let response = app.post_partner(SEED_REQUEST).await;

    assert_eq!(response.status(), 400);
    let body = json_body(response).await;
    assert_eq!(body["error"]["code"], "BadRequest");
    assert_eq!(body["error"]["innerError"]["code"], "BadRequest");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("Microsoft Graph refused")
    );
    // Nothing but the audit trail of the attempt remains: the create and its undoing.
    assert_eq!(app.table_counts().await, ONLY_TWO_AUDIT_ENTRIES);
    // The name is free again.
    let retry = spawn_app_in_same(&app).await;
    assert_eq!(retry.post_partner(SEED_REQUEST).await.status(), 201);
}

/// The same database, served again with a healthy simulated Graph.
async fn spawn_app_in_same(app: &crate::helpers::TestApp) -> crate::helpers::TestApp {
    crate::helpers::spawn_app_in(app.directory.clone(), |_| {}).await
}

#[tokio::test]
async fn assignments_on_platforms_not_yet_onboarded_are_accepted_as_graph_accepts_them() {
    let app = spawn_app().await;
    let body = json!({
        "displayName": "Assigned before onboarding",
        "iosOnboarded": false,
        "iosEnrollmentAssignments": [
            {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}
        ]
    });

    let created = app.post_partner(&body.to_string()).await;

    assert_eq!(created.status(), 201);
    let created = json_body(created).await;
    assert_eq!(created["iosOnboarded"], false);
    assert_eq!(
        created["iosEnrollmentAssignments"][0]["target"]["@odata.type"],
        "#microsoft.graph.allDevicesAssignmentTarget"
    );
    let read = json_body(app.get_partner(created["id"].as_str().expect("id")).await).await;
    assert_eq!(read, created, "stored as accepted");
}
