//! Tests of the writer's group commit on a real SQLite file: batches, savepoints, commit
//! failures and closing. A write that holds the writer (waiting on a channel the test controls)
//! lets the test queue the next writes first, so that they form one batch; nothing sleeps.

use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use tempfile::TempDir;
use tokio::sync::oneshot;

use super::*;
use crate::wal_sync::WalSync;

/// A writer on a fresh file with the tables the tests write: `items` (a key that refuses
/// duplicates), `counter` (one row), and `parent`/`child` (a foreign key). It syncs the WAL as
/// the store's does.
async fn writer() -> (TempDir, Writer, SqliteConnectOptions) {
    writer_syncing(WalSync::start).await
}

/// As [`writer`], with the WAL sync thread `sync` makes out of the WAL's path.
async fn writer_syncing(
    sync: impl FnOnce(std::path::PathBuf) -> std::io::Result<WalSync>,
) -> (TempDir, Writer, SqliteConnectOptions) {
    let dir = TempDir::new().expect("temp dir");
    let options = SqliteConnectOptions::from_str("sqlite://")
        .expect("options")
        .filename(dir.path().join("writer.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true);
    let mut conn = options
        .clone()
        .synchronous(SqliteSynchronous::Normal)
        .connect()
        .await
        .expect("connect");
    for statement in [
        "CREATE TABLE items (key INTEGER PRIMARY KEY, name TEXT NOT NULL)",
        "CREATE TABLE counter (n INTEGER NOT NULL)",
        "INSERT INTO counter (n) VALUES (0)",
        "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE child (parent INTEGER NOT NULL REFERENCES parent (id))",
    ] {
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .expect("schema");
    }
    let durable = sync(dir.path().join("writer.db-wal")).expect("the WAL sync thread");
    (dir, Writer::start(conn, durable), options)
}

/// Writes that are waiting for the writer.
fn queued(writer: &Writer) -> usize {
    writer.queued()
}

/// Submits a write that holds the writer until `release` fires, and waits until the writer runs
/// it: what is submitted next queues behind it.
async fn hold(writer: &Writer) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (release, released) = oneshot::channel::<()>();
    let (running, started) = oneshot::channel::<()>();
    let held = writer.clone();
    let task = tokio::spawn(async move {
        held.write(move |_conn| {
            boxed(async move {
                let _ = running.send(());
                let _ = released.await;
                Ok(())
            })
        })
        .await
        .expect("the holding write succeeds");
    });
    started.await.expect("the writer runs the holding write");
    (release, task)
}

/// Submits an insert of `key` without waiting for its answer.
fn insert(writer: &Writer, key: i64) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let writer = writer.clone();
    tokio::spawn(async move {
        writer
            .write(move |conn| {
                boxed(async move {
                    sqlx::query("INSERT INTO items (key, name) VALUES (?, 'x')")
                        .bind(key)
                        .execute(conn)
                        .await
                        .map_err(|e| StoreError::Unexpected(e.into()))?;
                    Ok(())
                })
            })
            .await
    })
}

/// Submits a write whose statement passes and whose batch's `COMMIT` then fails: a child row
/// without its parent, its foreign key checked at commit.
fn insert_orphan_child(writer: &Writer) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let writer = writer.clone();
    tokio::spawn(async move {
        writer
            .write(|conn| {
                boxed(async move {
                    sqlx::query("PRAGMA defer_foreign_keys = ON")
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| StoreError::Unexpected(e.into()))?;
                    sqlx::query("INSERT INTO child (parent) VALUES (42)")
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| StoreError::Unexpected(e.into()))?;
                    Ok(())
                })
            })
            .await
    })
}

/// Waits until `count` writes are queued (each submitted write reaches the queue when its task
/// first runs; yielding lets them).
async fn until_queued(writer: &Writer, count: usize) {
    while queued(writer) < count {
        tokio::task::yield_now().await;
    }
}

async fn keys(options: &SqliteConnectOptions) -> Vec<i64> {
    let mut conn = options.connect().await.expect("reader");
    sqlx::query_scalar("SELECT key FROM items ORDER BY key")
        .fetch_all(&mut conn)
        .await
        .expect("keys")
}

