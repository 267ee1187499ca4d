//! [`Writer`]: the one task every write of the store goes through, committing the writes that
//! wait together (group commit).
//!
//! SQLite admits one writer at a time, and every commit must reach the disk before its caller
//! hears of it: one commit per request caps the service at the disk's sync rate, whatever the
//! concurrency. The writer instead takes every write that is waiting (up to [`MAX_BATCH`]),
//! runs them in one `BEGIN IMMEDIATE` transaction, each inside a savepoint of its own, commits
//! once, and hands the answers to [`WalSync`], which answers each caller once the WAL holding
//! the commit is synced. One sync carries the whole batch, and the writer runs the next batch
//! during it (`wal_sync.rs`).
//!
//! - A write that fails (a duplicate name, a missing partner, a stale lease) is rolled back to
//!   its savepoint: the others of the batch are unaffected, and nothing of it is half-written.
//! - No caller is answered before the commit that holds its write is on disk; when the commit
//!   (or its sync) fails, every write of the batch fails.
//! - Writes run in the order they were submitted, so a read-modify-write (a PATCH) sees every
//!   write submitted before it, committed or in the same batch: concurrent updates of one
//!   partner serialise instead of racing.
//! - The writer does not checkpoint the WAL inside a commit (`wal_autocheckpoint=0`); the
//!   checkpointer does, off the request path (`checkpointer.rs`). Only when the WAL has grown
//!   past its bound does the checkpointer ask the writer for a checkpoint between two batches
//!   ([`Writer::checkpoint`]), for the frames its own could not reach.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow};
use cmp_application::StoreError;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Connection, Execute, QueryBuilder, SqliteConnection};

use crate::checkpointer::{self, Checkpointed, Mode};
use crate::statements::Statements;
use crate::wal_sync::WalSync;
use tokio::sync::{mpsc, oneshot};

/// Most writes one transaction carries. Bounds how long one commit holds the write lock and how
/// long the last write of a batch waits behind the others.
pub(crate) const MAX_BATCH: usize = 256;

/// Writes waiting for the writer before submitters wait for room.
const QUEUE_CAPACITY: usize = 4096;

/// A future borrowing the writer's connection.
pub(crate) type WriteFuture<'c, T> =
    Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// What a submitted write becomes in the writer: run it, then learn whether its batch committed.
trait Job: Send {
    /// Who opens and closes the write's savepoint.
    fn savepoint(&self) -> Savepoint;

    /// Runs the write on `conn`; answers how it went (when it failed, its savepoint is rolled
    /// back) and how to answer its caller once the batch's fate is known. A one-trip write
    /// ([`Savepoint::InTheQuery`]) sends the writer's `waiting` commands at the head of its
    /// query, and when `last` (it ends the batch) also the batch's `COMMIT` at its end; any
    /// other is given no commands and commits nothing.
    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
        waiting: String,
        last: bool,
    ) -> Pin<Box<dyn Future<Output = (Ran, Answer)> + Send + 'c>>;

    /// Answers the caller that the write could not run at all.
    fn refuse(self: Box<Self>, reason: Arc<anyhow::Error>);
}

/// Answers a caller once its batch committed and is on disk (`Ok`) or failed (`Err`).
pub(crate) type Answer = Box<dyn FnOnce(Result<(), Arc<anyhow::Error>>) + Send>;

/// How a write went in the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// It failed; its savepoint is open, to be rolled back to.
    Failed,
    /// It succeeded; the batch goes on.
    Succeeded,
    /// It succeeded and its query committed the batch (a one-trip write that ended it).
    Committed,
}

/// Who opens and closes a write's savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Savepoint {
    /// The writer, around a write of any number of trips.
    ByWriter,
    /// The write's one query ([`OneTrip`]), which begins with `SAVEPOINT write` and ends with
    /// `RELEASE write`; when a statement of it fails, the savepoint is left open for the writer
    /// to roll back to.
    InTheQuery,
}

/// The statements of a write sent in one trip, inside a savepoint the query opens and releases
/// itself: [`Writer::write_one_trip`]. Made by [`OneTrip::new`]; the write pushes its statements
/// onto [`statements`](Self::statements).
pub(crate) struct OneTrip(Statements);

impl OneTrip {
    /// No statements yet (only the savepoint's opening).
    pub(crate) fn new() -> Self {
        Self(QueryBuilder::new("SAVEPOINT write; "))
    }

