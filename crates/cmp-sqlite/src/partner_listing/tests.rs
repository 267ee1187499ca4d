//! Tests of listing and counting: the SQL translation of every filter operator on every field
//! (checked against a model written in Rust, and by hand for the cases that matter most), the
//! orders, keyset paging while partners come and go, and the query plans that keep a page's
//! cost independent of its depth. Each test runs on a fresh database file.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use cmp_application::query::{
    Comparison, Cursor, Filter, FilterField, FilterValue, ListQuery, SortField, SortKey,
};
use cmp_application::{AuditAction, PartnerStore};
use cmp_domain::{Partner, PartnerId, PartnerState, Platform, Timestamp};
use uuid::Uuid;

use super::*;
use crate::test_support::{
    Ports, change_write, now, open_store, other_tenant, partner_with, rich_partner, tenant,
    write_for,
};

/// `now()` moved by `seconds`.
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(now().unix_seconds() + seconds, 0).expect("in range")
}

/// Stores `partners` in `tenant` through the port, one create each.
async fn seed(repo: &Ports, tenant: cmp_domain::TenantId, partners: &[Partner]) {
    for partner in partners {
        let seed = partner.id().as_uuid().as_u128() * 10;
        repo.partners
            .insert_partner(partner, &write_for(partner, tenant, seed))
            .await
            .expect("insert partner");
    }
}

/// Sixty partners whose properties vary independently: five name stems in mixed case (one
/// non-ASCII), every state, four heartbeats (so there are ties, "never" among them), every
/// combination of onboarded flags over the first six, and ids in another order than the
/// names.
fn varied_partners() -> Vec<Partner> {
    const STEMS: [&str; 5] = ["Alpha", "beta", "GAMMA", "Delta", "École"];
    let heartbeats = [Timestamp::MIN, at(-3600), at(-60), now()];
    (1_u128..=60)
        .map(|n| {
            let index = usize::try_from(n).expect("small");
            let onboarded: Vec<Platform> = Platform::ALL
                .into_iter()
                .enumerate()
                .filter(|(bit, _)| (index >> bit) & 1 == 1)
                .map(|(_, platform)| platform)
                .collect();
            partner_with(
                (n * 919) % 1000 + 1,
                &format!("{} {n:02}", STEMS[index % STEMS.len()]),
                PartnerState::ALL[index % PartnerState::ALL.len()],
                heartbeats[index % heartbeats.len()],
                &onboarded,
            )
        })
        .collect()
}

fn ordinal(state: PartnerState) -> usize {
    PartnerState::ALL
        .iter()
        .position(|member| *member == state)
        .expect("a member")
}

/// The model: whether `partner` satisfies `filter`, computed in Rust.
fn holds(filter: &Filter, partner: &Partner) -> bool {
    match filter {
        Filter::Compare { field, op, value } => {
            let ordering = match (field, value) {
                (FilterField::DisplayName, FilterValue::Text(text)) => {
                    NaturalKey::of(partner.display_name()).cmp(&NaturalKey::fold(text))
                }
                (FilterField::PartnerState, FilterValue::State(state)) => {
                    ordinal(partner.state()).cmp(&ordinal(*state))
                }
                (FilterField::LastHeartbeat, FilterValue::Instant(instant)) => {
                    partner.last_heartbeat().cmp(instant)
                }
                (FilterField::Onboarded(platform), FilterValue::Bool(flag)) => {
                    partner.platform(*platform).onboarded().cmp(flag)
                }
                (FilterField::Id, FilterValue::Id(id)) => {
                    partner.id().to_string().cmp(&id.to_string())
                }
                other => panic!("ill-typed comparison in a test: {other:?}"),
            };
            match op {
                Comparison::Eq => ordering == Ordering::Equal,
                Comparison::Ne => ordering != Ordering::Equal,
                Comparison::Gt => ordering == Ordering::Greater,
                Comparison::Ge => ordering != Ordering::Less,
                Comparison::Lt => ordering == Ordering::Less,
                Comparison::Le => ordering != Ordering::Greater,
            }
        }
        Filter::StartsWith { prefix } => {
            NaturalKey::of(partner.display_name()).starts_with(&NaturalKey::fold(prefix))
        }
        Filter::And(left, right) => holds(left, partner) && holds(right, partner),
        Filter::Or(left, right) => holds(left, partner) || holds(right, partner),
        Filter::Not(inner) => !holds(inner, partner),
    }
}

