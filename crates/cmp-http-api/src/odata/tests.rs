use cmp_application::query::{
    Comparison, Cursor, DEFAULT_PAGE_SIZE, Filter, FilterField, FilterValue, ListQuery,
    MAX_PAGE_SIZE, SortField, SortKey,
};
use cmp_domain::{PartnerId, PartnerState};

use super::*;

const COLLECTION: &str = "http://service.test/beta/deviceManagement/complianceManagementPartners";

/// What the Python SDK sends for a list with every option it models but `$expand` and
/// `$search` (`docs/wire-contract.md`, "Queries"): `$` literal, values percent-encoded, lists
/// comma-joined.
const SDK_QUERY: &str = "$count=true&$filter=displayName%20eq%20%27A%20B%27&$orderby=displayName%20desc,id&$select=id,displayName&$skip=20&$top=10";

fn list(query: &str) -> ListRequest {
    parse_list(Some(query)).unwrap_or_else(|e| panic!("{query:?} must parse: {e}"))
}

fn list_error(query: &str) -> String {
    match parse_list(Some(query)) {
        Ok(request) => panic!("{query:?} must be refused, parsed as {request:?}"),
        Err(error) => error.message().to_owned(),
    }
}

fn key(field: SortField, descending: bool) -> SortKey {
    SortKey { field, descending }
}

fn cursor() -> Cursor {
    Cursor {
        values: vec![
            FilterValue::Text("A B".into()),
            FilterValue::Id(PartnerId::from_uuid(uuid::Uuid::from_u128(9))),
        ],
    }
}

/// The `$skiptoken` value of a next link.
fn token_of(link: &str) -> &str {
    link.rsplit_once("$skiptoken=")
        .map(|(_, token)| token)
        .expect("the link carries a skip token")
}

#[test]
fn the_sdks_query_string_parses_into_the_typed_query() {
    let request = list(SDK_QUERY);

    assert_eq!(
        request.query,
        ListQuery {
            filter: Some(Filter::Compare {
                field: FilterField::DisplayName,
                op: Comparison::Eq,
                value: FilterValue::Text("A B".into()),
            }),
            order: vec![key(SortField::DisplayName, true), key(SortField::Id, false)],
            page_size: 10,
            skip: 20,
            after: None,
            count: true,
        }
    );
    assert!(request.select.keeps("displayName") && request.select.keeps("id"));
    assert!(!request.select.keeps("partnerState"));
}

#[test]
fn options_without_dollar_mean_the_same() {
    let without = SDK_QUERY.replace('$', "");
    let encoded = SDK_QUERY.replace('$', "%24");

    assert_eq!(list(&without).query, list(SDK_QUERY).query);
    assert_eq!(list(&encoded).query, list(SDK_QUERY).query);
    assert_eq!(list(&without).select, list(SDK_QUERY).select);
}

#[test]
fn no_options_mean_the_first_page_of_the_default_size() {
    let request = parse_list(None).expect("no query");

    assert_eq!(request.query, ListQuery::default());
    assert_eq!(request.query.page_size, DEFAULT_PAGE_SIZE);
    assert!(request.select.is_all());
    assert_eq!(list("").query, ListQuery::default());
    assert_eq!(list("&&").query, ListQuery::default());
}

#[test]
fn values_are_percent_decoded_once_and_plus_stays_a_plus() {
    let request = list(
        "$filter=displayName%20eq%20%27100%2525%27%20or%20lastHeartbeatDateTime%20gt%202024-01-01T05:30:00+05:30",
    );

    let Some(Filter::Or(left, right)) = request.query.filter else {
        panic!("an or: {:?}", request.query.filter);
    };
    assert_eq!(
        *left,
        Filter::Compare {
            field: FilterField::DisplayName,
            op: Comparison::Eq,
            value: FilterValue::Text("100%25".into()),
        },
        "%2525 decodes once, to %25"
    );
    assert_eq!(
        *right,
        Filter::Compare {
            field: FilterField::LastHeartbeat,
            op: Comparison::Gt,
            value: FilterValue::Instant(
                cmp_graph_model::datetime::parse("2024-01-01T00:00:00Z").expect("valid")
            ),
        }
    );
}

#[test]
fn top_skip_and_count_take_their_ranges() {
    assert_eq!(list("$top=1").query.page_size, 1);
    assert_eq!(list("$top=999").query.page_size, MAX_PAGE_SIZE);
    assert_eq!(list("$skip=0").query.skip, 0);
    assert_eq!(
        list("$skip=9223372036854775807").query.skip,
        i64::MAX.unsigned_abs()
    );
    assert!(list("$count=true").query.count);
    assert!(!list("$count=false").query.count);
}

