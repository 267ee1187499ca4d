//! The SQLite pacer: the port's contract, and a pause that outlives the process that met it.

use std::time::Duration;

use cmp_application::ports::pacer::contract;
use uuid::Uuid;

use super::*;
use crate::SqliteStore;
use crate::test_support::{open_sqlite_store, settings};

fn t0() -> Timestamp {
    Timestamp::from_unix_seconds(1_767_225_600, 0).expect("in range")
}

fn tenant() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x7e57))
}

#[tokio::test]
async fn the_sqlite_pacer_keeps_the_contract() {
    let (_dir, store) = open_sqlite_store().await;
    // One tenant per check, each starting fresh.
    contract::all(|rates| {
        SqlitePacer::starting_from(
            store.connections.clone(),
            Uuid::new_v4().to_string(),
            rates,
            PacerState::fresh(),
        )
    })
    .await;
    store.close().await;
}

/// A pause recorded by one process is in force for the next one, which starts on the same
/// file: no slot, not even a read, before it ends, and the epoch goes on from where it was.
#[tokio::test]
async fn a_process_started_after_a_pause_starts_inside_it() {
    let (dir, store) = open_sqlite_store().await;
    let rates = contract::RATES;
    let pacer = store
        .pacer(tenant(), rates, t0())
        .await
        .expect("the pacer opens");
    let until = t0().saturating_add(Duration::from_secs(3));
    pacer
        .pause_at(t0(), until)
        .await
        .expect("the pause is kept");
    let epoch = pacer.state().await.expect("in memory").epoch;
    // No clean shutdown of the pacer: what it kept was committed before the pause answered.
    drop(pacer);
    store.close().await;

    let reopened = SqliteStore::open(&settings(&dir))
        .await
        .expect("the store reopens");
    let restarted_at = t0().saturating_add(Duration::from_millis(500));
    let successor = reopened
        .pacer(tenant(), rates, restarted_at)
        .await
        .expect("the pacer opens");
    let state = successor.state().await.expect("in memory");
    assert_eq!(state.paused_until, Some(until), "the pause was kept");
    assert_eq!(state.epoch, epoch, "the epoch goes on");
    for budget in [Budget::Write, Budget::Read] {
        assert_eq!(
            successor
                .book(
                    budget,
                    restarted_at,
                    until.saturating_sub(Duration::from_millis(1))
                )
                .await
                .expect("in memory"),
            Booking::NoneBefore { next_free: until },
            "{budget:?}: nothing before the pause ends"
        );
    }

    let other = reopened
        .pacer(
            TenantId::from_uuid(Uuid::from_u128(0x07e4)),
            rates,
            restarted_at,
        )
        .await
        .expect("the pacer opens");
    assert!(
        !other
            .state()
            .await
            .expect("in memory")
            .paused_at(restarted_at),
        "another tenant's pause is its own"
    );
    reopened.close().await;
}

/// Of two pauses written at once, the file keeps the later epoch, whichever write lands last;
/// recording a pause that changes nothing writes nothing.
#[tokio::test]
async fn the_file_keeps_the_latest_pause() {
    let (dir, store) = open_sqlite_store().await;
    let rates = contract::RATES;
    let first = store
        .pacer(tenant(), rates, t0())
        .await
        .expect("the pacer opens");
    let long = t0().saturating_add(Duration::from_secs(10));
    first.pause(long).await.expect("kept");
    // A second pacer of the same file whose in-memory state knows an older epoch: its write
    // must not undo the first one's.
    let stale = SqlitePacer::starting_from(
        store.connections.clone(),
        tenant().to_string(),
        rates,
        PacerState::fresh(),
    );
    // A second, later pause takes the file to epoch 2; then the stale pacer writes epoch 1,
    // last.
    first
        .pause(t0().saturating_add(Duration::from_secs(20)))
        .await
        .expect("kept");
    stale
        .pause(t0().saturating_add(Duration::from_secs(1)))
        .await
        .expect("written, or kept out");
    first
        .pause(t0().saturating_add(Duration::from_secs(5)))
        .await
        .expect("a shorter pause changes nothing");
    store.close().await;

    let reopened = SqliteStore::open(&settings(&dir))
        .await
        .expect("the store reopens");
    let kept = reopened
        .pacer(tenant(), rates, t0())
        .await
        .expect("the pacer opens")
        .state()
        .await
        .expect("in memory");
    assert_eq!(
        (kept.paused_until, kept.epoch),
        (Some(t0().saturating_add(Duration::from_secs(20))), 2),
        "the later epoch's pause stands"
    );
    reopened.close().await;
}