    /// Where the write pushes its statements, each ended with `"; "` (`statements.rs`).
    pub(crate) fn statements(&mut self) -> &mut Statements {
        &mut self.0
    }
}

/// A future borrowing the writer's connection that makes the caller's error out of the error of
/// a one-trip write's statement.
pub(crate) type RefusalFuture<'c> = Pin<Box<dyn Future<Output = StoreError> + Send + 'c>>;

/// How to answer a write's caller, once its batch's fate is known, given the write's own result.
fn answer_with<T: Send + 'static>(
    result: Result<T, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
    settled: Option<Settled>,
) -> Answer {
    Box::new(move |batch| {
        if let Some(settled) = settled {
            settled();
        }
        let answer = match batch {
            Ok(()) => result,
            // The write itself failed: its own error stands, whatever the batch did.
            Err(_) if result.is_err() => result,
            Err(reason) => Err(StoreError::Unexpected(anyhow!(
                "the transaction holding this write was not committed or not made durable: {reason:#}"
            ))),
        };
        // The caller may have gone away; its write stands or falls with the batch.
        let _ = reply.send(answer);
    })
}

/// A one-trip write and the channel its caller waits on.
struct SubmittedOneTrip<T, Then, Refused> {
    write: OneTrip,
    then: Then,
    refused: Refused,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, Then, Refused> Job for SubmittedOneTrip<T, Then, Refused>
where
    T: Send + 'static,
    Then: for<'c> FnOnce(&'c mut SqliteConnection, Vec<SqliteRow>) -> WriteFuture<'c, T>
        + Send
        + 'static,
    Refused:
        for<'c> FnOnce(&'c mut SqliteConnection, sqlx::Error) -> RefusalFuture<'c> + Send + 'static,
{
    fn savepoint(&self) -> Savepoint {
        Savepoint::InTheQuery
    }

    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
        waiting: String,
        last: bool,
    ) -> Pin<Box<dyn Future<Output = (Ran, Answer)> + Send + 'c>> {
        let SubmittedOneTrip {
            write: OneTrip(mut statements),
            then,
            refused,
            reply,
        } = *self;
        Box::pin(async move {
            statements.push("RELEASE write; ");
            if last {
                statements.push("COMMIT");
            }
            let arguments = match statements.build().take_arguments() {
                Ok(arguments) => arguments.unwrap_or_default(),
                Err(error) => {
                    // Nothing of the write was sent. Send the waiting commands and open the
                    // savepoint all the same, so that the writer's rollback finds it.
                    let error = match sqlx::query(AssertSqlSafe(waiting + "SAVEPOINT write"))
                        .execute(&mut *conn)
                        .await
                    {
                        Ok(_) => anyhow!("encoding the values of a write failed: {error}"),
                        Err(sent) => anyhow::Error::new(sent)
                            .context("sending the writer's commands before a write"),
                    };
                    let error = StoreError::Unexpected(error);
                    return (Ran::Failed, answer_with(Err(error), reply, None));
                }
            };
            // The writer's waiting commands go first, in the same trip. They bind no values, so
            // the write's values still bind to its own statements, in order.
            let mut sql = waiting;
            sql.push_str(statements.sql().as_str());
            // The writer runs the query itself, so a write of this kind fails only by one of its
            // statements failing, with its savepoint open (or, when one of the writer's waiting
            // commands or the `COMMIT` failed, with the savepoint or the transaction gone, which
            // the writer then finds out).
            match sqlx::query_with(AssertSqlSafe(sql), arguments)
                .fetch_all(&mut *conn)
                .await
            {
                // The savepoint is released (and with `last`, the batch committed): whatever
                // `then` answers, there is nothing to roll back (it refuses only writes whose
                // statements changed nothing).
                Ok(rows) => {
                    let result = then(conn, rows).await;
                    let ran = if last { Ran::Committed } else { Ran::Succeeded };
                    (ran, answer_with(result, reply, None))
                }
                Err(error) => {
                    let error = refused(conn, error).await;
                    (Ran::Failed, answer_with(Err(error), reply, None))
                }
            }
        })
    }

    fn refuse(self: Box<Self>, reason: Arc<anyhow::Error>) {
        let _ = self.reply.send(Err(StoreError::Unexpected(anyhow!(
            "the write could not run: {reason:#}"
        ))));
    }
}

