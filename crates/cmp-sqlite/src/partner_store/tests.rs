//! SQLite-only tests of the partner store: what a file keeps across a close and a reopen. The
//! port's contract is tested in `cmp-store-contract`, against this store and the PostgreSQL one.

use cmp_application::PartnerStore;
use cmp_store_contract::{now, plain_partner, rich_partner, tenant, write_for};
use tempfile::TempDir;

use crate::SqliteStore;
use crate::partner_read::{Deleted, read_partner};
use crate::test_support::{open_sqlite_store, settings, side_connection};

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

#[tokio::test]
async fn reading_a_partner_is_one_prepared_statement_reused_on_every_read() {
    use sqlx::Connection;
    let (_dir, store) = open_sqlite_store().await;
    let partners = store.partner_store();
    let (rich, plain) = (rich_partner(1), plain_partner(2, "Plain", now()));
    for (partner, seed) in [(&rich, 100), (&plain, 200)] {
        partners
            .insert_partner(partner, &write_for(partner, tenant(), seed))
            .await
            .expect("insert");
    }
    let mut conn = side_connection(&store).await;

    let mut read = Vec::new();
    for partner in [&rich, &plain, &rich] {
        read.push(
            read_partner(&mut conn, &partner.id().to_string(), Deleted::Hidden)
                .await
                .expect("read"),
        );
    }

    assert_eq!(read, [Some(rich.clone()), Some(plain), Some(rich)]);
    assert_eq!(
        conn.cached_statements_size(),
        1,
        "one statement, prepared once and kept"
    );
    conn.close().await.expect("close");
    store.close().await;
}
