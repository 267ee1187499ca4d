use cmp_application::query::{Comparison, Filter, FilterField, FilterValue};
use cmp_domain::{PartnerId, PartnerState, Platform};
use cmp_graph_model::datetime;

use super::{canonical, parse};
use crate::odata::{MAX_FILTER_CHARS, MAX_FILTER_DEPTH};

const ID: &str = "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11";

fn compare(field: FilterField, op: Comparison, value: FilterValue) -> Filter {
    Filter::Compare { field, op, value }
}

fn name(op: Comparison, text: &str) -> Filter {
    compare(FilterField::DisplayName, op, FilterValue::Text(text.into()))
}

fn name_eq(text: &str) -> Filter {
    name(Comparison::Eq, text)
}

fn and(left: Filter, right: Filter) -> Filter {
    Filter::And(Box::new(left), Box::new(right))
}

fn or(left: Filter, right: Filter) -> Filter {
    Filter::Or(Box::new(left), Box::new(right))
}

fn not(inner: Filter) -> Filter {
    Filter::Not(Box::new(inner))
}

fn parsed(text: &str) -> Filter {
    parse(text).unwrap_or_else(|e| panic!("{text:?} must parse: {e}"))
}

fn refused(text: &str) -> String {
    match parse(text) {
        Ok(filter) => panic!("{text:?} must be refused, parsed as {filter:?}"),
        Err(error) => error.message().to_owned(),
    }
}

#[test]
fn every_comparison_operator_parses_on_display_name() {
    let cases = [
        ("eq", Comparison::Eq),
        ("ne", Comparison::Ne),
        ("gt", Comparison::Gt),
        ("ge", Comparison::Ge),
        ("lt", Comparison::Lt),
        ("le", Comparison::Le),
    ];
    for (word, op) in cases {
        assert_eq!(
            parsed(&format!("displayName {word} 'Contoso'")),
            name(op, "Contoso"),
            "operator {word}"
        );
    }
}

#[test]
fn literals_are_typed_by_the_property() {
    let id: PartnerId = ID.parse().expect("valid id");
    let cases = [
        (
            "string with a doubled quote",
            "displayName eq 'O''Brien'",
            name_eq("O'Brien"),
        ),
        ("empty string", "displayName eq ''", name_eq("")),
        (
            "string keeps spaces, commas and parentheses",
            "displayName eq ' a, (b) '",
            name_eq(" a, (b) "),
        ),
        (
            "enum member as a string",
            "partnerState eq 'enabled'",
            compare(
                FilterField::PartnerState,
                Comparison::Eq,
                FilterValue::State(PartnerState::Enabled),
            ),
        ),
        (
            "enum member with its type",
            "partnerState ne microsoft.graph.deviceManagementPartnerTenantState'rejected'",
            compare(
                FilterField::PartnerState,
                Comparison::Ne,
                FilterValue::State(PartnerState::Rejected),
            ),
        ),
        (
            "date-time with Z",
            "lastHeartbeatDateTime gt 2024-01-01T00:00:00Z",
            compare(
                FilterField::LastHeartbeat,
                Comparison::Gt,
                FilterValue::Instant(datetime::parse("2024-01-01T00:00:00Z").expect("valid")),
            ),
        ),
        (
            "date-time with fraction and offset",
            "lastHeartbeatDateTime le 2016-12-31T23:59:37.9174975-08:00",
            compare(
                FilterField::LastHeartbeat,
                Comparison::Le,
                FilterValue::Instant(
                    datetime::parse("2017-01-01T07:59:37.9174975Z").expect("valid"),
                ),
            ),
        ),
        (
            "date-time with an unencoded plus offset",
            "lastHeartbeatDateTime ge 2024-01-01T05:30:00+05:30",
            compare(
                FilterField::LastHeartbeat,
                Comparison::Ge,
                FilterValue::Instant(datetime::parse("2024-01-01T00:00:00Z").expect("valid")),
            ),
        ),
        (
            "boolean true",
            "macOsOnboarded eq true",
            compare(
                FilterField::Onboarded(Platform::MacOs),
                Comparison::Eq,
                FilterValue::Bool(true),
            ),
        ),
        (
            "boolean false with ne",
            "linuxOnboarded ne false",
            compare(
                FilterField::Onboarded(Platform::Linux),
                Comparison::Ne,
                FilterValue::Bool(false),
            ),
        ),
        (
            "id",
            &format!("id eq '{ID}'"),
            compare(FilterField::Id, Comparison::Eq, FilterValue::Id(id)),
        ),
        (
            "id in upper case",
            &format!("id lt '{}'", ID.to_uppercase()),
            compare(FilterField::Id, Comparison::Lt, FilterValue::Id(id)),
        ),
    ];
    for (case, text, expected) in cases {
        assert_eq!(parsed(text), expected, "case: {case}");
    }
}