#[tokio::test]
async fn the_writes_that_wait_are_committed_together_and_a_failing_one_rolls_back_alone() {
    let (_dir, writer, options) = writer().await;
    let (release, held) = hold(&writer).await;
    let commits_before = writer.commits();

    let first = insert(&writer, 1);
    until_queued(&writer, 1).await;
    let duplicate = insert(&writer, 1);
    until_queued(&writer, 2).await;
    let second = insert(&writer, 2);
    until_queued(&writer, 3).await;
    release.send(()).expect("the holding write waits");

    held.await.expect("held");
    first
        .await
        .expect("task")
        .expect("the first insert commits");
    let refused = duplicate.await.expect("task");
    second
        .await
        .expect("task")
        .expect("the insert after the failure commits");
    assert!(
        matches!(&refused, Err(StoreError::Unexpected(e)) if format!("{e:#}").contains("UNIQUE")),
        "{refused:?}"
    );
    assert_eq!(keys(&options).await, [1, 2], "the duplicate left nothing");
    assert_eq!(
        writer.commits() - commits_before,
        2,
        "one commit for the holding write, one for the three that waited"
    );
}

#[tokio::test]
async fn no_caller_hears_of_a_commit_before_the_wal_is_synced_and_the_writer_commits_on_meanwhile()
{
    // Each sync says it began, then waits for the test to let it finish.
    let (began, mut syncing) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (finish, finishing) = std::sync::mpsc::channel::<()>();
    let (_dir, writer, options) = writer_syncing(move |_wal| {
        WalSync::with(Box::new(move || {
            let _ = began.send(());
            finishing
                .recv()
                .map_err(|_| std::io::Error::other("the test ended"))
        }))
    })
    .await;

    let first = insert(&writer, 1);
    syncing
        .recv()
        .await
        .expect("the first commit is being synced");
    // Committed, so other connections read it; not yet on disk, so nobody was answered.
    assert_eq!(keys(&options).await, [1]);
    assert!(
        !first.is_finished(),
        "answered before its commit was synced"
    );

    let second = insert(&writer, 2);
    while writer.commits() < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        keys(&options).await,
        [1, 2],
        "the writer committed the next batch during the sync"
    );
    assert!(
        !second.is_finished(),
        "answered before its commit was synced"
    );

    finish.send(()).expect("the first sync waits");
    first
        .await
        .expect("task")
        .expect("the first insert is answered");
    syncing.recv().await.expect("the second commit is synced");
    assert!(!second.is_finished(), "answered by the first commit's sync");
    finish.send(()).expect("the second sync waits");
    second
        .await
        .expect("task")
        .expect("the second insert is answered");
}