/// The model: how `a` and `b` compare under `keys`.
fn compare(a: &Partner, b: &Partner, keys: &[SortKey]) -> Ordering {
    for key in keys {
        let ordering = match key.field {
            SortField::DisplayName => {
                NaturalKey::of(a.display_name()).cmp(&NaturalKey::of(b.display_name()))
            }
            SortField::LastHeartbeat => a.last_heartbeat().cmp(&b.last_heartbeat()),
            SortField::PartnerState => ordinal(a.state()).cmp(&ordinal(b.state())),
            SortField::Id => a.id().to_string().cmp(&b.id().to_string()),
        };
        let ordering = if key.descending {
            ordering.reverse()
        } else {
            ordering
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

fn compare_op(field: FilterField, op: Comparison, value: FilterValue) -> Filter {
    Filter::Compare { field, op, value }
}

fn name_is(name: &str) -> Filter {
    compare_op(
        FilterField::DisplayName,
        Comparison::Eq,
        FilterValue::Text(name.into()),
    )
}

fn starts_with(prefix: &str) -> Filter {
    Filter::StartsWith {
        prefix: prefix.into(),
    }
}

fn state_is(state: PartnerState) -> Filter {
    compare_op(
        FilterField::PartnerState,
        Comparison::Eq,
        FilterValue::State(state),
    )
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

fn key(field: SortField, descending: bool) -> SortKey {
    SortKey { field, descending }
}

fn query(filter: Option<Filter>, order: Vec<SortKey>, page_size: u32) -> ListQuery {
    ListQuery {
        filter,
        order,
        page_size,
        ..ListQuery::default()
    }
}

fn names(partners: &[Partner]) -> Vec<String> {
    partners
        .iter()
        .map(|p| p.display_name().as_str().to_owned())
        .collect()
}

fn ids(partners: &[Partner]) -> Vec<PartnerId> {
    partners.iter().map(Partner::id).collect()
}

/// Every partner of the tenant that `filter` matches, in the default order, in one page.
async fn matching(repo: &Ports, filter: Filter) -> Vec<Partner> {
    let page = repo
        .partners
        .list_partners(tenant(), &query(Some(filter), Vec::new(), 999))
        .await
        .expect("list");
    assert_eq!(page.next, None, "one page holds them all");
    page.items
}

#[tokio::test]
async fn every_comparison_on_every_field_selects_what_the_model_selects() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners = varied_partners();
    seed(&repo, tenant(), &partners).await;
    let some_id = partners[6].id();
    let mut literals: Vec<(FilterField, FilterValue)> = vec![
        (
            FilterField::DisplayName,
            FilterValue::Text("beta 06".into()),
        ),
        (
            FilterField::DisplayName,
            FilterValue::Text("BETA 06".into()),
        ),
        (FilterField::DisplayName, FilterValue::Text("Delta".into())),
        (
            FilterField::DisplayName,
            FilterValue::Text("ÉCOLE 04".into()),
        ),
        (FilterField::DisplayName, FilterValue::Text("zzz".into())),
        (FilterField::LastHeartbeat, FilterValue::Instant(at(-3600))),
        (
            FilterField::LastHeartbeat,
            FilterValue::Instant(Timestamp::MIN),
        ),
        (FilterField::LastHeartbeat, FilterValue::Instant(at(1))),
        (FilterField::Id, FilterValue::Id(some_id)),
        (
            FilterField::Id,
            FilterValue::Id(PartnerId::from_uuid(Uuid::from_u128(0xffff))),
        ),
    ];
    for state in PartnerState::ALL {
        literals.push((FilterField::PartnerState, FilterValue::State(state)));
    }
    for platform in Platform::ALL {
        for flag in [false, true] {
            literals.push((FilterField::Onboarded(platform), FilterValue::Bool(flag)));
        }
    }
    let operators = [
        Comparison::Eq,
        Comparison::Ne,
        Comparison::Gt,
        Comparison::Ge,
        Comparison::Lt,
        Comparison::Le,
    ];
    let mut by_default_order = partners.clone();
    by_default_order.sort_by(|a, b| compare(a, b, &[key(SortField::Id, false)]));

    for (field, value) in &literals {
        for op in operators {
            let filter = compare_op(*field, op, value.clone());
            let expected: Vec<PartnerId> = by_default_order
                .iter()
                .filter(|p| holds(&filter, p))
                .map(Partner::id)
                .collect();

            let listed = matching(&repo, filter.clone()).await;
            let counted = repo
                .partners
                .count_partners(tenant(), Some(filter.clone()))
                .await
                .expect("count");

            assert_eq!(ids(&listed), expected, "listing {filter:?}");
            assert_eq!(
                counted,
                u64::try_from(expected.len()).expect("small"),
                "counting {filter:?}"
            );
        }
    }
    store.close().await;
}

#[tokio::test]
async fn comparisons_select_the_partners_named_by_hand() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners = [
        partner_with(
            1,
            "Contoso",
            PartnerState::Enabled,
            at(-60),
            &[Platform::Ios],
        ),
        partner_with(2, "Fabrikam", PartnerState::Rejected, Timestamp::MIN, &[]),
        partner_with(
            3,
            "northwind",
            PartnerState::Unknown,
            at(-10),
            &[Platform::Linux],
        ),
    ];
    seed(&repo, tenant(), &partners).await;
    let cases: Vec<(&str, Filter, Vec<&str>)> = vec![
        (
            "name eq in another case",
            name_is("CONTOSO"),
            vec!["Contoso"],
        ),
        (
            "name lt compares case-insensitively",
            compare_op(
                FilterField::DisplayName,
                Comparison::Lt,
                FilterValue::Text("NORTH".into()),
            ),
            vec!["Contoso", "Fabrikam"],
        ),
        (
            "state gt by declared order, not by name",
            compare_op(
                FilterField::PartnerState,
                Comparison::Gt,
                FilterValue::State(PartnerState::Enabled),
            ),
            vec!["Fabrikam"],
        ),
        (
            "heartbeat ge",
            compare_op(
                FilterField::LastHeartbeat,
                Comparison::Ge,
                FilterValue::Instant(at(-60)),
            ),
            vec!["Contoso", "northwind"],
        ),
        (
            "onboarded eq true",
            compare_op(
                FilterField::Onboarded(Platform::Linux),
                Comparison::Eq,
                FilterValue::Bool(true),
            ),
            vec!["northwind"],
        ),
        (
            "onboarded ne true",
            compare_op(
                FilterField::Onboarded(Platform::Ios),
                Comparison::Ne,
                FilterValue::Bool(true),
            ),
            vec!["Fabrikam", "northwind"],
        ),
        (
            "id eq",
            compare_op(
                FilterField::Id,
                Comparison::Eq,
                FilterValue::Id(partners[1].id()),
            ),
            vec!["Fabrikam"],
        ),
    ];

    for (case, filter, expected) in cases {
        assert_eq!(
            names(&matching(&repo, filter).await),
            expected,
            "case {case}"
        );
    }
    store.close().await;
}

#[tokio::test]
async fn and_or_not_nest_as_the_expression_says_whatever_sql_precedence_would_do() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners = varied_partners();
    seed(&repo, tenant(), &partners).await;
    let a = starts_with("alpha");
    let b = state_is(PartnerState::Enabled);
    let c = compare_op(
        FilterField::Onboarded(Platform::MacOs),
        Comparison::Eq,
        FilterValue::Bool(true),
    );
    // Written flat, `a OR b AND c` is `a OR (b AND c)` in SQL, and `NOT a OR b` is
    // `(NOT a) OR b`: each tree below must keep its own meaning.
    let cases = [
        ("(a or b) and c", and(or(a.clone(), b.clone()), c.clone())),
        ("a or (b and c)", or(a.clone(), and(b.clone(), c.clone()))),
        ("not (a or b)", not(or(a.clone(), b.clone()))),
        ("(not a) or b", or(not(a.clone()), b.clone())),
        ("not (a and not c)", not(and(a.clone(), not(c.clone())))),
        (
            "(a and b) or (not a and not c)",
            or(
                and(a.clone(), b.clone()),
                and(not(a.clone()), not(c.clone())),
            ),
        ),
    ];
    let mut results = Vec::new();

    for (case, filter) in cases {
        let mut expected: Vec<&Partner> = partners.iter().filter(|p| holds(&filter, p)).collect();
        expected.sort_by(|x, y| compare(x, y, &[key(SortField::Id, false)]));
        let expected: Vec<PartnerId> = expected.into_iter().map(Partner::id).collect();

        let listed = ids(&matching(&repo, filter).await);

        assert_eq!(listed, expected, "case {case}");
        results.push(listed);
    }
    assert_ne!(results[0], results[1], "the grouping changes the result");
    assert_ne!(
        results[2], results[3],
        "the scope of not changes the result"
    );
    store.close().await;
}

#[tokio::test]
async fn startswith_on_display_name_is_case_insensitive_including_non_ascii() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners = [
        partner_with(1, "École Nord", PartnerState::Enabled, now(), &[]),
        partner_with(2, "ecole sud", PartnerState::Enabled, now(), &[]),
        partner_with(3, "ÉCOLIER", PartnerState::Enabled, now(), &[]),
        partner_with(4, "Contoso", PartnerState::Enabled, now(), &[]),
        partner_with(5, "contoso east", PartnerState::Enabled, now(), &[]),
    ];
    seed(&repo, tenant(), &partners).await;
    let cases: [(&str, &str, Vec<&str>); 5] = [
        (
            "upper-case ASCII prefix",
            "CONTOSO",
            vec!["Contoso", "contoso east"],
        ),
        (
            "non-ASCII prefix in another case",
            "écol",
            vec!["École Nord", "ÉCOLIER"],
        ),
        ("the whole name", "école nord", vec!["École Nord"]),
        ("longer than any name", "contoso east and more", vec![]),
        (
            "the empty prefix",
            "",
            vec![
                "Contoso",
                "contoso east",
                "École Nord",
                "ecole sud",
                "ÉCOLIER",
            ],
        ),
    ];

    for (case, prefix, expected) in cases {
        let mut listed = names(&matching(&repo, starts_with(prefix)).await);
        listed.sort_by_key(|name| name.to_lowercase());
        let mut expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
        expected.sort_by_key(|name| name.to_lowercase());

        assert_eq!(listed, expected, "case {case}");
    }
    store.close().await;
}