/// A write and the channel its caller waits on.
struct Submitted<T, F> {
    write: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
    /// Run in the writer task once the write's fate is known, before its caller is answered.
    settled: Option<Settled>,
}

/// What [`Writer::write_then`] runs once a write has committed or failed.
type Settled = Box<dyn FnOnce() + Send>;

impl<T, F> Job for Submitted<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
{
    fn savepoint(&self) -> Savepoint {
        Savepoint::ByWriter
    }

    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
        waiting: String,
        _last: bool,
    ) -> Pin<Box<dyn Future<Output = (Ran, Answer)> + Send + 'c>> {
        debug_assert!(waiting.is_empty(), "the writer sends its commands first");
        let Submitted {
            write,
            reply,
            settled,
        } = *self;
        Box::pin(async move {
            let result = write(conn).await;
            let ran = if result.is_ok() {
                Ran::Succeeded
            } else {
                Ran::Failed
            };
            (ran, answer_with(result, reply, settled))
        })
    }

    fn refuse(self: Box<Self>, reason: Arc<anyhow::Error>) {
        if let Some(settled) = self.settled {
            settled();
        }
        let _ = self.reply.send(Err(StoreError::Unexpected(anyhow!(
            "the write could not run: {reason:#}"
        ))));
    }
}

/// What the writer task is asked to do.
enum Command {
    /// Run a write in the next batch.
    Write(Box<dyn Job>),
    /// Run a passive checkpoint on the writer's connection after the writes already queued,
    /// before any other: [`Writer::checkpoint`].
    Checkpoint(oneshot::Sender<anyhow::Result<Checkpointed>>),
    /// Finish the writes already queued, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// The handle to the writer task. Cheap to clone; every clone submits to the same task.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    commands: mpsc::Sender<Command>,
    /// Commits so far, for the checkpointer to tell a busy store from an idle one.
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer task on `conn`, which must be the store's only writing connection and
    /// commit with `synchronous=NORMAL`: `durable` syncs the WAL after each commit and answers
    /// its callers.
    pub(crate) fn start(conn: SqliteConnection, durable: WalSync) -> Self {
        let (commands, queue) = mpsc::channel(QUEUE_CAPACITY);
        let commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(conn, durable, queue, commits.clone()));
        Self { commands, commits }
    }

    /// Runs `write` in the writer's next transaction, inside a savepoint of its own, and answers
    /// once that transaction is committed (or has failed).
    ///
    /// # Errors
    /// The write's own error (its savepoint rolled back, the rest of the batch unaffected);
    /// [`StoreError::Unexpected`] when the batch's transaction could not be committed, or the
    /// writer is closed.
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        self.submit(write, None).await
    }

    /// Like [`write`](Self::write), and runs `settled` once the write's transaction has
    /// committed and is on disk, or has failed (or the write was refused), before its caller is
    /// answered. It runs even when the caller has gone away meanwhile, as long as the write was
    /// submitted.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub(crate) async fn write_then<T, F>(
        &self,
        write: F,
        settled: impl FnOnce() + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        self.submit(write, Some(Box::new(settled))).await
    }

    /// Runs `write`'s statements in the writer's next transaction, in one trip to the
    /// connection's thread, inside a savepoint the query opens and releases itself, and answers
    /// once that transaction is committed (or has failed).
    /// - When every statement ran, `then` makes the answer out of the rows they returned
    ///   (`RETURNING`); it may read on the connection (after the batch's `COMMIT` when the
    ///   write ended the batch, so it must not write). It may refuse only a write whose
    ///   statements changed nothing, since the savepoint is already released: a write whose
    ///   statements must all apply or none guards each with the same condition.
    /// - When one of the statements fails, `refused` makes the caller's error out of it (it may
    ///   read on the connection, inside the write's savepoint), and the writer then rolls the
    ///   write back.
    ///
    /// A write of several independent statements costs one trip this way instead of three (the
    /// savepoint's opening, the write, its release): `docs/benchmarks.md`, "Round trips per
    /// create".
    ///
    /// # Errors
    /// `then`'s or `refused`'s error; [`StoreError::Unexpected`] when the batch's transaction
    /// could not be committed, or the writer is closed.
    pub(crate) async fn write_one_trip<T, Then, Refused>(
        &self,
        write: OneTrip,
        then: Then,
        refused: Refused,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Then: for<'c> FnOnce(&'c mut SqliteConnection, Vec<SqliteRow>) -> WriteFuture<'c, T>
            + Send
            + 'static,
        Refused: for<'c> FnOnce(&'c mut SqliteConnection, sqlx::Error) -> RefusalFuture<'c>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Write(Box::new(SubmittedOneTrip {
                write,
                then,
                refused,
                reply,
            })))
            .await
            .map_err(|_| StoreError::Unexpected(anyhow!("the store's writer is closed")))?;
        answer
            .await
            .map_err(|_| StoreError::Unexpected(anyhow!("the store's writer stopped")))?
    }

    async fn submit<T, F>(&self, write: F, settled: Option<Settled>) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Write(Box::new(Submitted {
                write,
                reply,
                settled,
            })))
            .await
            .map_err(|_| StoreError::Unexpected(anyhow!("the store's writer is closed")))?;
        answer
            .await
            .map_err(|_| StoreError::Unexpected(anyhow!("the store's writer stopped")))?
    }

    /// Writes waiting in the writer's queue, for tests that line writes up behind a held one.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        QUEUE_CAPACITY - self.commands.capacity()
    }

    /// Copies the whole WAL into the database file: a passive checkpoint run by the writer
    /// between two batches, after the writes already queued.
    ///
    /// Under a steady stream of writes a checkpoint on another connection never catches up: new
    /// frames are appended while it copies, and SQLite starts the WAL over from its beginning
    /// only once every frame is copied. Here nothing is appended meanwhile, so it copies every
    /// frame that no reader still needs, and the writer's next transaction starts the WAL over.
    /// Writes wait for it, so the checkpointer runs its own passive checkpoint first and leaves
    /// only the rest to this one (`checkpointer.rs`).
    ///
    /// # Errors
    /// When the checkpoint fails or the writer is closed.
    pub(crate) async fn checkpoint(&self) -> anyhow::Result<Checkpointed> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Checkpoint(reply))
            .await
            .map_err(|_| anyhow!("the store's writer is closed"))?;
        answer
            .await
            .map_err(|_| anyhow!("the store's writer stopped"))?
    }

    /// How many transactions the writer has committed.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Lets the writer finish what is queued, then closes its connection (which checkpoints
    /// the WAL into the database file). Writes submitted afterwards fail.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