#[tokio::test]
async fn when_the_wal_cannot_be_synced_that_batch_and_every_later_write_is_answered_as_failed() {
    // The first sync fails; a later one would report success.
    let mut syncs = 0;
    let (_dir, writer, _options) = writer_syncing(|_wal| {
        WalSync::with(Box::new(move || {
            syncs += 1;
            if syncs == 1 {
                Err(std::io::Error::other("the disk is gone"))
            } else {
                Ok(())
            }
        }))
    })
    .await;

    let first = insert(&writer, 1).await.expect("task");
    let later = insert(&writer, 2).await.expect("task");

    for (case, answer) in [
        ("the batch whose sync failed", first),
        ("a later write", later),
    ] {
        assert!(
            matches!(&answer, Err(StoreError::Unexpected(e))
                if format!("{e:#}").contains("not made durable") && format!("{e:#}").contains("the disk is gone")),
            "case {case}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn the_store_syncs_the_wal_file_it_writes() {
    let (dir, writer, options) = writer().await;

    insert(&writer, 1)
        .await
        .expect("task")
        .expect("the insert is synced and answered");

    assert!(dir.path().join("writer.db-wal").is_file());
    assert_eq!(keys(&options).await, [1]);
}

#[tokio::test]
async fn when_a_batch_cannot_commit_every_write_of_it_fails_and_none_is_kept() {
    let (_dir, writer, options) = writer().await;
    let (release, held) = hold(&writer).await;

    let before = insert(&writer, 1);
    until_queued(&writer, 1).await;
    let orphan = insert_orphan_child(&writer);
    until_queued(&writer, 2).await;
    let after = insert(&writer, 2);
    until_queued(&writer, 3).await;
    release.send(()).expect("the holding write waits");

    held.await.expect("held");
    for (case, answer) in [
        ("the write before", before.await.expect("task")),
        (
            "the write that broke the commit",
            orphan.await.expect("task"),
        ),
        ("the write after", after.await.expect("task")),
    ] {
        assert!(
            matches!(&answer, Err(StoreError::Unexpected(e)) if format!("{e:#}").contains("not committed")),
            "case {case}: {answer:?}"
        );
    }
    assert_eq!(
        keys(&options).await,
        Vec::<i64>::new(),
        "nothing of the batch is kept"
    );
    insert(&writer, 3)
        .await
        .expect("task")
        .expect("the writer goes on after a failed batch");
    assert_eq!(keys(&options).await, [3]);
}

#[tokio::test]
async fn when_the_commit_at_the_end_of_a_one_trip_write_fails_every_write_of_the_batch_fails() {
    let (_dir, writer, options) = writer().await;
    let (release, held) = hold(&writer).await;

    // The one-trip write after the orphan ends the batch, so the COMMIT that fails travels at
    // the end of its query.
    let orphan = insert_orphan_child(&writer);
    until_queued(&writer, 1).await;
    let last = insert_in_one_trip(&writer, &[1, 2]);
    until_queued(&writer, 2).await;
    release.send(()).expect("the holding write waits");

    held.await.expect("held");
    let orphan = orphan.await.expect("task");
    let last = last.await.expect("task");
    assert!(
        matches!(&orphan, Err(StoreError::Unexpected(e)) if format!("{e:#}").contains("not committed")),
        "the write that broke the commit: {orphan:?}"
    );
    assert!(
        matches!(&last, Err(StoreError::Unexpected(e)) if format!("{e:#}").contains("FOREIGN KEY")),
        "the one-trip write whose query carried the COMMIT: {last:?}"
    );
    assert_eq!(
        keys(&options).await,
        Vec::<i64>::new(),
        "nothing of the batch is kept"
    );
    insert_in_one_trip(&writer, &[3])
        .await
        .expect("task")
        .expect("the writer goes on after a failed batch");
    assert_eq!(keys(&options).await, [3]);
}

#[tokio::test]
async fn the_writers_checkpoint_copies_every_frame_so_that_its_next_writes_start_the_wal_over() {
    let (dir, writer, options) = writer().await;
    let wal = dir.path().join("writer.db-wal");
    let wal_bytes = || std::fs::metadata(&wal).expect("the WAL file").len();
    for key in 1..=20 {
        insert(&writer, key).await.expect("task").expect("insert");
    }
    // The schema and 20 commits.
    let filled = wal_bytes();

    let done = writer.checkpoint().await.expect("checkpoint");
    for key in 21..=40 {
        insert(&writer, key)
            .await
            .expect("task")
            .expect("insert after the checkpoint");
    }

    assert_eq!(
        (done.busy, done.checkpointed),
        (0, done.log),
        "every frame copied: {done:?}"
    );
    assert!(
        wal_bytes() <= filled,
        "the writes after the checkpoint wrote the WAL over from its beginning: {} bytes, {filled} before",
        wal_bytes()
    );
    assert_eq!(keys(&options).await, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn each_write_of_a_batch_sees_the_writes_before_it() {
    let (_dir, writer, options) = writer().await;
    let (release, held) = hold(&writer).await;
    let mut increments = Vec::new();
    for queued_so_far in 1..=3 {
        let submitter = writer.clone();
        increments.push(tokio::spawn(async move {
            submitter
                .write(|conn| {
                    boxed(async move {
                        sqlx::query_scalar::<_, i64>("UPDATE counter SET n = n + 1 RETURNING n")
                            .fetch_one(conn)
                            .await
                            .map_err(|e| StoreError::Unexpected(e.into()))
                    })
                })
                .await
        }));
        until_queued(&writer, queued_so_far).await;
    }
    release.send(()).expect("the holding write waits");

    held.await.expect("held");
    let mut seen = Vec::new();
    for increment in increments {
        seen.push(increment.await.expect("task").expect("increment"));
    }
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 3], "no increment was lost");
    let mut conn = options.connect().await.expect("reader");
    let n: i64 = sqlx::query_scalar("SELECT n FROM counter")
        .fetch_one(&mut conn)
        .await
        .expect("n");
    assert_eq!(n, 3);
}

#[tokio::test]
async fn closing_finishes_the_queued_writes_and_refuses_later_ones() {
    let (_dir, writer, options) = writer().await;
    let (release, held) = hold(&writer).await;
    let queued_write = insert(&writer, 1);
    until_queued(&writer, 1).await;

    let closing = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.close().await })
    };
    until_queued(&writer, 2).await;
    release.send(()).expect("the holding write waits");
    held.await.expect("held");
    closing.await.expect("closed");

    queued_write
        .await
        .expect("task")
        .expect("a write queued before the close commits");
    let late = insert(&writer, 2).await.expect("task");
    assert!(
        matches!(&late, Err(StoreError::Unexpected(e)) if format!("{e:#}").contains("closed")),
        "{late:?}"
    );
    assert_eq!(keys(&options).await, [1]);
}