#[tokio::test]
async fn startswith_treats_percent_underscore_and_backslash_as_plain_characters() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners = [
        partner_with(1, "100% Secure", PartnerState::Enabled, now(), &[]),
        partner_with(2, "100 Secure", PartnerState::Enabled, now(), &[]),
        partner_with(3, "1000 Secure", PartnerState::Enabled, now(), &[]),
        partner_with(4, "a_b", PartnerState::Enabled, now(), &[]),
        partner_with(5, "axb", PartnerState::Enabled, now(), &[]),
        partner_with(6, r"back\slash", PartnerState::Enabled, now(), &[]),
        partner_with(7, "backslash", PartnerState::Enabled, now(), &[]),
    ];
    seed(&repo, tenant(), &partners).await;
    let cases: [(&str, Vec<&str>); 5] = [
        ("100%", vec!["100% Secure"]),
        ("%", vec![]),
        ("a_", vec!["a_b"]),
        ("_", vec![]),
        (r"back\", vec![r"back\slash"]),
    ];

    for (prefix, expected) in cases {
        assert_eq!(
            names(&matching(&repo, starts_with(prefix)).await),
            expected,
            "prefix {prefix:?}"
        );
    }
    store.close().await;
}

#[test]
fn the_successor_of_a_prefix_bounds_exactly_the_strings_that_start_with_it() {
    let cases = [
        ("abc", Some("abd".to_owned())),
        ("a%", Some("a&".to_owned())),
        ("é", Some("ê".to_owned())),
        ("a\u{10FFFF}", Some("b".to_owned())),
        ("\u{D7FF}", Some("\u{E000}".to_owned())),
        ("\u{10FFFF}\u{10FFFF}", None),
    ];

    for (prefix, expected) in cases {
        assert_eq!(successor(prefix), expected, "prefix {prefix:?}");
    }
}

