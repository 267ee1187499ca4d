use std::collections::BTreeSet;

use super::*;

fn served(root_path: &str) -> Value {
    let bytes = document_json(root_path).expect("the document serialises");
    serde_json::from_slice(&bytes).expect("the document is JSON")
}

/// Every `$ref` in `value`, with where it was found.
fn references(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, member) in map {
                if key == "$ref" {
                    if let Value::String(target) = member {
                        found.push((at.to_owned(), target.clone()));
                    }
                } else {
                    references(member, &format!("{at}/{key}"), found);
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                references(item, &format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_declares_openapi_3_1_with_info_and_operations_that_answer() {
    let document = served("/beta");

    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["info"]["title"].is_string());
    assert!(document["info"]["version"].is_string());
    for (path, item) in document["paths"].as_object().expect("paths") {
        assert!(path.starts_with('/'), "{path}");
        for (method, operation) in item.as_object().expect("a path item") {
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}");
            for status in responses.keys() {
                assert!(
                    status.len() == 3 && status.parse::<u16>().is_ok(),
                    "{method} {path}: {status}"
                );
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().expect("a named parameter");
                if parameter["in"] == "path" {
                    assert!(path.contains(&format!("{{{name}}}")), "{path}: {name}");
                    assert_eq!(parameter["required"], true, "{path}: {name}");
                }
            }
        }
    }
}

#[test]
fn every_operation_of_the_router_is_described_under_the_root_path() {
    let document = served("/beta");
    let operations: BTreeSet<String> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(move |method| format!("{method} {path}"))
        })
        .collect();

    let collection = "/beta/deviceManagement/complianceManagementPartners";
    let expected: BTreeSet<String> = [
        format!("get {collection}"),
        format!("post {collection}"),
        format!("get {collection}/$count"),
        format!("get {collection}/{{id}}"),
        format!("patch {collection}/{{id}}"),
        format!("delete {collection}/{{id}}"),
        "get /admin/partners/{id}/sync".to_owned(),
        "get /admin/partners/{id}/history".to_owned(),
        "get /admin/outbox".to_owned(),
        "get /admin/outbox/counts".to_owned(),
        "post /admin/outbox/{outbox_id}/requeue".to_owned(),
        "get /openapi.json".to_owned(),
        "get /development/keys".to_owned(),
    ]
    .into();
    assert_eq!(operations, expected);
}

#[test]
fn a_root_path_of_slash_serves_the_resource_at_the_server_root() {
    let document = served("/");

    assert!(
        document["paths"]
            .get("/deviceManagement/complianceManagementPartners")
            .is_some()
    );
}

#[test]
fn every_reference_resolves_inside_the_document() {
    let document = served("/beta");
    let mut found = Vec::new();
    references(&document, "", &mut found);

    assert!(!found.is_empty());
    for (at, target) in found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: '{target}' points outside the document"));
        assert!(
            document.pointer(pointer).is_some(),
            "{at}: '{target}' does not resolve"
        );
    }
}

#[test]
fn the_components_hold_the_wire_error_and_operator_schemas() {
    let document = served("/beta");
    let schemas: BTreeSet<&str> = document["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
        .map(String::as_str)
        .collect();

    for name in [
        "complianceManagementPartner",
        "complianceManagementPartnerProjection",
        "complianceManagementPartnerCreate",
        "complianceManagementPartnerUpdate",
        "complianceManagementPartnerCollectionResponse",
        "deviceAndAppManagementAssignmentTarget",
        "groupAssignmentTarget",
        "scopeTagGroupAssignmentTargetInput",
        "deviceManagementPartnerTenantState",
        "deviceAndAppManagementAssignmentFilterType",
        "scopeTagTargetType",
        "ODataError",
        "MainError",
        "InnerError",
        "OutboxRow",
        "Delivery",
        "PartnerHistory",
        "AuditEntry",
        "OutboxRows",
        "OutboxCounts",
        "RequeuedRow",
        "JsonWebKeySet",
    ] {
        assert!(schemas.contains(name), "missing {name}");
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[test]
fn operation_ids_are_unique_and_protected_operations_need_the_bearer_token() {
    let document = served("/beta");
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let id = operation["operationId"].as_str().expect("an operation id");
            assert!(ids.insert(id.to_owned()), "{id} twice");
            let public = path == OPENAPI_PATH || path == crate::DEVELOPMENT_KEYS_PATH;
            let expected = if public {
                serde_json::json!([{}])
            } else {
                serde_json::json!([{ "bearer": [] }])
            };
            assert_eq!(operation["security"], expected, "{method} {path}");
        }
    }
}

#[test]
fn error_answers_carry_their_codes_and_headers_and_every_header_is_required() {
    let document = served("/beta");
    let responses = &document["components"]["responses"];

    assert_eq!(
        responses["TooManyRequests"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]
            ["error"]["properties"]["code"]["enum"],
        serde_json::json!(["activityLimitReached"])
    );
    assert_eq!(
        responses["TooManyRequests"]["headers"]["Retry-After"]["required"],
        true
    );
    assert_eq!(
        responses["Unauthorized"]["headers"]["WWW-Authenticate"]["required"],
        true
    );
    let created = &document["paths"]["/beta/deviceManagement/complianceManagementPartners"]["post"]
        ["responses"]["202"];
    assert_eq!(created["headers"]["Location"]["required"], true);
    assert_eq!(created["headers"]["request-id"]["required"], true);
    assert_eq!(
        created["links"]["GetPartner"],
        serde_json::json!({
            "operationId": "getPartner",
            "parameters": { "id": "$response.body#/id" }
        })
    );
}

#[test]
fn each_error_kind_has_its_own_component_and_status() {
    let names: BTreeSet<&str> = ErrorKind::ALL
        .iter()
        .map(|kind| kind.answer().name)
        .collect();

    assert_eq!(names.len(), ErrorKind::ALL.len());
    for kind in ErrorKind::ALL {
        let answer = kind.answer();
        assert!(
            answer.status.is_client_error() || answer.status.is_server_error(),
            "{}",
            answer.name
        );
    }
}

#[test]
fn two_builds_give_the_same_bytes() {
    assert_eq!(
        document_json("/beta").expect("serialises"),
        document_json("/beta").expect("serialises")
    );
}
