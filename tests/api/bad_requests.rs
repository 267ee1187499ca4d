//! A battery of bad requests: each gets its status and Graph error code, in Graph's error
//! shape with the request ids, and none of them leaves anything in the database.

use std::time::{SystemTime, UNIX_EPOCH};

use cmp_domain::Timestamp;
use cmp_graph_model::datetime;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{COLLECTION, TestApp, header, json_body, spawn_app};

/// How a case is sent.
enum Send {
    /// POST to the collection with `Content-Type: application/json` and this body.
    Json(String),
    /// POST to the collection with the given content type (or none) and this body.
    Typed(Option<&'static str>, String),
    /// This method on a path below the root, with a bearer token and no body.
    Plain(Method, String),
    /// GET an item with this `Authorization` header value (or none).
    Authorization(Option<&'static str>),
}

struct Case {
    name: &'static str,
    send: Send,
    status: u16,
    code: &'static str,
}

fn json_case(name: &'static str, body: Value, status: u16, code: &'static str) -> Case {
    Case {
        name,
        send: Send::Json(body.to_string()),
        status,
        code,
    }
}

fn target(target: Value) -> Value {
    json!({"displayName": "Target case", "macOsOnboarded": true, "macOsEnrollmentAssignments": [{"target": target}]})
}

fn an_hour_from_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let seconds = i64::try_from(seconds).expect("fits") + 3600;
    datetime::format(Timestamp::from_unix_seconds(seconds, 0).expect("in range"))
}

fn cases() -> Vec<Case> {
    let group = "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11";
    let all_devices = json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"});
    vec![
        Case {
            name: "malformed JSON",
            send: Send::Json(r#"{"displayName": "#.into()),
            status: 400,
            code: "BadRequest",
        },
        Case {
            name: "empty body",
            send: Send::Json(String::new()),
            status: 400,
            code: "BadRequest",
        },
        Case {
            name: "deeply nested JSON",
            send: Send::Json(format!("{}{}", "[".repeat(300), "]".repeat(300))),
            status: 400,
            code: "BadRequest",
        },
        json_case(
            "body is an array",
            json!([{"displayName": "x"}]),
            400,
            "BadRequest",
        ),
        json_case(
            "display name is a number",
            json!({"displayName": 42}),
            400,
            "BadRequest",
        ),
        json_case(
            "display name missing",
            json!({"partnerState": "enabled"}),
            400,
            "BadRequest",
        ),
        json_case(
            "display name blank",
            json!({"displayName": "   "}),
            400,
            "BadRequest",
        ),
        json_case(
            "display name too long",
            json!({"displayName": "x".repeat(257)}),
            400,
            "BadRequest",
        ),
        json_case(
            "display name with a control character",
            json!({"displayName": "a\u{1b}b"}),
            400,
            "BadRequest",
        ),
        json_case(
            "partner state in the wrong case",
            json!({"displayName": "x", "partnerState": "Enabled"}),
            400,
            "BadRequest",
        ),
        json_case(
            "partner state as a number",
            json!({"displayName": "x", "partnerState": 2}),
            400,
            "BadRequest",
        ),
        json_case(
            "impossible date",
            json!({"displayName": "x", "lastHeartbeatDateTime": "2016-02-30T00:00:00Z"}),
            400,
            "BadRequest",
        ),
        json_case(
            "date without offset",
            json!({"displayName": "x", "lastHeartbeatDateTime": "2016-12-31T23:59:37.9174975"}),
            400,
            "BadRequest",
        ),
        json_case(
            "heartbeat an hour ahead",
            json!({"displayName": "x", "lastHeartbeatDateTime": an_hour_from_now()}),
            400,
            "BadRequest",
        ),
        json_case(
            "boolean as a string",
            json!({"displayName": "x", "iosOnboarded": "true"}),
            400,
            "BadRequest",
        ),
        json_case(
            "null for a non-nullable boolean",
            json!({"displayName": "x", "iosOnboarded": null}),
            400,
            "BadRequest",
        ),
        json_case(
            "unknown property",
            json!({"displayName": "x", "colour": "red"}),
            400,
            "BadRequest",
        ),
        json_case(
            "entity type of another resource",
            json!({"@odata.type": "#microsoft.graph.user", "displayName": "x"}),
            400,
            "BadRequest",
        ),
        json_case(
            "the same group twice with different filters",
            json!({"displayName": "x", "iosEnrollmentAssignments": [
                {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}},
                {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group,
                    "deviceAndAppManagementAssignmentFilterType": "include",
                    "deviceAndAppManagementAssignmentFilterId": "filter-1"}}
            ]}),
            400,
            "BadRequest",
        ),
        json_case(
            "the same target twice",
            json!({"displayName": "x", "iosOnboarded": true, "iosEnrollmentAssignments": [{"target": all_devices}, {"target": all_devices}]}),
            400,
            "BadRequest",
        ),
        json_case(
            "target without a type",
            target(json!({"groupId": group})),
            400,
            "BadRequest",
        ),
        json_case(
            "unknown target type",
            target(json!({"@odata.type": "#microsoft.graph.everyoneTarget"})),
            400,
            "BadRequest",
        ),
        json_case(
            "group id not a GUID",
            target(
                json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "sales"}),
            ),
            400,
            "BadRequest",
        ),
        json_case(
            "empty collection id",
            target(
                json!({"@odata.type": "#microsoft.graph.configurationManagerCollectionAssignmentTarget", "collectionId": ""}),
            ),
            400,
            "BadRequest",
        ),
        json_case(
            "include filter without filter id",
            target(
                json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget", "deviceAndAppManagementAssignmentFilterType": "include"}),
            ),
            400,
            "BadRequest",
        ),
        json_case(
            "filter id with filter type none",
            target(
                json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget", "deviceAndAppManagementAssignmentFilterType": "none", "deviceAndAppManagementAssignmentFilterId": "f"}),
            ),
            400,
            "BadRequest",
        ),
        json_case(
            "unknown target property",
            target(
                json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget", "priority": 1}),
            ),
            400,
            "BadRequest",
        ),
        json_case(
            "half-valid assignments: the last one is bad",
            json!({"displayName": "x", "iosOnboarded": true, "iosEnrollmentAssignments": [{"target": all_devices}, {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "nope"}}]}),
            400,
            "BadRequest",
        ),
        Case {
            name: "text/plain body",
            send: Send::Typed(Some("text/plain"), r#"{"displayName":"x"}"#.into()),
            status: 415,
            code: "UnsupportedMediaType",
        },
        Case {
            name: "no content type",
            send: Send::Typed(None, r#"{"displayName":"x"}"#.into()),
            status: 415,
            code: "UnsupportedMediaType",
        },
        Case {
            name: "body over 1 MiB",
            send: Send::Json(json!({"displayName": "x".repeat(1024 * 1024)}).to_string()),
            status: 413,
            code: "RequestEntityTooLarge",
        },
        Case {
            name: "OData query option on create",
            send: Send::Plain(Method::POST, format!("{COLLECTION}?$select=id")),
            status: 400,
            code: "BadRequest",
        },
        Case {
            name: "PUT on the collection",
            send: Send::Plain(Method::PUT, COLLECTION.into()),
            status: 405,
            code: "BadRequest",
        },
        Case {
            name: "POST on an item",
            send: Send::Plain(
                Method::POST,
                format!("{COLLECTION}/0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11"),
            ),
            status: 405,
            code: "BadRequest",
        },
        Case {
            name: "unknown route",
            send: Send::Plain(Method::GET, "/deviceManagement/somethingElse".into()),
            status: 404,
            code: "ResourceNotFound",
        },
        Case {
            name: "unknown id",
            send: Send::Plain(
                Method::GET,
                format!("{COLLECTION}/0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11"),
            ),
            status: 404,
            code: "ResourceNotFound",
        },
        Case {
            name: "id that is not a GUID",
            send: Send::Plain(Method::GET, format!("{COLLECTION}/a%2Fb%20c")),
            status: 404,
            code: "ResourceNotFound",
        },
        Case {
            name: "no Authorization header",
            send: Send::Authorization(None),
            status: 401,
            code: "InvalidAuthenticationToken",
        },
        Case {
            name: "Basic scheme",
            send: Send::Authorization(Some("Basic dXNlcjpwYXNz")),
            status: 401,
            code: "InvalidAuthenticationToken",
        },
        Case {
            name: "Bearer without a token",
            send: Send::Authorization(Some("Bearer ")),
            status: 401,
            code: "InvalidAuthenticationToken",
        },
    ]
}