#[tokio::test]
async fn each_sort_key_orders_ascending_and_descending_with_ties_broken_by_id() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners = varied_partners();
    seed(&repo, tenant(), &partners).await;

    for field in [
        SortField::DisplayName,
        SortField::LastHeartbeat,
        SortField::PartnerState,
        SortField::Id,
    ] {
        for descending in [false, true] {
            let list = query(None, vec![key(field, descending)], 999);
            let keys = list.sort_keys();
            let mut expected = partners.clone();
            expected.sort_by(|a, b| compare(a, b, &keys));

            let page = repo
                .partners
                .list_partners(tenant(), &list)
                .await
                .expect("list");

            assert_eq!(
                ids(&page.items),
                ids(&expected),
                "{field:?} descending={descending}"
            );
        }
    }
    store.close().await;
}

#[tokio::test]
async fn several_sort_keys_order_by_each_in_turn() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners = varied_partners();
    seed(&repo, tenant(), &partners).await;
    let orders = [
        vec![
            key(SortField::PartnerState, false),
            key(SortField::LastHeartbeat, true),
        ],
        vec![
            key(SortField::LastHeartbeat, true),
            key(SortField::DisplayName, false),
        ],
        vec![key(SortField::PartnerState, true), key(SortField::Id, true)],
        vec![key(SortField::Id, false), key(SortField::DisplayName, true)],
    ];

    for order in orders {
        let list = query(None, order.clone(), 999);
        let mut expected = partners.clone();
        expected.sort_by(|a, b| compare(a, b, &list.sort_keys()));

        let page = repo
            .partners
            .list_partners(tenant(), &list)
            .await
            .expect("list");

        assert_eq!(ids(&page.items), ids(&expected), "order {order:?}");
    }
    store.close().await;
}

