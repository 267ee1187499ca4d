use cmp_domain::PartnerId;
use serde_json::json;

use super::*;

const SEED_REQUEST: &str = include_str!("../../../../tests/fixtures/seed-request.json");

fn parse(body: Value) -> Result<NewPartner, WireError> {
    parse_partner_fields(&body)?.into_new_partner()
}

fn partner_from(body: Value) -> Partner {
    let command = parse(body).expect("valid body");
    Partner::restore(PartnerId::from_uuid(uuid_for_tests()), command)
}

fn uuid_for_tests() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0d6d_46d0_d6d0_dd6d_40d6_dd4d_60d6_dd4d)
}

fn rendered(partner: &Partner) -> Value {
    serde_json::to_value(render_partner(partner, Some("ctx".into()))).expect("serialisable")
}

#[test]
fn the_seed_request_parses_and_renders_in_graphs_response_form() {
    let body: Value = serde_json::from_str(SEED_REQUEST).expect("seed is JSON");

    let json = rendered(&partner_from(body));

    assert_eq!(json["@odata.context"], "ctx");
    assert_eq!(
        json["@odata.type"],
        "#microsoft.graph.complianceManagementPartner"
    );
    assert_eq!(json["displayName"], "Display Name value");
    assert_eq!(json["partnerState"], "unavailable");
    assert_eq!(
        json["lastHeartbeatDateTime"],
        "2017-01-01T07:59:37.9174975Z"
    );
    for prefix in ["macOs", "windows", "android", "ios"] {
        assert_eq!(json[format!("{prefix}Onboarded")], true, "{prefix}");
        assert_eq!(
            json[format!("{prefix}EnrollmentAssignments")],
            json!([{
                "@odata.type": "#microsoft.graph.complianceManagementPartnerAssignment",
                "target": {
                    "@odata.type": "#microsoft.graph.configurationManagerCollectionAssignmentTarget",
                    "deviceAndAppManagementAssignmentFilterId": "Device And App Management Assignment Filter Id value",
                    "deviceAndAppManagementAssignmentFilterType": "include",
                    "collectionId": "Collection Id value"
                }
            }]),
            "{prefix}"
        );
    }
    assert_eq!(json["linuxOnboarded"], false);
    assert_eq!(json["linuxEnrollmentAssignments"], json!([]));
}

#[test]
fn absent_properties_take_graphs_defaults() {
    let json = rendered(&partner_from(json!({"displayName": "Minimal"})));

    assert_eq!(json["partnerState"], "unknown");
    assert_eq!(
        json["lastHeartbeatDateTime"],
        "0001-01-01T00:00:00.0000000Z"
    );
    for prefix in ["macOs", "windows", "android", "ios", "linux"] {
        assert_eq!(json[format!("{prefix}Onboarded")], false);
        assert_eq!(json[format!("{prefix}EnrollmentAssignments")], json!([]));
    }
}

#[test]
fn every_target_subtype_round_trips_through_render_and_parse() {
    let group = "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11";
    let other = "6f2c1a55-0000-4000-8000-000000000002";
    let body = json!({
        "displayName": "All targets",
        "linuxOnboarded": true,
        "linuxEnrollmentAssignments": [
            {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}},
            {"target": {"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget", "deviceAndAppManagementAssignmentFilterType": "none"}},
            {"target": {"@odata.type": "#microsoft.graph.configurationManagerCollectionAssignmentTarget", "collectionId": "SMS00001"}},
            {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group,
                        "deviceAndAppManagementAssignmentFilterType": "include", "deviceAndAppManagementAssignmentFilterId": "f-1"}},
            {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": other,
                        "deviceAndAppManagementAssignmentFilterType": "exclude", "deviceAndAppManagementAssignmentFilterId": "f-2"}},
            {"target": {"@odata.type": "#microsoft.graph.scopeTagGroupAssignmentTarget", "targetType": "device", "entraObjectId": group}},
            {"target": {"@odata.type": "#microsoft.graph.androidFotaDeploymentAssignmentTarget", "groupId": other}}
        ]
    });
    let partner = partner_from(body);

    let reparsed = partner_from(rendered(&partner));

    assert_eq!(reparsed, partner);
    assert_eq!(partner.platform(Platform::Linux).assignments().len(), 7);
    let json = rendered(&partner);
    let targets = json["linuxEnrollmentAssignments"]
        .as_array()
        .expect("array");
    assert_eq!(targets[5]["target"]["targetType"], "device");
    assert_eq!(targets[5]["target"]["entraObjectId"], group);
    assert_eq!(
        targets[3]["target"]["deviceAndAppManagementAssignmentFilterId"],
        "f-1"
    );
    assert_eq!(
        targets[0]["target"]["deviceAndAppManagementAssignmentFilterId"],
        Value::Null
    );
}

