//! SQLite-only tests of the partner store: what a file keeps across a close and a reopen. The
//! port's contract is tested in `cmp-store-contract`, against this store and the PostgreSQL one.

use cmp_application::PartnerStore;
use cmp_store_contract::{rich_partner, tenant, write_for};
use tempfile::TempDir;

use crate::SqliteStore;
use crate::test_support::settings;

/// Row counts of the five tables, in the order partners, partner_assignments, outbox,
/// deliveries, audit_log.
async fn row_counts(store: &SqliteStore) -> [i64; 5] {
    let mut counts = [0; 5];
    for (slot, sql) in counts.iter_mut().zip([
        "SELECT COUNT(*) FROM partners",
        "SELECT COUNT(*) FROM partner_assignments",
        "SELECT COUNT(*) FROM outbox",
        "SELECT COUNT(*) FROM deliveries",
        "SELECT COUNT(*) FROM audit_log",
    ]) {
        *slot = sqlx::query_scalar(sql)
            .fetch_one(&store.connections.reader)
            .await
            .expect("count rows");
    }
    counts
}

#[tokio::test]
async fn data_survives_close_and_reopen_of_the_same_file() {
    let dir = TempDir::new().expect("temp dir");
    let partner = rich_partner(1);
    let write = write_for(&partner, tenant(), 100);
    let store = SqliteStore::open(&settings(&dir)).await.expect("open");
    store
        .partner_store()
        .insert_partner(&partner, &write)
        .await
        .expect("insert");
    store.close().await;

    let reopened = SqliteStore::open(&settings(&dir)).await.expect("reopen");

    assert_eq!(
        reopened
            .partner_store()
            .get_partner(partner.id())
            .await
            .expect("read"),
        Some(partner)
    );
    assert_eq!(row_counts(&reopened).await, [1, 23, 1, 1, 1]);
    reopened.close().await;
}