#[tokio::test]
async fn a_page_carries_each_partner_whole_with_its_assignments_in_order() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners = [
        rich_partner(1),
        partner_with(2, "Plain", PartnerState::Enabled, now(), &[]),
        crate::test_support::plain_partner(3, "Another", now()),
    ];
    seed(&repo, tenant(), &partners).await;

    let page = repo
        .partners
        .list_partners(tenant(), &query(None, Vec::new(), 10))
        .await
        .expect("list");

    assert_eq!(page.items, partners.to_vec(), "ids 1, 2, 3 in id order");
    store.close().await;
}

#[tokio::test]
async fn next_is_set_exactly_when_more_partners_follow_the_page() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let empty = repo
        .partners
        .list_partners(tenant(), &query(None, Vec::new(), 5))
        .await
        .expect("list");
    assert_eq!(
        (empty.items.len(), empty.next),
        (0, None),
        "an empty tenant"
    );
    let partners: Vec<Partner> = (1..=10)
        .map(|n| partner_with(n, &format!("P{n:02}"), PartnerState::Enabled, now(), &[]))
        .collect();
    seed(&repo, tenant(), &partners).await;

    let first = repo
        .partners
        .list_partners(tenant(), &query(None, Vec::new(), 5))
        .await
        .expect("first page");
    let second = repo
        .partners
        .list_partners(
            tenant(),
            &ListQuery {
                after: first.next.clone(),
                ..query(None, Vec::new(), 5)
            },
        )
        .await
        .expect("second page");
    let whole = repo
        .partners
        .list_partners(tenant(), &query(None, Vec::new(), 10))
        .await
        .expect("one page of all");

    assert_eq!(ids(&first.items), ids(&partners[..5]));
    assert_eq!(
        first.next,
        Some(Cursor {
            values: vec![FilterValue::Id(partners[4].id())]
        }),
        "the cursor is the last item's sort-key values"
    );
    assert_eq!(ids(&second.items), ids(&partners[5..]));
    assert_eq!(second.next, None, "a full last page has no next");
    assert_eq!(whole.next, None);
    store.close().await;
}

#[tokio::test]
async fn the_cursor_holds_the_sort_key_values_of_the_last_item_in_key_order() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners = [
        partner_with(1, "Zeta", PartnerState::Rejected, at(-5), &[]),
        partner_with(2, "ALPHA", PartnerState::Enabled, at(-7), &[]),
    ];
    seed(&repo, tenant(), &partners).await;
    let list = query(
        None,
        vec![
            key(SortField::DisplayName, false),
            key(SortField::PartnerState, true),
            key(SortField::LastHeartbeat, false),
        ],
        1,
    );

    let page = repo
        .partners
        .list_partners(tenant(), &list)
        .await
        .expect("list");

    assert_eq!(
        page.next,
        Some(Cursor {
            values: vec![
                FilterValue::Text("alpha".into()),
                FilterValue::State(PartnerState::Enabled),
                FilterValue::Instant(at(-7)),
                FilterValue::Id(partners[1].id()),
            ]
        })
    );
    store.close().await;
}

#[tokio::test]
async fn skip_passes_over_partners_on_a_first_page_only() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners: Vec<Partner> = (1..=10)
        .map(|n| partner_with(n, &format!("P{n:02}"), PartnerState::Enabled, now(), &[]))
        .collect();
    seed(&repo, tenant(), &partners).await;

    let skipped = repo
        .partners
        .list_partners(
            tenant(),
            &ListQuery {
                skip: 3,
                ..query(None, Vec::new(), 4)
            },
        )
        .await
        .expect("list");
    let after_cursor = repo
        .partners
        .list_partners(
            tenant(),
            &ListQuery {
                skip: 3,
                after: skipped.next.clone(),
                ..query(None, Vec::new(), 4)
            },
        )
        .await
        .expect("list");
    let beyond = repo
        .partners
        .list_partners(
            tenant(),
            &ListQuery {
                skip: u64::MAX,
                ..query(None, Vec::new(), 4)
            },
        )
        .await
        .expect("list");

    assert_eq!(ids(&skipped.items), ids(&partners[3..7]));
    assert_eq!(
        ids(&after_cursor.items),
        ids(&partners[7..]),
        "a cursor replaces skip"
    );
    assert_eq!((beyond.items.len(), beyond.next), (0, None));
    store.close().await;
}