/// The writer task: batches, savepoints, one commit per batch.
async fn run(
    mut conn: SqliteConnection,
    durable: WalSync,
    mut queue: mpsc::Receiver<Command>,
    commits: Arc<AtomicU64>,
) {
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = queue.recv().await else {
            break;
        };
        let mut batch = Vec::new();
        // A checkpoint ends the batch: it runs after the writes queued before it.
        let mut checkpoint = None;
        match first {
            Command::Write(job) => batch.push(job),
            Command::Checkpoint(reply) => checkpoint = Some(reply),
            Command::Close(done) => closing = Some(done),
        }
        while closing.is_none() && checkpoint.is_none() && batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(Command::Write(job)) => batch.push(job),
                Ok(Command::Checkpoint(reply)) => checkpoint = Some(reply),
                Ok(Command::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            match run_batch(&mut conn, batch).await {
                Ok(answers) => {
                    commits.fetch_add(1, Ordering::Relaxed);
                    durable.answer_when_durable(answers);
                }
                Err(error) => {
                    tracing::error!(error.message = %error, error.cause_chain = ?error, "a write transaction failed; its writes were answered with the error");
                }
            }
        }
        if let Some(reply) = checkpoint {
            let _ = reply.send(checkpointer::checkpoint(&mut conn, Mode::Passive).await);
        }
    }
    // Refuse what arrived after the close, then close the connection.
    queue.close();
    while let Ok(command) = queue.try_recv() {
        match command {
            Command::Write(job) => job.refuse(Arc::new(anyhow!("the store is closing"))),
            Command::Checkpoint(reply) => {
                let _ = reply.send(Err(anyhow!("the store is closing")));
            }
            Command::Close(done) => {
                let _ = done.send(());
            }
        }
    }
    // Every committed batch is answered before the close is.
    let syncing = durable.finish();
    if tokio::task::spawn_blocking(move || syncing.join())
        .await
        .map_or(true, |joined| joined.is_err())
    {
        tracing::error!(
            "the WAL sync thread did not finish cleanly (it panicked, or the runtime is shutting down); some committed writes may not have been answered"
        );
    }
    if let Err(error) = conn.close().await {
        tracing::warn!(error.message = %error, "closing the SQLite writer connection failed");
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Runs `batch` in one transaction, each write in a savepoint, and commits; returns the answers
/// to its callers, to be given once the commit is on disk ([`WalSync`]). When the batch cannot
/// commit, answers every caller with the failure itself.
///
/// Every command is a trip to the connection's own thread and back (sqlx runs each SQLite
/// connection on a thread of its own), and on this serial path the trips, not SQLite, are most
/// of what a write costs. So the writer's own commands wait and travel with the next thing it
/// sends: at the head of the next one-trip write's query ([`OneTrip`]), or with the next
/// savepoint's opening.
/// - `BEGIN IMMEDIATE` opens the batch;
/// - a write of several trips gets `SAVEPOINT write` before it and `RELEASE write` after;
/// - a one-trip write opens and releases its savepoint in its own query, so a run of them
///   costs one trip each and nothing between;
/// - after a write that failed, `ROLLBACK TO write; RELEASE write` undoes it;
/// - `COMMIT` ends the batch: at the end of the last write's query when that write is a
///   one-trip one and succeeds (a batch of one create is then one trip), else alone.
///
/// When the failure was one that made SQLite roll the whole transaction back (a full disk, an
/// I/O error), the savepoint is gone, the rollback to it fails, and the batch fails as a whole.
async fn run_batch(
    conn: &mut SqliteConnection,
    batch: Vec<Box<dyn Job>>,
) -> anyhow::Result<Vec<Answer>> {
    // The writer's commands not sent yet; the few combinations are prepared once and kept.
    let mut waiting = String::from("BEGIN IMMEDIATE; ");
    // Whether the writer's own savepoint is open (after a several-trip write that succeeded).
    let mut open = false;
    let mut answers = Vec::with_capacity(batch.len());
    let count = batch.len();
    let mut jobs = batch.into_iter().enumerate();
    let mut broken = None;
    let mut committed = false;
    for (index, job) in jobs.by_ref() {
        let savepoint = job.savepoint();
        if open {
            waiting.push_str("RELEASE write; ");
            open = false;
        }
        // A one-trip write takes the waiting commands along in its own query; any other
        // write gets them, with its savepoint's opening, in a trip of their own first.
        if savepoint == Savepoint::ByWriter {
            waiting.push_str("SAVEPOINT write; ");
            let sent = sqlx::query(AssertSqlSafe(std::mem::take(&mut waiting)))
                .execute(&mut *conn)
                .await;
            if let Err(error) = sent {
                let error = anyhow::Error::new(error)
                    .context("beginning the write transaction or a write's savepoint");
                // This write never ran: refuse it with the rest.
                job.refuse(Arc::new(anyhow!("{error:#}")));
                broken = Some(error);
                break;
            }
        }
        let last = index + 1 == count;
        let (ran, answer) = job.run(conn, std::mem::take(&mut waiting), last).await;
        answers.push(answer);
        match ran {
            Ran::Succeeded => open = savepoint == Savepoint::ByWriter,
            Ran::Committed => committed = true,
            // A failed write leaves nothing behind; the others of the batch stand.
            Ran::Failed => waiting.push_str("ROLLBACK TO write; RELEASE write; "),
        }
    }
    let outcome = match broken {
        None if committed => Ok(()),
        // `COMMIT` also releases a savepoint still open.
        None => {
            waiting.push_str("COMMIT");
            sqlx::query(AssertSqlSafe(waiting))
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .context("committing a write transaction")
        }
        Some(error) => Err(error),
    };
    let reason = match outcome {
        Ok(()) => return Ok(answers),
        Err(error) => {
            // Leave no transaction open behind a failed batch; SQLite may have ended it already.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Arc::new(error)
        }
    };
    for answer in answers {
        answer(Err(reason.clone()));
    }
    for (_, job) in jobs {
        job.refuse(reason.clone());
    }
    Err(anyhow!("{reason:#}"))
}

/// Turns a write's body into the boxed future [`Writer::write`] takes.
pub(crate) fn boxed<'c, T>(
    future: impl Future<Output = Result<T, StoreError>> + Send + 'c,
) -> WriteFuture<'c, T> {
    Box::pin(future)
}

#[cfg(test)]
mod tests;