#[test]
fn order_keys_keep_their_order_and_direction() {
    assert_eq!(
        list("$orderby=partnerState desc,lastHeartbeatDateTime,displayName asc, id desc")
            .query
            .order,
        vec![
            key(SortField::PartnerState, true),
            key(SortField::LastHeartbeat, false),
            key(SortField::DisplayName, false),
            key(SortField::Id, true),
        ]
    );
}

#[test]
fn select_keeps_id_always_and_star_means_everything() {
    let only_name = list("$select=displayName").select;
    let star = list("$select=*").select;
    let repeated = list("$select=iosOnboarded,displayName,iosOnboarded").select;

    assert!(only_name.keeps("id") && only_name.keeps("displayName"));
    assert!(!only_name.keeps("iosOnboarded"));
    assert_eq!(only_name.context_suffix(), "(displayName)");
    assert!(star.is_all());
    assert_eq!(star.context_suffix(), "");
    assert_eq!(
        repeated.context_suffix(),
        "(displayName,iosOnboarded)",
        "deduplicated, in the entity's order"
    );
}

#[test]
fn every_option_error_names_the_option_and_the_problem() {
    let cases = [
        (
            "top zero",
            "$top=0",
            "$top: '0' is not a page size; use an integer from 1 to 999",
        ),
        (
            "top too large",
            "$top=1000",
            "$top: '1000' is not a page size; use an integer from 1 to 999",
        ),
        (
            "top negative",
            "$top=-1",
            "$top: '-1' is not a page size; use an integer from 1 to 999",
        ),
        (
            "top not a number",
            "$top=ten",
            "$top: 'ten' is not a page size; use an integer from 1 to 999",
        ),
        (
            "top empty",
            "$top=",
            "$top: '' is not a page size; use an integer from 1 to 999",
        ),
        (
            "skip negative",
            "$skip=-5",
            "$skip: '-5' is not a non-negative integer",
        ),
        (
            "skip with a plus",
            "$skip=+5",
            "$skip: '+5' is not a non-negative integer",
        ),
        (
            "skip beyond a database offset",
            "$skip=9223372036854775808",
            "$skip: '9223372036854775808' is not a non-negative integer",
        ),
        (
            "count not boolean",
            "$count=yes",
            "$count: 'yes' must be true or false",
        ),
        (
            "count upper case",
            "$count=True",
            "$count: 'True' must be true or false",
        ),
        (
            "count without value",
            "$count",
            "$count: '' must be true or false",
        ),
        (
            "select unknown",
            "$select=id,colour",
            "$select: 'colour' is not a property of complianceManagementPartner",
        ),
        (
            "select other case",
            "$select=DisplayName",
            "$select: 'DisplayName' is not a property of complianceManagementPartner",
        ),
        (
            "select empty item",
            "$select=id,,displayName",
            "$select: an empty item; list property names separated by commas",
        ),
        (
            "select empty",
            "$select=",
            "$select: an empty item; list property names separated by commas",
        ),
        (
            "select navigation path",
            "$select=target/groupId",
            "$select: 'target/groupId' is not a property of complianceManagementPartner",
        ),
        (
            "orderby unknown",
            "$orderby=colour",
            "$orderby: 'colour' is not a property you can order by; use displayName, lastHeartbeatDateTime, partnerState or id",
        ),
        (
            "orderby boolean",
            "$orderby=iosOnboarded",
            "$orderby: 'iosOnboarded' is not a property you can order by; use displayName, lastHeartbeatDateTime, partnerState or id",
        ),
        (
            "orderby direction",
            "$orderby=displayName%20up",
            "$orderby: 'up' after 'displayName' is not a direction; use asc or desc",
        ),
        (
            "orderby upper-case direction",
            "$orderby=displayName%20DESC",
            "$orderby: 'DESC' after 'displayName' is not a direction; use asc or desc",
        ),
        (
            "orderby extra word",
            "$orderby=displayName%20asc%20id",
            "$orderby: unexpected 'id' after 'displayName asc'; separate keys with commas",
        ),
        (
            "orderby twice",
            "$orderby=id,displayName,id%20desc",
            "$orderby: 'id' is named more than once",
        ),
        (
            "orderby empty item",
            "$orderby=displayName,",
            "$orderby: an empty item; list properties separated by commas",
        ),
        (
            "filter empty",
            "$filter=",
            "$filter: the expression is empty",
        ),
        (
            "filter bad",
            "$filter=displayName%20eq%20%27x%27%20foo",
            "$filter: unexpected 'foo' at position 19; expected and, or, or the end of the expression",
        ),
        (
            "expand",
            "$expand=assignments",
            "$expand is not supported: complianceManagementPartner has no navigation properties to expand",
        ),
        (
            "expand without dollar",
            "expand=*",
            "$expand is not supported: complianceManagementPartner has no navigation properties to expand",
        ),
        (
            "search",
            "$search=%22foo%22",
            "$search is not supported; use $filter",
        ),
        (
            "format",
            "$format=json",
            "$format is not supported; responses are always JSON",
        ),
        (
            "unknown dollar option",
            "$apply=aggregate",
            "'$apply' is not a supported query option",
        ),
        (
            "dollar option in another case",
            "$Filter=iosOnboarded",
            "query option names are case-sensitive: write '$filter', not '$Filter'",
        ),
        (
            "bare option in another case",
            "TOP=5",
            "query option names are case-sensitive: write '$top', not 'TOP'",
        ),
        (
            "parameter alias",
            "@p=1",
            "parameter aliases such as '@p' are not supported",
        ),
        (
            "duplicate",
            "$top=5&$top=6",
            "$top is given more than once (with or without '$' counts as the same option)",
        ),
        (
            "duplicate with and without dollar",
            "$top=5&top=6",
            "$top is given more than once (with or without '$' counts as the same option)",
        ),
        (
            "bad percent escape",
            "$filter=%zz",
            "the query string is not validly percent-encoded near '%zz'",
        ),
        (
            "truncated percent escape",
            "$top=1%2",
            "the query string is not validly percent-encoded near '1%2'",
        ),
        (
            "not UTF-8",
            "$filter=%ff",
            "the query string decodes to text that is not UTF-8 near '%ff'",
        ),
        (
            "token not ours",
            "$skiptoken=abc",
            "$skiptoken: not a skip token this service issued",
        ),
    ];
    for (case, query, message) in cases {
        assert_eq!(list_error(query), message, "case: {case}");
    }
}

