//! SQLite-only tests of the partner store: what a file keeps across a close and a reopen. The
//! port's contract is tested in `cmp-store-contract`, against this store and the PostgreSQL one.

use cmp_application::PartnerStore;
use cmp_domain::Partner;
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

/// A read by id is served from the cache after the first, and an update whose caller went away
/// before the answer (a client hanging up) still makes the next read see the update: the writer
/// task forgets the cached partner once the update has committed.
#[tokio::test]
async fn a_partner_read_from_the_cache_is_forgotten_by_an_update_whose_caller_went_away() {
    use cmp_application::{ChangedPartner, PartnerUpdate};
    use cmp_store_contract::{change_write, renamed};

    let (_dir, store) = open_sqlite_store().await;
    let partners = store.partner_store();
    let stored = plain_partner(1, "Before", now());
    partners
        .insert_partner(&stored, &write_for(&stored, tenant(), 100))
        .await
        .expect("insert");
    assert_eq!(
        partners.get_partner(stored.id()).await.expect("read"),
        Some(stored.clone())
    );
    assert_eq!(
        store.connections.partners.get(stored.id()),
        Some(stored.clone()),
        "the read filled the cache"
    );

    // Hold the writer, so that the update waits in its queue while its caller goes away.
    let writer = store.connections.writer.clone();
    let (holding, held) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn({
        let writer = writer.clone();
        async move {
            writer
                .write(move |_conn| {
                    crate::writer::boxed(async move {
                        let _ = holding.send(());
                        let _ = released.await;
                        Ok(())
                    })
                })
                .await
        }
    });
    held.await.expect("the writer runs the holding write");

    let write = change_write(
        stored.id(),
        tenant(),
        200,
        cmp_application::AuditAction::Updated,
        now(),
    );
    let update = PartnerUpdate {
        tenant_id: write.tenant_id,
        outbox_id: write.outbox_id,
        now: write.now,
        change: Box::new(move |current: &Partner| {
            Ok(ChangedPartner {
                partner: renamed(current, "After"),
                audit: write.audit,
            })
        }),
    };
    let caller = tokio::spawn({
        let partners = partners.clone();
        let id = stored.id();
        async move { partners.update_partner(id, update).await }
    });
    let queued_before = writer.queued();
    while writer.queued() == queued_before {
        tokio::task::yield_now().await;
    }
    caller.abort();
    assert!(
        caller
            .await
            .expect_err("the caller went away")
            .is_cancelled()
    );

    release.send(()).expect("the holding write waits");
    holder
        .await
        .expect("the holder ran")
        .expect("the holding write");
    // Writes run in order: once a later write is answered, the update has committed and its
    // partner has been forgotten.
    writer
        .write(|_conn| crate::writer::boxed(async { Ok(()) }))
        .await
        .expect("a later write");

    assert_eq!(
        partners.get_partner(stored.id()).await.expect("read"),
        Some(renamed(&stored, "After"))
    );
    store.close().await;
}