#[tokio::test]
async fn the_writers_transaction_holds_the_write_lock_from_begin_on() {
    let (_dir, writer, options) = writer().await;
    let (release, held) = hold(&writer).await;
    let mut other = options
        .clone()
        .busy_timeout(std::time::Duration::ZERO)
        .connect()
        .await
        .expect("second connection");

    // The holding write has written nothing yet: under a deferred BEGIN the other connection
    // would get the lock, and the writer's first write would then fail at once.
    let competing = sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await;

    assert!(
        competing.is_err(),
        "the write lock is held from BEGIN on: {competing:?}"
    );
    release.send(()).expect("the holding write waits");
    held.await.expect("held");
}

/// Submits a one-trip write inserting `keys` in order, without waiting for its answer.
fn insert_in_one_trip(
    writer: &Writer,
    keys: &[i64],
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let writer = writer.clone();
    let mut write = OneTrip::new();
    for key in keys {
        write
            .statements()
            .push("INSERT INTO items (key, name) VALUES (")
            .push_bind(*key)
            .push(", 'one trip'); ");
    }
    tokio::spawn(async move {
        writer
            .write_one_trip(
                write,
                |_conn, _rows| boxed(async { Ok(()) }),
                |_conn, error| Box::pin(async move { StoreError::Unexpected(error.into()) }),
            )
            .await
    })
}

#[tokio::test]
async fn one_trip_writes_and_others_share_a_batch_and_a_failing_one_leaves_nothing_of_itself() {
    let (_dir, writer, options) = writer().await;
    let (release, held) = hold(&writer).await;
    let commits_before = writer.commits();

    let first = insert_in_one_trip(&writer, &[1, 2]);
    until_queued(&writer, 1).await;
    // Its first statement goes in, its second breaks the key: both must be undone.
    let failing = insert_in_one_trip(&writer, &[3, 1]);
    until_queued(&writer, 2).await;
    let several_trips = insert(&writer, 4);
    until_queued(&writer, 3).await;
    let after = insert_in_one_trip(&writer, &[5]);
    until_queued(&writer, 4).await;
    let last = insert(&writer, 6);
    until_queued(&writer, 5).await;
    release.send(()).expect("the holding write waits");

    held.await.expect("held");
    first
        .await
        .expect("task")
        .expect("the first one-trip write");
    let refused = failing.await.expect("task");
    assert!(
        matches!(&refused, Err(StoreError::Unexpected(e)) if format!("{e:#}").contains("UNIQUE")),
        "{refused:?}"
    );
    several_trips
        .await
        .expect("task")
        .expect("the write after the failure");
    after
        .await
        .expect("task")
        .expect("the one-trip write after it");
    last.await.expect("task").expect("the last write");
    assert_eq!(
        keys(&options).await,
        [1, 2, 4, 5, 6],
        "nothing of the failed write"
    );
    assert_eq!(
        writer.commits() - commits_before,
        2,
        "one commit for the holding write, one for the five that waited"
    );
}

/// Submits a one-trip write inserting `key` and returning it, without waiting for its answer.
/// Every such write has the same text, so the writer sends them in runs.
fn insert_returning(
    writer: &Writer,
    key: i64,
) -> tokio::task::JoinHandle<Result<Vec<i64>, StoreError>> {
    let writer = writer.clone();
    let mut write = OneTrip::new();
    write
        .statements()
        .push("INSERT INTO items (key, name) VALUES (")
        .push_bind(key)
        .push(", 'run') RETURNING key; ");
    tokio::spawn(async move {
        writer
            .write_one_trip(
                write,
                |_conn, rows| {
                    boxed(async move {
                        Ok(rows
                            .iter()
                            .map(|row| sqlx::Row::get::<i64, _>(row, 0))
                            .collect())
                    })
                },
                |_conn, error| Box::pin(async move { StoreError::Unexpected(error.into()) }),
            )
            .await
    })
}