#[test]
fn custom_options_are_ignored_but_carried_into_the_next_link() {
    let request = list("tenant=contoso&$top=5");

    assert_eq!(request.query.page_size, 5);
    let link = request.next_link(COLLECTION, &cursor());
    assert!(
        link.starts_with(&format!("{COLLECTION}?tenant=contoso&$top=5&$skiptoken=")),
        "{link}"
    );
}

#[test]
fn the_next_link_carries_the_original_options_minus_skip_and_skiptoken() {
    let first = list(SDK_QUERY);

    let link = first.next_link(COLLECTION, &cursor());

    assert!(
        link.starts_with(&format!(
            "{COLLECTION}?$count=true&$filter=displayName%20eq%20%27A%20B%27&$orderby=displayName%20desc,id&$select=id,displayName&$top=10&$skiptoken="
        )),
        "{link}"
    );
    assert_eq!(link.matches("$skiptoken=").count(), 1);
}

#[test]
fn a_query_without_options_links_with_only_the_token() {
    let link = list("").next_link(COLLECTION, &cursor());

    assert!(
        link.starts_with(&format!("{COLLECTION}?$skiptoken=")),
        "{link}"
    );
}

#[test]
fn the_next_link_parses_back_to_the_cursor_and_drops_skip() {
    let first = list(SDK_QUERY);
    let link = first.next_link(COLLECTION, &cursor());
    let (_, query) = link.split_once('?').expect("a query string");

    let second = list(query);

    assert_eq!(
        second.query,
        ListQuery {
            after: Some(cursor()),
            skip: 0,
            ..first.query.clone()
        }
    );
    let relinked = second.next_link(COLLECTION, &cursor());
    assert_eq!(relinked, link, "the link is stable from page to page");
}

#[test]
fn a_token_read_with_skip_ignores_the_skip() {
    let first = list("$orderby=displayName");
    let token = token_of(&first.next_link(COLLECTION, &cursor())).to_owned();

    let second = list(&format!("$orderby=displayName&$skip=50&$skiptoken={token}"));

    assert_eq!(second.query.skip, 0);
    assert_eq!(second.query.after, Some(cursor()));
}