#[tokio::test]
async fn count_and_total_honour_the_filter_and_leave_out_deleted_partners_and_other_tenants() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners = varied_partners();
    seed(&repo, tenant(), &partners).await;
    seed(
        &repo,
        other_tenant(),
        &[partner_with(
            5000,
            "beta 99",
            PartnerState::Enabled,
            now(),
            &[],
        )],
    )
    .await;
    let deleted = partners
        .iter()
        .find(|p| p.display_name().as_str() == "beta 01")
        .expect("beta 01");
    repo.partners
        .delete_partner(
            deleted.id(),
            &change_write(deleted.id(), tenant(), 90_000, AuditAction::Deleted, now()),
        )
        .await
        .expect("delete");
    let filter = starts_with("BETA");
    let live_betas = partners
        .iter()
        .filter(|p| holds(&filter, p) && p.id() != deleted.id())
        .count();

    let counted = repo
        .partners
        .count_partners(tenant(), Some(filter.clone()))
        .await
        .expect("count");
    let all = repo
        .partners
        .count_partners(tenant(), None)
        .await
        .expect("count all");
    let page = repo
        .partners
        .list_partners(
            tenant(),
            &ListQuery {
                count: true,
                ..query(Some(filter), Vec::new(), 2)
            },
        )
        .await
        .expect("list");
    let uncounted = repo
        .partners
        .list_partners(tenant(), &query(None, Vec::new(), 2))
        .await
        .expect("list");

    assert_eq!(counted, u64::try_from(live_betas).expect("small"));
    assert_eq!(all, 59);
    assert_eq!(
        page.total,
        Some(counted),
        "the total of every page, not of this one"
    );
    assert_eq!(page.items.len(), 2);
    assert_eq!(uncounted.total, None, "no count unless asked");
    store.close().await;
}

#[tokio::test]
async fn a_cursor_that_does_not_fit_the_sort_keys_is_unexpected() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    seed(
        &repo,
        tenant(),
        &[partner_with(
            1,
            "Contoso",
            PartnerState::Enabled,
            now(),
            &[],
        )],
    )
    .await;
    let id = FilterValue::Id(PartnerId::from_uuid(Uuid::from_u128(1)));
    let by_name = vec![key(SortField::DisplayName, false)];
    let cases = [
        ("too short", by_name.clone(), vec![id.clone()], "2 keys"),
        (
            "too long",
            Vec::new(),
            vec![id.clone(), id.clone()],
            "1 keys",
        ),
        (
            "a state where a name belongs",
            by_name.clone(),
            vec![FilterValue::State(PartnerState::Enabled), id.clone()],
            "displayName",
        ),
        (
            "text where an id belongs",
            Vec::new(),
            vec![FilterValue::Text("x".into())],
            "sorts by id",
        ),
        (
            "a boolean where an instant belongs",
            vec![key(SortField::LastHeartbeat, true)],
            vec![FilterValue::Bool(true), id.clone()],
            "lastHeartbeatDateTime",
        ),
    ];

    for (case, order, values, mentions) in cases {
        let result = repo
            .partners
            .list_partners(
                tenant(),
                &ListQuery {
                    after: Some(Cursor { values }),
                    ..query(None, order, 10)
                },
            )
            .await;

        match result {
            Err(StoreError::Unexpected(error)) => {
                let message = error.to_string();
                assert!(
                    message.contains("cursor does not fit"),
                    "case {case}: {message}"
                );
                assert!(message.contains(mentions), "case {case}: {message}");
            }
            other => panic!("case {case}: expected Unexpected, got {other:?}"),
        }
    }
    store.close().await;
}

#[tokio::test]
async fn a_comparison_with_a_literal_of_another_type_is_unexpected() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let ill_typed = and(
        name_is("Contoso"),
        compare_op(
            FilterField::PartnerState,
            Comparison::Eq,
            FilterValue::Text("enabled".into()),
        ),
    );

    let listed = repo
        .partners
        .list_partners(tenant(), &query(Some(ill_typed.clone()), Vec::new(), 10))
        .await;
    let counted = repo
        .partners
        .count_partners(tenant(), Some(ill_typed))
        .await;

    for (case, error) in [("list", listed.err()), ("count", counted.err())] {
        match error {
            Some(StoreError::Unexpected(error)) => assert!(
                error
                    .to_string()
                    .contains("compares partnerState with a string"),
                "{case}: {error}"
            ),
            other => panic!("{case}: expected Unexpected, got {other:?}"),
        }
    }
    store.close().await;
}

#[tokio::test]
async fn the_stored_state_order_agrees_with_the_enums_declared_order() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let partners: Vec<Partner> = PartnerState::ALL
        .into_iter()
        .zip(1_u128..)
        .map(|(state, n)| partner_with(n, &format!("P{n}"), state, now(), &[]))
        .collect();
    seed(&repo, tenant(), &partners).await;

    for partner in &partners {
        let stored: i64 =
            sqlx::query_scalar("SELECT partner_state_order FROM partners WHERE id = ?")
                .bind(partner.id().to_string())
                .fetch_one(&store.connections.reader)
                .await
                .expect("read");

        assert_eq!(stored, state_order(partner.state()), "{}", partner.state());
        assert_eq!(
            stored,
            i64::try_from(ordinal(partner.state())).expect("small"),
            "{}",
            partner.state()
        );
    }
    store.close().await;
}

