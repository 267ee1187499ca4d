use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;
use crate::odata::short_type_name;

fn component(name: &str) -> Value {
    let (_, schema) = components()
        .into_iter()
        .find(|(component, _)| component == name)
        .unwrap_or_else(|| panic!("no component {name}"));
    serde_json::to_value(schema).expect("a schema serialises")
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("an object schema")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_entity_schemas_declare_exactly_the_properties_the_parser_and_renderer_know() {
    let mut expected: BTreeSet<String> = PARTNER_PROPERTIES.map(str::to_owned).into();
    expected.insert("@odata.type".to_owned());

    for name in [PARTNER_CREATE, PARTNER_UPDATE] {
        assert_eq!(property_names(&component(name)), expected, "{name}");
    }
    expected.insert("@odata.context".to_owned());
    for name in [PARTNER, PARTNER_PROJECTION] {
        assert_eq!(property_names(&component(name)), expected, "{name}");
    }
}

#[test]
fn a_complete_partner_requires_every_property_and_a_projection_only_the_type_and_id() {
    let required = |name: &str| -> BTreeSet<String> {
        serde_json::from_value(component(name)["required"].clone()).expect("a list")
    };
    let mut every: BTreeSet<String> = PARTNER_PROPERTIES.map(str::to_owned).into();
    every.insert("@odata.type".to_owned());

    assert_eq!(required(PARTNER), every);
    assert_eq!(
        required(PARTNER_PROJECTION),
        BTreeSet::from(["@odata.type".to_owned(), "id".to_owned()])
    );
    assert_eq!(
        required(PARTNER_CREATE),
        BTreeSet::from(["displayName".to_owned()])
    );
    assert!(component(PARTNER_UPDATE).get("required").is_none());
}

#[test]
fn the_enums_list_the_domain_members() {
    assert_eq!(
        component(PARTNER_STATE)["enum"],
        json!([
            "unknown",
            "unavailable",
            "enabled",
            "terminated",
            "rejected",
            "unresponsive"
        ])
    );
    assert_eq!(
        component(FILTER_TYPE_ENUM)["enum"],
        json!(["none", "include", "exclude"])
    );
    assert_eq!(
        component(SCOPE_TAG_TARGET_TYPE)["enum"],
        json!(["none", "user", "device", "unknownFutureValue"])
    );
}

#[test]
fn the_target_is_a_one_of_of_the_seven_subtypes_discriminated_by_the_type() {
    for (family, suffix) in [(TARGET, ""), (TARGET_INPUT, INPUT_SUFFIX)] {
        let schema = component(family);
        let references: Vec<&str> = schema["oneOf"]
            .as_array()
            .expect("oneOf")
            .iter()
            .filter_map(|item| item["$ref"].as_str())
            .collect();
        let expected: Vec<String> = TARGET_TYPES
            .iter()
            .map(|(name, _)| format!("#/components/schemas/{name}{suffix}"))
            .collect();

        assert_eq!(references, expected, "{family}");
        assert_eq!(schema["discriminator"]["propertyName"], "@odata.type");
        assert_eq!(
            schema["discriminator"]["mapping"]["#microsoft.graph.groupAssignmentTarget"],
            format!("#/components/schemas/groupAssignmentTarget{suffix}"),
            "{family}"
        );
    }
}

#[test]
fn each_subtype_declares_the_base_members_and_its_own() {
    for (type_name, members) in TARGET_TYPES {
        let mut expected: BTreeSet<String> = ["@odata.type", FILTER_ID, FILTER_TYPE]
            .map(str::to_owned)
            .into();
        expected.extend(members.iter().map(|member| member.name().to_owned()));

        assert_eq!(
            property_names(&component(type_name)),
            expected,
            "{type_name}"
        );
        assert_eq!(
            property_names(&component(&format!("{type_name}{INPUT_SUFFIX}"))),
            expected,
            "{type_name} input"
        );
        assert_eq!(
            component(type_name)["properties"]["@odata.type"]["enum"],
            json!([format!("#microsoft.graph.{type_name}")]),
            "{type_name}: rendered with '#' only"
        );
    }
}

/// A minimal matcher for the patterns [`type_pattern`] builds: `^#?` then literal characters,
/// escaped dots and two-letter classes, then `$`.
fn matches_type_pattern(pattern: &str, text: &str) -> bool {
    let body = pattern
        .strip_prefix("^#?")
        .and_then(|rest| rest.strip_suffix('$'))
        .expect("anchored with an optional '#'");
    let text = text.strip_prefix('#').unwrap_or(text);
    let mut classes = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(r"\.") {
            classes.push(vec!['.']);
            rest = after;
        } else if let Some(after) = rest.strip_prefix('[') {
            let (class, after) = after.split_once(']').expect("a closed class");
            classes.push(class.chars().collect());
            rest = after;
        } else {
            let mut characters = rest.chars();
            classes.push(vec![characters.next().expect("not empty")]);
            rest = characters.as_str();
        }
    }
    text.chars().count() == classes.len()
        && text
            .chars()
            .zip(&classes)
            .all(|(character, class)| class.contains(&character))
}

#[test]
fn the_type_pattern_accepts_what_the_parser_accepts() {
    let pattern = type_pattern("groupAssignmentTarget");
    let cases = [
        "#microsoft.graph.groupAssignmentTarget",
        "microsoft.graph.groupAssignmentTarget",
        "#Microsoft.Graph.GroupAssignmentTarget",
        "MICROSOFT.GRAPH.GROUPASSIGNMENTTARGET",
        "microsoft.graph.exclusionGroupAssignmentTarget",
        "groupAssignmentTarget",
        "#microsoft.graph.",
        "##microsoft.graph.groupAssignmentTarget",
    ];

    for case in cases {
        let parser = short_type_name(case)
            .is_some_and(|name| name.eq_ignore_ascii_case("groupAssignmentTarget"));
        assert_eq!(matches_type_pattern(&pattern, case), parser, "{case}");
    }
}

#[test]
fn request_bodies_admit_odata_annotations_and_no_other_unknown_member() {
    let schema = component(PARTNER_CREATE);
    let names = &schema["propertyNames"]["anyOf"];

    assert!(
        names[0]["enum"]
            .as_array()
            .expect("the declared names")
            .contains(&json!("displayName"))
    );
    assert_eq!(names[1]["pattern"], r"^[^@]*@odata\.");
    assert!(
        schema.get("additionalProperties").is_none(),
        "the names decide; annotations take any value"
    );
    assert_eq!(component(PARTNER)["additionalProperties"], json!(false));
}
