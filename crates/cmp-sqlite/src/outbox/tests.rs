//! SQLite-only tests of the outbox: the claim's query plan. The port's contract is tested in
//! `cmp-store-contract`, against this store and the PostgreSQL one.

use cmp_store_contract::{now, tenant};

use super::*;
use crate::test_support::open_sqlite_store;

#[tokio::test]
async fn the_claim_reads_the_outbox_through_its_indexes_only() {
    let (_dir, store) = open_sqlite_store().await;

    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {CLAIM_CANDIDATES}"
    )))
    .bind(tenant().to_string())
    .bind(now().unix_ticks())
    .bind(10_i64)
    .fetch_all(&store.connections.reader)
    .await
    .expect("query plan");

    let steps: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
    let uses = |index: &str| steps.iter().any(|step| step.contains(index));
    assert!(uses("outbox_tenant_state_next_attempt_at"), "{steps:#?}");
    assert!(
        uses("COVERING INDEX outbox_tenant_natural_key_state_created_at"),
        "the key probe answers from the index alone: {steps:#?}"
    );
    assert!(
        uses("INDEX outbox_partner_id_created_at (partner_id=?)"),
        "the partner probe reads only the partner's rows: {steps:#?}"
    );
    assert!(
        !steps.iter().any(|step| step.starts_with("SCAN candidate")
            || step.starts_with("SCAN ahead_by_key")
            || step.starts_with("SCAN ahead_for_partner")),
        "no full scan of the outbox: {steps:#?}"
    );
    store.close().await;
}