#[test]
fn each_onboarded_flag_is_a_boolean_property_and_may_stand_alone() {
    for platform in Platform::ALL {
        let property = format!("{}Onboarded", platform.property_prefix());
        let expected = compare(
            FilterField::Onboarded(platform),
            Comparison::Eq,
            FilterValue::Bool(true),
        );

        assert_eq!(parsed(&property), expected, "{property}");
        assert_eq!(
            parsed(&format!("not {property}")),
            not(expected.clone()),
            "{property}"
        );
        assert_eq!(
            parsed(&format!("({property}) and {property}")),
            and(expected.clone(), expected),
            "{property}"
        );
    }
}

#[test]
fn gt_ge_lt_le_work_on_state_heartbeat_and_id() {
    for text in [
        "partnerState ge 'unavailable'",
        "lastHeartbeatDateTime lt 2024-01-01T00:00:00Z",
        &format!("id gt '{ID}'"),
        "displayName le 'm'",
    ] {
        parse(text).unwrap_or_else(|e| panic!("{text:?} must parse: {e}"));
    }
}

#[test]
fn and_binds_tighter_than_or() {
    let (a, b, c) = (name_eq("a"), name_eq("b"), name_eq("c"));

    assert_eq!(
        parsed("displayName eq 'a' or displayName eq 'b' and displayName eq 'c'"),
        or(a.clone(), and(b.clone(), c.clone()))
    );
    assert_eq!(
        parsed("displayName eq 'a' and displayName eq 'b' or displayName eq 'c'"),
        or(and(a, b), c)
    );
}