#[test]
fn a_token_works_with_another_page_size_and_equivalent_spellings() {
    let first = list("$orderby=displayName%20asc&$select=displayName&$count=false");
    let token = token_of(&first.next_link(COLLECTION, &cursor())).to_owned();

    for query in [
        format!("$orderby=displayName&$select=id,displayName&$top=3&$skiptoken={token}"),
        format!("orderby=displayName,id&select=displayName,id&skiptoken={token}"),
    ] {
        assert_eq!(list(&query).query.after, Some(cursor()), "{query}");
    }
}

#[test]
fn a_token_used_with_other_options_is_refused() {
    let first = list(SDK_QUERY);
    let token = token_of(&first.next_link(COLLECTION, &cursor())).to_owned();
    let cases = [
        (
            "other filter",
            "$count=true&$filter=displayName%20eq%20%27C%27&$orderby=displayName%20desc,id&$select=id,displayName",
        ),
        (
            "no filter",
            "$count=true&$orderby=displayName%20desc,id&$select=id,displayName",
        ),
        (
            "other order",
            "$count=true&$filter=displayName%20eq%20%27A%20B%27&$orderby=displayName,id&$select=id,displayName",
        ),
        (
            "other selection",
            "$count=true&$filter=displayName%20eq%20%27A%20B%27&$orderby=displayName%20desc,id&$select=id",
        ),
        (
            "no count",
            "$filter=displayName%20eq%20%27A%20B%27&$orderby=displayName%20desc,id&$select=id,displayName",
        ),
    ];
    for (case, options) in cases {
        assert_eq!(
            list_error(&format!("{options}&$skiptoken={token}")),
            "the $skiptoken does not belong to this query",
            "case: {case}"
        );
    }
}

#[test]
fn count_takes_only_a_filter() {
    assert_eq!(parse_count(None), Ok(None));
    assert_eq!(
        parse_count(Some("$filter=partnerState%20eq%20%27enabled%27")),
        Ok(Some(Filter::Compare {
            field: FilterField::PartnerState,
            op: Comparison::Eq,
            value: FilterValue::State(PartnerState::Enabled),
        }))
    );
    assert_eq!(
        parse_count(Some("filter=iosOnboarded")).map(|f| f.is_some()),
        Ok(true)
    );
    for (query, message) in [
        (
            "$top=1",
            "query option '$top' is not supported on this request",
        ),
        ("$search=x", "$search is not supported; use $filter"),
        ("$filter=", "$filter: the expression is empty"),
    ] {
        assert_eq!(
            parse_count(Some(query)).map_err(|e| e.message().to_owned()),
            Err(message.to_owned()),
            "{query}"
        );
    }
}

#[test]
fn get_takes_only_a_select() {
    assert_eq!(parse_get(None), Ok(Selection::all()));
    assert_eq!(
        parse_get(Some("select=displayName")).map(|s| s.context_suffix()),
        Ok("(displayName)".to_owned())
    );
    for (query, message) in [
        (
            "$filter=iosOnboarded",
            "query option '$filter' is not supported on this request",
        ),
        (
            "$expand=x",
            "$expand is not supported: complianceManagementPartner has no navigation properties to expand",
        ),
        (
            "$select=nope",
            "$select: 'nope' is not a property of complianceManagementPartner",
        ),
    ] {
        assert_eq!(
            parse_get(Some(query)).map_err(|e| e.message().to_owned()),
            Err(message.to_owned()),
            "{query}"
        );
    }
}

#[test]
fn writes_take_no_option_but_custom_ones() {
    assert_eq!(refuse_all(None), Ok(()));
    assert_eq!(refuse_all(Some("note=hello")), Ok(()));
    for (query, message) in [
        (
            "$select=id",
            "query option '$select' is not supported on this request",
        ),
        (
            "select=id",
            "query option '$select' is not supported on this request",
        ),
        (
            "%24top=1",
            "query option '$top' is not supported on this request",
        ),
        (
            "$Select=id",
            "query option names are case-sensitive: write '$select', not '$Select'",
        ),
    ] {
        assert_eq!(
            refuse_all(Some(query)).map_err(|e| e.message().to_owned()),
            Err(message.to_owned()),
            "{query}"
        );
    }
}

#[test]
fn the_fingerprint_hash_is_stable_across_builds() {
    // FNV-1a test vectors: the token format must not change with the compiler.
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn every_sortable_property_is_named_back_as_given() {
    for (name, field) in SORT_FIELDS {
        assert_eq!(sort_field(name), Some(field), "{name}");
        assert_eq!(sort_field_name(field), name, "{name}");
    }
}