#[tokio::test]
async fn writes_sent_in_runs_each_get_their_own_rows_and_a_failing_one_fails_alone() {
    let (_dir, writer, options) = writer().await;
    let (release, held) = hold(&writer).await;
    let commits_before = writer.commits();
    // Eleven writes of one text: runs of 4 and 4, then three of one. The sixth breaks the key
    // of the second, in the middle of a run: it fails alone, and the two after it in its run,
    // which never ran, are sent again.
    let wanted = [1, 2, 3, 4, 5, 2, 7, 8, 9, 10, 11];
    let mut submitted = Vec::new();
    for (index, key) in wanted.iter().enumerate() {
        submitted.push(insert_returning(&writer, *key));
        until_queued(&writer, index + 1).await;
    }
    release.send(()).expect("the holding write waits");
    held.await.expect("held");

    for (index, (key, write)) in wanted.iter().zip(submitted).enumerate() {
        let answer = write.await.expect("task");
        if index == 5 {
            assert!(
                matches!(&answer, Err(StoreError::Unexpected(e)) if format!("{e:#}").contains("UNIQUE")),
                "{answer:?}"
            );
        } else {
            assert_eq!(answer.expect("the write commits"), [*key], "write {index}");
        }
    }
    assert_eq!(keys(&options).await, [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]);
    assert_eq!(
        writer.commits() - commits_before,
        2,
        "one commit for the holding write, one for the eleven that waited"
    );
}

fn no_answer(_conn: &mut SqliteConnection, _rows: Vec<SqliteRow>) -> WriteFuture<'_, ()> {
    boxed(async { Ok(()) })
}

fn refused_as_unexpected(_conn: &mut SqliteConnection, error: sqlx::Error) -> RefusalFuture<'_> {
    Box::pin(async move { StoreError::Unexpected(error.into()) })
}

fn nothing(_conn: &mut SqliteConnection) -> WriteFuture<'_, ()> {
    boxed(async { Ok(()) })
}

/// A one-trip write of `text` for [`plan`]; it is never run.
fn planned(text: &str) -> Write {
    let mut write = OneTrip::new();
    write.statements().push(text);
    let (reply, _) = oneshot::channel::<Result<(), StoreError>>();
    Write::OneTrip(Box::new(SubmittedOneTrip {
        statement_count: write.0.count(),
        write,
        then: no_answer,
        refused: refused_as_unexpected,
        reply,
    }))
}

/// A write of several trips for [`plan`]; it is never run.
fn planned_trips() -> Write {
    let (reply, _) = oneshot::channel::<Result<(), StoreError>>();
    Write::Trips(Box::new(Submitted {
        write: nothing,
        reply,
        settled: None,
    }))
}

/// The steps of [`plan`]'s answer, as each run's text and size.
fn plan_of(batch: Vec<Write>) -> Vec<String> {
    plan(batch)
        .iter()
        .map(|step| match step {
            Step::Trips(_) => "trips".to_owned(),
            Step::Run(run) => {
                let text = run[0].statements().sql();
                format!("{} x{}", text.trim_end_matches("; "), run.len())
            }
        })
        .collect()
}

#[test]
fn a_batch_runs_its_one_trip_writes_by_text_in_runs_around_the_writes_of_several_trips() {
    let a = || planned("A; ");
    let b = || planned("B; ");
    assert_eq!(
        plan_of(vec![
            a(),
            b(),
            a(),
            a(),
            a(),
            a(),
            planned_trips(),
            b(),
            b(),
            a()
        ]),
        ["A x4", "A x1", "B x1", "trips", "B x1", "B x1", "A x1"],
        "gathered by text up to the write of several trips"
    );
    assert_eq!(
        plan_of((0..9).map(|_| a()).collect()),
        ["A x4", "A x4", "A x1"]
    );
    assert_eq!(
        plan_of(vec![planned_trips(), a(), a(), b(), a(), a(), a()]),
        ["trips", "A x4", "A x1", "B x1"]
    );
    assert_eq!(plan_of(vec![a()]), ["A x1"]);
}