#[test]
fn parentheses_override_precedence() {
    let (a, b, c) = (name_eq("a"), name_eq("b"), name_eq("c"));

    assert_eq!(
        parsed("(displayName eq 'a' or displayName eq 'b') and displayName eq 'c'"),
        and(or(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(parsed("((((displayName eq 'a'))))"), a);
    assert_eq!(
        parsed("displayName eq 'a'and(displayName eq 'b')"),
        and(a, b),
        "no space needed around parentheses"
    );
}

#[test]
fn not_applies_to_the_condition_that_follows() {
    let (a, b) = (name_eq("a"), name_eq("b"));

    assert_eq!(parsed("not displayName eq 'a'"), not(a.clone()));
    assert_eq!(parsed("not(displayName eq 'a')"), not(a.clone()));
    assert_eq!(
        parsed("not displayName eq 'a' and displayName eq 'b'"),
        and(not(a.clone()), b.clone())
    );
    assert_eq!(
        parsed("not (displayName eq 'a' or displayName eq 'b')"),
        not(or(a.clone(), b))
    );
    assert_eq!(parsed("not not displayName eq 'a'"), not(not(a)));
}

#[test]
fn startswith_takes_display_name_and_a_prefix() {
    let prefix = |p: &str| Filter::StartsWith { prefix: p.into() };

    assert_eq!(parsed("startswith(displayName,'Con')"), prefix("Con"));
    assert_eq!(
        parsed("startswith( displayName , 'It''s' )"),
        prefix("It's")
    );
    assert_eq!(
        parsed("not startswith(displayName,'x') or startswith(displayName,'y')"),
        or(not(prefix("x")), prefix("y"))
    );
}

#[test]
fn in_is_any_of_the_listed_values() {
    let state = |s| {
        compare(
            FilterField::PartnerState,
            Comparison::Eq,
            FilterValue::State(s),
        )
    };

    assert_eq!(
        parsed("partnerState in ('enabled', 'rejected','terminated')"),
        or(
            or(state(PartnerState::Enabled), state(PartnerState::Rejected)),
            state(PartnerState::Terminated)
        )
    );
    assert_eq!(parsed("displayName in ('a')"), name_eq("a"));
}

#[test]
fn long_chains_become_balanced_trees() {
    let text = (0..8)
        .map(|i| format!("displayName eq '{i}'"))
        .collect::<Vec<_>>()
        .join(" or ");
    let leaf = |i: u32| name_eq(&i.to_string());

    assert_eq!(
        parsed(&text),
        or(
            or(or(leaf(0), leaf(1)), or(leaf(2), leaf(3))),
            or(or(leaf(4), leaf(5)), or(leaf(6), leaf(7)))
        )
    );
}

#[test]
fn a_long_flat_chain_within_the_length_limit_is_accepted() {
    let term = "iosOnboarded";
    let count = MAX_FILTER_CHARS / (term.len() + 4);
    let text = vec![term; count].join(" or ");

    assert!(text.chars().count() <= MAX_FILTER_CHARS);
    parse(&text).expect("a flat chain is not nesting");
}

#[test]
fn nesting_is_limited() {
    let at_limit = format!(
        "{}iosOnboarded{}",
        "(".repeat(MAX_FILTER_DEPTH),
        ")".repeat(MAX_FILTER_DEPTH)
    );
    let too_deep = format!(
        "{}iosOnboarded{}",
        "(".repeat(MAX_FILTER_DEPTH + 1),
        ")".repeat(MAX_FILTER_DEPTH + 1)
    );
    let too_many_nots = format!("{}iosOnboarded", "not ".repeat(MAX_FILTER_DEPTH + 1));

    parse(&at_limit).expect("64 levels are allowed");
    assert_eq!(
        refused(&too_deep),
        "$filter: nesting deeper than 64 levels of parentheses and not at position 64"
    );
    assert_eq!(
        refused(&too_many_nots),
        "$filter: nesting deeper than 64 levels of parentheses and not at position 256"
    );
}

#[test]
fn a_hostile_filter_is_refused_without_exhausting_the_stack() {
    let huge = "(".repeat(100_000);

    assert_eq!(
        refused(&huge),
        "$filter: 100000 characters is longer than the 2048 allowed"
    );
    assert!(refused(&"(".repeat(MAX_FILTER_CHARS)).contains("nesting deeper"));
}

#[test]
fn every_error_names_the_problem_and_its_position() {
    let cases = [
        ("empty", "", "$filter: the expression is empty"),
        ("blank", "   ", "$filter: the expression is empty"),
        (
            "trailing word",
            "displayName eq 'x' foo",
            "$filter: unexpected 'foo' at position 19; expected and, or, or the end of the expression",
        ),
        (
            "unknown property",
            "colour eq 'red'",
            "$filter: 'colour' is not a property of complianceManagementPartner at position 0",
        ),
        (
            "property in another case",
            "DisplayName eq 'x'",
            "$filter: 'DisplayName' is not a property of complianceManagementPartner at position 0",
        ),
        (
            "collection property",
            "iosEnrollmentAssignments eq null",
            "$filter: 'iosEnrollmentAssignments' cannot be used in a filter at position 0",
        ),
        (
            "missing operator",
            "displayName 'x'",
            "$filter: unexpected string literal 'x' at position 12; expected a comparison operator (eq, ne, gt, ge, lt, le or in) after 'displayName'",
        ),
        (
            "upper-case operator",
            "displayName EQ 'x'",
            "$filter: unexpected 'EQ' at position 12; expected a comparison operator (eq, ne, gt, ge, lt, le or in) after 'displayName'",
        ),
        (
            "unsupported operator",
            "displayName has 'x'",
            "$filter: unexpected 'has' at position 12; expected a comparison operator (eq, ne, gt, ge, lt, le or in) after 'displayName'",
        ),
        (
            "missing literal",
            "displayName eq",
            "$filter: expected a string literal such as 'Contoso' for displayName but the expression ends at position 14",
        ),
        (
            "unquoted string",
            "displayName eq Contoso",
            "$filter: unexpected 'Contoso' at position 15; expected a string literal such as 'Contoso' for displayName",
        ),
        (
            "null",
            "displayName eq null",
            "$filter: unexpected 'null' at position 15; expected a string literal such as 'Contoso' for displayName",
        ),
        (
            "unterminated string",
            "displayName eq 'abc",
            "$filter: unterminated string literal starting at position 15",
        ),
        (
            "unknown enum member",
            "partnerState eq 'paused'",
            "$filter: 'paused' is not a partnerState member (unknown, unavailable, enabled, terminated, rejected, unresponsive) at position 16",
        ),
        (
            "enum member in another case",
            "partnerState eq 'Enabled'",
            "$filter: 'Enabled' is not a partnerState member (unknown, unavailable, enabled, terminated, rejected, unresponsive) at position 16",
        ),
        (
            "enum member as a number",
            "partnerState eq 2",
            "$filter: unexpected '2' at position 16; expected a partnerState member such as 'enabled'",
        ),
        (
            "enum type without member",
            "partnerState eq microsoft.graph.deviceManagementPartnerTenantState",
            "$filter: unexpected 'microsoft.graph.deviceManagementPartnerTenantState' at position 16; expected a partnerState member such as 'enabled'",
        ),
        (
            "boolean as a string",
            "iosOnboarded eq 'true'",
            "$filter: unexpected string literal 'true' at position 16; expected true or false",
        ),
        (
            "boolean in upper case",
            "iosOnboarded eq TRUE",
            "$filter: unexpected 'TRUE' at position 16; expected true or false",
        ),
        (
            "ordering a boolean",
            "androidOnboarded gt false",
            "$filter: 'gt' cannot compare the boolean property 'androidOnboarded' (use eq or ne) at position 17",
        ),
        (
            "quoted date-time",
            "lastHeartbeatDateTime gt '2024-01-01T00:00:00Z'",
            "$filter: unexpected string literal '2024-01-01T00:00:00Z' at position 25; expected an unquoted date-time such as 2024-01-01T00:00:00Z for lastHeartbeatDateTime",
        ),
        (
            "date-time without offset",
            "lastHeartbeatDateTime gt 2024-01-01T00:00:00",
            "$filter: '2024-01-01T00:00:00' is not a date-time with offset, such as 2016-12-31T23:59:37.9174975-08:00 at position 25",
        ),
        (
            "impossible date-time",
            "lastHeartbeatDateTime gt 2024-02-30T00:00:00Z",
            "$filter: '2024-02-30T00:00:00Z' is not a valid date and time at position 25",
        ),
        (
            "id that is not a GUID",
            "id eq 'abc'",
            "$filter: 'abc' is not a partner id at position 6",
        ),
        (
            "unbalanced open",
            "(displayName eq 'x'",
            "$filter: expected ')' to close the '(' at position 0 but the expression ends at position 19",
        ),
        (
            "unbalanced close",
            "displayName eq 'x')",
            "$filter: unexpected ')' at position 18; expected and, or, or the end of the expression",
        ),
        (
            "empty parentheses",
            "()",
            "$filter: unexpected ')' at position 1; expected a property name, '(' or not",
        ),
        (
            "dangling and",
            "displayName eq 'x' and",
            "$filter: expected a condition but the expression ends at position 22",
        ),
        (
            "leading or",
            "or displayName eq 'x'",
            "$filter: 'or' is not a property of complianceManagementPartner at position 0",
        ),
        (
            "literal first",
            "'x' eq displayName",
            "$filter: unexpected string literal 'x' at position 0; expected a property name, '(' or not",
        ),
        (
            "unsupported function",
            "contains(displayName,'x')",
            "$filter: function 'contains' is not supported (the only function is startswith(displayName, '…')) at position 0",
        ),
        (
            "startswith on another property",
            "startswith(id,'x')",
            "$filter: startswith takes displayName as its first argument, not 'id' at position 11",
        ),
        (
            "startswith without a prefix",
            "startswith(displayName)",
            "$filter: unexpected ')' at position 22; expected ',' after displayName",
        ),
        (
            "startswith with an unquoted prefix",
            "startswith(displayName,x)",
            "$filter: unexpected 'x' at position 23; expected a string literal such as 'Contoso'",
        ),
        (
            "startswith compared",
            "startswith(displayName,'x') eq true",
            "$filter: unexpected 'eq' at position 28; expected and, or, or the end of the expression",
        ),
        (
            "lambda",
            "iosEnrollmentAssignments/any(a:true)",
            "$filter: function 'iosEnrollmentAssignments/any' is not supported (the only function is startswith(displayName, '…')) at position 0",
        ),
        (
            "in without parentheses",
            "displayName in 'a'",
            "$filter: unexpected string literal 'a' at position 15; expected '(' after in",
        ),
        (
            "in list unterminated",
            "displayName in ('a' 'b')",
            "$filter: unexpected string literal 'b' at position 20; expected ',' or ')' in the in list",
        ),
        (
            "parameter alias",
            "displayName eq @p",
            "$filter: unexpected '@p' at position 15; expected a string literal such as 'Contoso' for displayName",
        ),
    ];
    for (case, text, message) in cases {
        assert_eq!(refused(text), message, "case: {case}");
    }
}

#[test]
fn positions_count_characters_not_bytes() {
    assert_eq!(
        refused("displayName eq 'été' foo"),
        "$filter: unexpected 'foo' at position 21; expected and, or, or the end of the expression"
    );
}

#[test]
fn the_canonical_text_has_normal_literals_and_only_the_parentheses_precedence_needs() {
    let text = format!(
        "not displayName eq 'O''Brien' and (partnerState eq microsoft.graph.deviceManagementPartnerTenantState'enabled' or lastHeartbeatDateTime gt 2024-01-01T00:00:00+00:00) or iosOnboarded or (startswith(displayName,'a') and id eq '{}') or not (macOsOnboarded and linuxOnboarded in (false))",
        ID.to_uppercase()
    );

    assert_eq!(
        canonical(&parsed(&text)),
        format!(
            "not displayName eq 'O''Brien' and (partnerState eq 'enabled' or lastHeartbeatDateTime gt 2024-01-01T00:00:00.0000000Z) or iosOnboarded eq true or startswith(displayName,'a') and id eq '{ID}' or not (macOsOnboarded eq true and linuxOnboarded eq false)"
        )
    );
}

#[test]
fn grouping_of_one_operator_does_not_change_the_filter() {
    let (a, b, c) = (name_eq("a"), name_eq("b"), name_eq("c"));
    let chained = and(and(a.clone(), b.clone()), c.clone());

    for text in [
        "displayName eq 'a' and displayName eq 'b' and displayName eq 'c'",
        "displayName eq 'a' and (displayName eq 'b' and displayName eq 'c')",
        "((displayName eq 'a' and displayName eq 'b')) and displayName eq 'c'",
    ] {
        assert_eq!(parsed(text), chained, "{text}");
    }
    assert_eq!(
        parsed("displayName in ('a', 'b') or (displayName eq 'c')"),
        or(or(a, b), c),
        "an in list is an or group"
    );
}

#[test]
fn an_in_list_is_a_level_of_nesting() {
    let nested = |levels: usize| {
        format!(
            "{}displayName in ('a'){}",
            "(".repeat(levels),
            ")".repeat(levels)
        )
    };

    parse(&nested(MAX_FILTER_DEPTH - 1)).expect("64 levels with the list's");
    assert_eq!(
        refused(&nested(MAX_FILTER_DEPTH)),
        "$filter: nesting deeper than 64 levels of parentheses and not at position 79"
    );
}

#[test]
fn the_canonical_text_of_a_filter_at_the_nesting_limit_parses_back() {
    let levels = MAX_FILTER_DEPTH / 2;
    let cases = [
        format!("{}iosOnboarded", "not ".repeat(MAX_FILTER_DEPTH)),
        format!(
            "{}iosOnboarded{}",
            "(iosOnboarded or iosOnboarded or (iosOnboarded and iosOnboarded and "
                .repeat(levels / 2 + 1),
            "))".repeat(levels / 2 + 1)
        ),
        format!(
            "{}iosOnboarded in (true, false){}",
            "not (iosOnboarded or ".repeat(levels - 1),
            ")".repeat(levels - 1)
        ),
    ];

    for text in cases {
        let filter = parsed(&text);

        assert_eq!(parsed(&canonical(&filter)), filter, "{text}");
    }
}

#[test]
fn the_canonical_text_parses_back_to_the_same_filter() {
    for text in [
        "displayName eq 'a' or displayName eq 'b' and not iosOnboarded",
        "partnerState in ('enabled','rejected') and lastHeartbeatDateTime le 2016-12-31T23:59:37.9174975-08:00",
        "startswith(displayName,'It''s')",
    ] {
        let filter = parsed(text);

        assert_eq!(parsed(&canonical(&filter)), filter, "{text}");
    }
}