#[test]
fn type_annotations_are_accepted_with_hash_bare_or_absent_and_other_annotations_ignored() {
    let body = json!({
        "@odata.type": "microsoft.graph.complianceManagementPartner",
        "@odata.context": "https://example.invalid/$metadata#x",
        "@odata.etag": "W/\"1\"",
        "id": "client-chosen",
        "displayName": "Annotated",
        "iosOnboarded": true,
        "iosEnrollmentAssignments": [
            {"@odata.type": "#Microsoft.Graph.ComplianceManagementPartnerAssignment",
             "target": {"@odata.type": "MICROSOFT.GRAPH.ALLDEVICESASSIGNMENTTARGET", "@odata.id": "ignored"}}
        ]
    });

    let fields = parse_partner_fields(&body).expect("accepted");

    assert_eq!(fields.id.as_deref(), Some("client-chosen"));
    let command = fields.into_new_partner().expect("valid");
    assert_eq!(command.platforms.get(Platform::Ios).assignments().len(), 1);
}

#[test]
fn bad_bodies_are_refused_with_the_offending_member_named() {
    let g = "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11";
    let target = |t: Value| json!({"displayName": "x", "macOsOnboarded": true, "macOsEnrollmentAssignments": [{"target": t}]});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("not an object", json!([1]), ""),
        ("missing display name", json!({}), "displayName"),
        (
            "null display name",
            json!({"displayName": null}),
            "displayName",
        ),
        (
            "blank display name",
            json!({"displayName": "  "}),
            "displayName",
        ),
        (
            "display name a number",
            json!({"displayName": 5}),
            "displayName",
        ),
        (
            "unknown property",
            json!({"displayName": "x", "colour": "red"}),
            "colour",
        ),
        (
            "wrong entity type",
            json!({"displayName": "x", "@odata.type": "#microsoft.graph.user"}),
            "@odata.type",
        ),
        (
            "bad enum",
            json!({"displayName": "x", "partnerState": "Enabled"}),
            "partnerState",
        ),
        (
            "bad date",
            json!({"displayName": "x", "lastHeartbeatDateTime": "2016-13-01T00:00:00Z"}),
            "lastHeartbeatDateTime",
        ),
        (
            "date without offset",
            json!({"displayName": "x", "lastHeartbeatDateTime": "2016-12-01T00:00:00"}),
            "lastHeartbeatDateTime",
        ),
        (
            "boolean as string",
            json!({"displayName": "x", "iosOnboarded": "true"}),
            "iosOnboarded",
        ),
        (
            "null boolean",
            json!({"displayName": "x", "iosOnboarded": null}),
            "iosOnboarded",
        ),
        (
            "assignments not an array",
            json!({"displayName": "x", "iosEnrollmentAssignments": {}}),
            "iosEnrollmentAssignments",
        ),
        (
            "the same target twice",
            json!({"displayName": "x", "iosEnrollmentAssignments": [
                {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}},
                {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}
            ]}),
            "iosEnrollmentAssignments",
        ),
        (
            "assignment without target",
            json!({"displayName": "x", "iosOnboarded": true, "iosEnrollmentAssignments": [{}]}),
            "iosEnrollmentAssignments[0].target",
        ),
        (
            "unknown assignment property",
            json!({"displayName": "x", "iosOnboarded": true, "iosEnrollmentAssignments": [{"target": null, "intent": "x"}]}),
            "iosEnrollmentAssignments[0].intent",
        ),
        (
            "target without type",
            target(json!({"groupId": g})),
            "macOsEnrollmentAssignments[0].target.@odata.type",
        ),
        (
            "unknown target type",
            target(json!({"@odata.type": "#microsoft.graph.userTarget"})),
            "macOsEnrollmentAssignments[0].target.@odata.type",
        ),
        (
            "target type without namespace",
            target(json!({"@odata.type": "groupAssignmentTarget", "groupId": g})),
            "macOsEnrollmentAssignments[0].target.@odata.type",
        ),
        (
            "group id not a GUID",
            target(
                json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1"}),
            ),
            "macOsEnrollmentAssignments[0].target.groupId",
        ),
        (
            "group id missing",
            target(json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget"})),
            "macOsEnrollmentAssignments[0].target.groupId",
        ),
        (
            "collection id empty",
            target(
                json!({"@odata.type": "#microsoft.graph.configurationManagerCollectionAssignmentTarget", "collectionId": ""}),
            ),
            "macOsEnrollmentAssignments[0].target.collectionId",
        ),
        (
            "property of another subtype",
            target(
                json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget", "groupId": g}),
            ),
            "macOsEnrollmentAssignments[0].target.groupId",
        ),
        (
            "include without filter id",
            target(
                json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget", "deviceAndAppManagementAssignmentFilterType": "include"}),
            ),
            "macOsEnrollmentAssignments[0].target.deviceAndAppManagementAssignmentFilterId",
        ),
        (
            "none with filter id",
            target(
                json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget", "deviceAndAppManagementAssignmentFilterId": "f"}),
            ),
            "macOsEnrollmentAssignments[0].target.deviceAndAppManagementAssignmentFilterId",
        ),
        (
            "bad filter type",
            target(
                json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget", "deviceAndAppManagementAssignmentFilterType": "sometimes"}),
            ),
            "macOsEnrollmentAssignments[0].target.deviceAndAppManagementAssignmentFilterType",
        ),
        (
            "bad scope tag target type",
            target(
                json!({"@odata.type": "#microsoft.graph.scopeTagGroupAssignmentTarget", "targetType": "robot", "entraObjectId": g}),
            ),
            "macOsEnrollmentAssignments[0].target.targetType",
        ),
        (
            "duplicate target",
            json!({"displayName": "x", "androidOnboarded": true, "androidEnrollmentAssignments": [
            {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": g}},
            {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": g.to_uppercase()}}]}),
            "androidEnrollmentAssignments",
        ),
    ];
    for (case, body, expected_target) in cases {
        let error = parse(body).expect_err(case);
        assert_eq!(
            error.target, expected_target,
            "case: {case} ({})",
            error.message
        );
        assert!(!error.message.is_empty(), "case: {case}");
    }
}

#[test]
fn the_create_body_for_graph_carries_no_id_or_context() {
    let partner = partner_from(json!({"displayName": "Outbound"}));

    let json = serde_json::to_value(render_partner_for_graph(&partner)).expect("serialisable");

    assert!(json.get("id").is_none());
    assert!(json.get("@odata.context").is_none());
    assert_eq!(
        json["@odata.type"],
        "#microsoft.graph.complianceManagementPartner"
    );
}

#[test]
fn the_property_list_names_exactly_what_is_rendered_in_that_order() {
    let partner = partner_from(json!({"displayName": "Listed"}));

    let json = serde_json::to_string(&render_partner(&partner, None)).expect("serialisable");

    let mut keys: Vec<&str> = vec!["@odata.type"];
    keys.extend(PARTNER_PROPERTIES);
    let positions: Vec<usize> = keys
        .iter()
        .map(|key| {
            json.find(&format!("\"{key}\":"))
                .unwrap_or_else(|| panic!("{key} is rendered"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "rendering order: {json}"
    );
    let rendered: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        rendered.as_object().map(serde_json::Map::len),
        Some(keys.len()),
        "no member beyond the list: {json}"
    );
}

#[test]
fn a_projection_keeps_the_selected_properties_plus_context_type_and_id_in_order() {
    let partner = partner_from(json!({"displayName": "Projected", "iosOnboarded": true}));

    let projected = render_partner_projected(&partner, Some("ctx".into()), |name| {
        matches!(name, "iosOnboarded" | "displayName")
    })
    .expect("renders");
    let text = serde_json::to_string(&projected).expect("serialisable");

    assert_eq!(
        text,
        format!(
            r##"{{"@odata.context":"ctx","@odata.type":"#microsoft.graph.complianceManagementPartner","id":"{}","displayName":"Projected","iosOnboarded":true}}"##,
            partner.id()
        )
    );
}

#[test]
fn a_projection_without_context_selecting_only_id_has_type_and_id() {
    let partner = partner_from(json!({"displayName": "Bare"}));

    let projected = render_partner_projected(&partner, None, |_| false).expect("renders");

    assert_eq!(
        serde_json::to_value(&projected).expect("serialisable"),
        json!({"@odata.type": "#microsoft.graph.complianceManagementPartner", "id": partner.id().to_string()})
    );
}

#[test]
fn a_read_modify_write_body_is_accepted_as_a_patch_of_every_property() {
    // What the SDK sends back after a GET (`docs/wire-contract.md`, "SDK compatibility"): id,
    // context and type echoed, date-times re-formatted with six digits and +00:00.
    let body: Value = serde_json::from_str(SEED_REQUEST).expect("seed is JSON");
    let partner = partner_from(body);
    let mut echoed = rendered(&partner);
    echoed["@odata.context"] = json!(
        "http://127.0.0.1:1/beta/$metadata#deviceManagement/complianceManagementPartners/$entity"
    );
    echoed["lastHeartbeatDateTime"] = json!("2017-01-01T07:59:37.917497+00:00");
    echoed["displayName"] = json!("Display Name value (patched)");

    let fields = parse_partner_fields(&echoed).expect("accepted");

    assert_eq!(
        fields.id.as_deref(),
        Some(partner.id().to_string().as_str())
    );
    let patch = fields.into_patch();
    assert_eq!(
        patch.display_name.as_ref().map(DisplayName::as_str),
        Some("Display Name value (patched)")
    );
    assert_eq!(patch.state, Some(partner.state()));
    assert_eq!(
        patch.last_heartbeat.map(datetime::format),
        Some("2017-01-01T07:59:37.9174970Z".to_owned())
    );
    for (platform, change) in patch.platforms.iter() {
        let (onboarded, assignments) = (&change.onboarded, &change.assignments);
        assert_eq!(
            *onboarded,
            Some(partner.platform(platform).onboarded()),
            "{platform}"
        );
        assert_eq!(
            assignments.as_deref(),
            Some(partner.platform(platform).assignments()),
            "{platform}"
        );
    }
}

#[test]
fn assignments_on_a_platform_not_yet_onboarded_are_accepted_and_kept() {
    let partner = partner_from(json!({
        "displayName": "Assigned before onboarding",
        "iosEnrollmentAssignments": [
            {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}
        ]
    }));

    let ios = partner.platform(Platform::Ios);
    assert!(!ios.onboarded());
    assert_eq!(ios.assignments().len(), 1);
}