/// A small deterministic generator for the paging test (no dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).expect("31 bits fit") % bound
    }
}

/// The tenant's partners as the paging test changes them.
struct World {
    live: BTreeMap<PartnerId, Partner>,
    next_id: u128,
    rng: Lcg,
}

impl World {
    fn random_partner(&mut self) -> Partner {
        const STEMS: [&str; 6] = ["Alpha", "beta", "Gamma", "delta", "École", "Zulu"];
        let heartbeats = [
            Timestamp::MIN,
            at(-86_400),
            at(-3600),
            at(-60),
            at(-1),
            now(),
        ];
        let n = self.next_id;
        self.next_id += 1;
        let onboarded = if self.rng.below(2) == 0 {
            vec![Platform::Ios]
        } else {
            Vec::new()
        };
        partner_with(
            // Scattered over the id space, so new ids land before and after any cursor.
            (u128::try_from(self.rng.below(1 << 30)).expect("small") << 64) | n,
            &format!("{} {n:05}", STEMS[self.rng.below(STEMS.len())]),
            PartnerState::ALL[self.rng.below(PartnerState::ALL.len())],
            heartbeats[self.rng.below(heartbeats.len())],
            &onboarded,
        )
    }
}

/// Pages through the tenant in `order`, 37 at a time; between pages deletes two partners and
/// creates three. Checks that no partner repeats, that the pages run in order, that every
/// partner present throughout is returned, that a partner deleted before its page never is,
/// and that a new partner appears exactly when it sorts after the cursor it was created
/// behind (and is still there when its page is read).
async fn page_through_while_partners_come_and_go(
    repo: &Ports,
    world: &mut World,
    order: Vec<SortKey>,
) {
    let base = query(None, order.clone(), 37);
    let keys = base.sort_keys();
    let present_at_start: HashSet<PartnerId> = world.live.keys().copied().collect();
    let mut deleted = HashSet::new();
    let mut created_after_cursor = HashSet::new();
    let mut created = HashSet::new();
    let mut seen: Vec<Partner> = Vec::new();
    let mut returned = HashSet::new();
    let mut cursor = None;

    loop {
        let page = repo
            .partners
            .list_partners(
                tenant(),
                &ListQuery {
                    after: cursor.clone(),
                    ..base.clone()
                },
            )
            .await
            .expect("page");
        for partner in &page.items {
            assert!(
                returned.insert(partner.id()),
                "{order:?}: {} repeats",
                partner.id()
            );
            assert!(
                !deleted.contains(&partner.id()),
                "{order:?}: {} was deleted before its page",
                partner.id()
            );
        }
        seen.extend(page.items.iter().cloned());
        let Some(next) = page.next else { break };
        assert_eq!(
            page.items.len(),
            37,
            "{order:?}: only the last page is short"
        );
        cursor = Some(next);
        let last = seen.last().expect("a full page").clone();

        for _ in 0..2 {
            let victims: Vec<PartnerId> = world.live.keys().copied().collect();
            let victim = victims[world.rng.below(victims.len())];
            // Apart from the seeds of the creates, which derive from partner ids.
            let seed = (1 << 100) + world.next_id * 10;
            world.next_id += 1;
            repo.partners
                .delete_partner(
                    victim,
                    &change_write(victim, tenant(), seed, AuditAction::Deleted, now()),
                )
                .await
                .expect("delete");
            world.live.remove(&victim);
            deleted.insert(victim);
        }
        for _ in 0..3 {
            let partner = world.random_partner();
            seed(repo, tenant(), std::slice::from_ref(&partner)).await;
            if compare(&partner, &last, &keys) == Ordering::Greater {
                created_after_cursor.insert(partner.id());
            }
            created.insert(partner.id());
            world.live.insert(partner.id(), partner);
        }
    }

    for pair in seen.windows(2) {
        assert_eq!(
            compare(&pair[0], &pair[1], &keys),
            Ordering::Less,
            "{order:?}: {} then {}",
            pair[0].display_name(),
            pair[1].display_name()
        );
    }
    for id in present_at_start.difference(&deleted) {
        assert!(
            returned.contains(id),
            "{order:?}: {id} present throughout but never returned"
        );
    }
    for id in created_after_cursor.difference(&deleted) {
        assert!(
            returned.contains(id),
            "{order:?}: {id} created ahead of the cursor but missed"
        );
    }
    for id in &returned {
        assert!(
            present_at_start.contains(id) || created_after_cursor.contains(id),
            "{order:?}: {id} created behind the cursor yet returned (created: {})",
            created.contains(id)
        );
    }
    assert!(
        !deleted.is_empty() && !created.is_empty(),
        "the tenant did change"
    );
}

