//! SQLite-only tests of the listing: the successor of a prefix, and the query plans that keep a
//! page's cost independent of its depth. The port's contract (every filter, order and page) is
//! tested in `cmp-store-contract`, against this store and the PostgreSQL one.

use cmp_application::query::{Cursor, FilterValue, ListQuery, SortField};
use cmp_domain::{PartnerId, PartnerState};
use cmp_store_contract::partner_listing::{at, key, query, seed, starts_with, varied_partners};
use cmp_store_contract::tenant;
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use super::*;
use crate::SqliteStore;
use crate::test_support::open_sqlite_store;

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

/// The steps of SQLite's plan for the page `list` asks for.
async fn page_plan(store: &SqliteStore, list: &ListQuery) -> Vec<String> {
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
    let (_dir, store) = open_sqlite_store().await;
    let repo = crate::test_support::ports_of(&store);
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
    let (_dir, store) = open_sqlite_store().await;
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