async fn send(app: &TestApp, case: &Case) -> reqwest::Response {
    let collection = app.collection_url();
    let request = match &case.send {
        Send::Json(body) => app
            .request(Method::POST, &collection)
            .header("Content-Type", "application/json")
            .body(body.clone()),
        Send::Typed(content_type, body) => {
            let request = app.request(Method::POST, &collection).body(body.clone());
            match content_type {
                Some(content_type) => request.header("Content-Type", *content_type),
                None => request,
            }
        }
        Send::Plain(method, path) => app.request(method.clone(), &format!("{}{path}", app.root)),
        Send::Authorization(value) => {
            let request = cmp_fake_graph::http_client()
                .get(format!("{collection}/0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11"));
            match value {
                Some(value) => request.header("Authorization", *value),
                None => request,
            }
        }
    };
    request
        .header("client-request-id", case.name.replace(' ', "-"))
        .send()
        .await
        .expect("the request is answered")
}

#[tokio::test]
async fn bad_requests_get_graph_errors_and_leave_nothing_behind() {
    let app = spawn_app().await;
    let cases = cases();
    assert!(cases.len() >= 25, "the battery has {} cases", cases.len());

    for case in &cases {
        let response = send(&app, case).await;

        assert_eq!(
            response.status().as_u16(),
            case.status,
            "case: {}",
            case.name
        );
        let request_id = header(&response, "request-id");
        assert_eq!(
            header(&response, "client-request-id"),
            case.name.replace(' ', "-"),
            "case: {}",
            case.name
        );
        if case.status == 401 {
            assert!(
                header(&response, "www-authenticate").starts_with("Bearer"),
                "case: {}",
                case.name
            );
        }
        if case.status == 405 {
            assert!(
                !header(&response, "allow").is_empty(),
                "case: {}",
                case.name
            );
        }
        let body = json_body(response).await;
        let error = &body["error"];
        assert_eq!(error["code"], case.code, "case: {} ({body})", case.name);
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "case: {}",
            case.name
        );
        assert_eq!(
            error["innerError"]["request-id"],
            Value::String(request_id),
            "case: {}",
            case.name
        );
        assert_eq!(
            error["innerError"]["client-request-id"],
            case.name.replace(' ', "-"),
            "case: {}",
            case.name
        );
        let date = error["innerError"]["date"].as_str().expect("date");
        assert_eq!(
            date.len(),
            "2024-04-05T13:15:36".len(),
            "case: {}: date {date}",
            case.name
        );
    }

    for (table, rows) in app.table_counts().await {
        assert_eq!(rows, 0, "table {table} must be empty after the battery");
    }
}

#[tokio::test]
async fn body_errors_name_the_offending_member() {
    let app = spawn_app().await;
    let body = json!({"displayName": "x", "iosOnboarded": true, "iosEnrollmentAssignments": [
        {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "nope"}}]});

    let response = app.post_partner(&body.to_string()).await;

    assert_eq!(response.status(), 400);
    let body = json_body(response).await;
    assert_eq!(
        body["error"]["target"],
        "iosEnrollmentAssignments[0].target.groupId"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("not a GUID")
    );
}