#[tokio::test]
async fn keyset_paging_through_1000_partners_returns_each_once_in_order_while_partners_come_and_go()
{
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    let mut world = World {
        live: BTreeMap::new(),
        next_id: 1,
        rng: Lcg(0x5eed),
    };
    let partners: Vec<Partner> = (0..1000).map(|_| world.random_partner()).collect();
    seed(&repo, tenant(), &partners).await;
    world
        .live
        .extend(partners.into_iter().map(|partner| (partner.id(), partner)));
    let orders = [
        Vec::new(),
        vec![key(SortField::DisplayName, false)],
        vec![key(SortField::DisplayName, true)],
        vec![key(SortField::LastHeartbeat, true)],
        vec![
            key(SortField::LastHeartbeat, true),
            key(SortField::Id, true),
        ],
        vec![
            key(SortField::PartnerState, false),
            key(SortField::LastHeartbeat, true),
        ],
    ];

    for order in orders {
        page_through_while_partners_come_and_go(&repo, &mut world, order).await;
    }
    store.close().await;
}

/// The steps of SQLite's plan for the page `list` asks for.
async fn page_plan(store: &crate::SqliteStore, list: &ListQuery) -> Vec<String> {
    let mut explain = QueryBuilder::<Sqlite>::new("EXPLAIN QUERY PLAN ");
    push_page_select(&mut explain, tenant(), list, &list.sort_keys()).expect("statement");
    let plan: Vec<(i64, i64, i64, String)> = explain
        .build_query_as()
        .fetch_all(&store.connections.reader)
        .await
        .expect("query plan");
    plan.into_iter().map(|(_, _, _, step)| step).collect()
}

#[tokio::test]
async fn a_keyset_page_in_each_single_key_order_is_a_range_of_an_index_read_in_order() {
    let (_dir, store) = open_store().await;
    let repo = store.ports();
    seed(&repo, tenant(), &varied_partners()).await;
    let id = FilterValue::Id(PartnerId::from_uuid(Uuid::from_u128(500)));
    let cases = [
        (
            "default order",
            Vec::new(),
            vec![id.clone()],
            "partners_live_by_id",
        ),
        (
            "by name",
            vec![key(SortField::DisplayName, false)],
            vec![FilterValue::Text("delta 33".into()), id.clone()],
            "partners_by_name",
        ),
        (
            "by heartbeat",
            vec![key(SortField::LastHeartbeat, false)],
            vec![FilterValue::Instant(at(-60)), id.clone()],
            "partners_live_by_heartbeat",
        ),
        (
            "by state",
            vec![key(SortField::PartnerState, false)],
            vec![FilterValue::State(PartnerState::Enabled), id.clone()],
            "partners_live_by_state",
        ),
        (
            "by name, descending throughout",
            vec![key(SortField::DisplayName, true), key(SortField::Id, true)],
            vec![FilterValue::Text("delta 33".into()), id.clone()],
            "partners_by_name",
        ),
    ];

    for (case, order, values, index) in cases {
        let list = ListQuery {
            after: Some(Cursor { values }),
            ..query(None, order, 100)
        };

        let steps = page_plan(&store, &list).await;

        assert!(
            steps.iter().any(|step| step
                .starts_with(&format!("SEARCH partners USING INDEX {index} ("))
                && (step.contains('>') || step.contains('<'))),
            "case {case}: a range of {index}: {steps:#?}"
        );
        assert!(
            !steps.iter().any(|step| step.contains("TEMP B-TREE")),
            "case {case}: no sort: {steps:#?}"
        );
        assert!(
            !steps.iter().any(|step| step.starts_with("SCAN partners")),
            "case {case}: no full scan: {steps:#?}"
        );
    }
    store.close().await;
}

#[tokio::test]
async fn a_startswith_page_by_name_is_a_range_of_the_name_index() {
    let (_dir, store) = open_store().await;
    let list = query(
        Some(starts_with("Partner 9")),
        vec![key(SortField::DisplayName, false)],
        100,
    );

    let steps = page_plan(&store, &list).await;

    assert!(
        steps.iter().any(|step| step.contains("partners_by_name")
            && step.contains("name_key>")
            && step.contains("name_key<")),
        "{steps:#?}"
    );
    assert!(
        !steps.iter().any(|step| step.contains("TEMP B-TREE")),
        "{steps:#?}"
    );
    store.close().await;
}
