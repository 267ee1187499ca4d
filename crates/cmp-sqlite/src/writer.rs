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
//! - A read-modify-write (a PATCH) runs after every write submitted before it, committed or in
//!   the same batch, and sees it: concurrent updates of one partner serialise instead of racing.
//!   One-trip writes of a batch may run in another order than they came, several in one query
//!   (see "Runs" on [`run_batch`]); they are concurrent, so any order of them is one their
//!   callers could have seen.
//! - The writer does not checkpoint the WAL inside a commit (`wal_autocheckpoint=0`); the
//!   checkpointer does, off the request path (`checkpointer.rs`). Only when the WAL has grown
//!   past its bound does the checkpointer ask the writer for a checkpoint between two batches
//!   ([`Writer::checkpoint`]), for the frames its own could not reach.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow};
use cmp_application::StoreError;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Connection, Either, Executor, SqliteConnection};

use crate::checkpointer::{self, Checkpointed, Mode};
use crate::statements::{Statements, count_statements};
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

/// A write of several trips, as the writer runs it: inside a savepoint the writer opens before
/// it and closes after it ([`Writer::write`]).
trait Job: Send {
    /// Runs the write on `conn`; answers whether it succeeded (when it failed, its savepoint is
    /// rolled back) and how to answer its caller once the batch's fate is known.
    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> Pin<Box<dyn Future<Output = (bool, Answer)> + Send + 'c>>;

    /// Answers the caller that the write could not run at all.
    fn refuse(self: Box<Self>, reason: Arc<anyhow::Error>);
}

/// A write whose statements travel in one query, as the writer runs it
/// ([`Writer::write_one_trip`]): the writer wraps them in a savepoint of their own and may send
/// them together with other such writes (see "Runs" on [`run_batch`]).
trait OneTripJob: Send {
    /// The write's statements, without its savepoint.
    fn statements(&self) -> &Statements;

    /// How many statements [`statements`](Self::statements) holds, counted by the caller's task
    /// rather than on the writer's path.
    fn statement_count(&self) -> usize;

    /// Every statement ran and the savepoint is released: how to answer the caller, made out
    /// of the rows the statements returned.
    fn succeeded<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
        rows: Vec<SqliteRow>,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send + 'c>>;

    /// A statement failed with `error`, the savepoint still open (the writer rolls back to it
    /// next): how to answer the caller.
    fn failed<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
        error: sqlx::Error,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send + 'c>>;

    /// Answers the caller that the write could not run at all.
    fn refuse(self: Box<Self>, reason: Arc<anyhow::Error>);
}

/// Answers a caller once its batch committed and is on disk (`Ok`) or failed (`Err`).
pub(crate) type Answer = Box<dyn FnOnce(Result<(), Arc<anyhow::Error>>) + Send>;

/// The statements of a write sent in one trip, inside a savepoint the writer opens and releases
/// in the same query: [`Writer::write_one_trip`]. The write pushes its statements onto
/// [`statements`](Self::statements).
pub(crate) struct OneTrip(Statements);

impl OneTrip {
    /// No statements yet.
    pub(crate) fn new() -> Self {
        Self(Statements::default())
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
    statement_count: usize,
    then: Then,
    refused: Refused,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, Then, Refused> OneTripJob for SubmittedOneTrip<T, Then, Refused>
where
    T: Send + 'static,
    Then: for<'c> FnOnce(&'c mut SqliteConnection, Vec<SqliteRow>) -> WriteFuture<'c, T>
        + Send
        + 'static,
    Refused:
        for<'c> FnOnce(&'c mut SqliteConnection, sqlx::Error) -> RefusalFuture<'c> + Send + 'static,
{
    fn statements(&self) -> &Statements {
        &self.write.0
    }

    fn statement_count(&self) -> usize {
        self.statement_count
    }

    fn succeeded<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
        rows: Vec<SqliteRow>,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send + 'c>> {
        let SubmittedOneTrip { then, reply, .. } = *self;
        Box::pin(async move { answer_with(then(conn, rows).await, reply, None) })
    }

    fn failed<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
        error: sqlx::Error,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send + 'c>> {
        let SubmittedOneTrip { refused, reply, .. } = *self;
        Box::pin(async move { answer_with(Err(refused(conn, error).await), reply, None) })
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
    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> Pin<Box<dyn Future<Output = (bool, Answer)> + Send + 'c>> {
        let Submitted {
            write,
            reply,
            settled,
        } = *self;
        Box::pin(async move {
            let result = write(conn).await;
            (result.is_ok(), answer_with(result, reply, settled))
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

/// A submitted write, of either kind.
enum Write {
    /// Several trips, in a savepoint the writer opens in a trip of its own.
    Trips(Box<dyn Job>),
    /// One trip, in a savepoint opened and released in the same query.
    OneTrip(Box<dyn OneTripJob>),
}

impl Write {
    fn refuse(self, reason: Arc<anyhow::Error>) {
        match self {
            Write::Trips(job) => job.refuse(reason),
            Write::OneTrip(job) => job.refuse(reason),
        }
    }
}

/// What the writer task is asked to do.
enum Command {
    /// Run a write in the next batch.
    Write(Write),
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

    /// Runs `write`'s statements in the writer's next transaction, in one query to the
    /// connection's thread, inside a savepoint opened and released in the same query, and
    /// answers once that transaction is committed (or has failed). The query may carry other
    /// one-trip writes of the same batch (see "Runs" on [`run_batch`]).
    /// - When every statement ran, `then` makes the answer out of the rows they returned
    ///   (`RETURNING`); it may read on the connection, what it reads being its own rows (the
    ///   writes sent with it in the query have run too, and the batch's `COMMIT` when the query
    ///   ended the batch, so it must not write). It may refuse only a write whose statements
    ///   changed nothing, since the savepoint is already released: a write whose statements
    ///   must all apply or none guards each with the same condition.
    /// - When one of the statements fails, `refused` makes the caller's error out of it (it may
    ///   read on the connection, inside the write's savepoint), and the writer then rolls the
    ///   write back.
    ///
    /// A write of several independent statements costs one trip this way instead of three (the
    /// savepoint's opening, the write, its release), and under load a share of one:
    /// `docs/benchmarks.md`, "Round trips per create" and "One query for several writes".
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
            .send(Command::Write(Write::OneTrip(Box::new(SubmittedOneTrip {
                statement_count: write.0.count(),
                write,
                then,
                refused,
                reply,
            }))))
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
            .send(Command::Write(Write::Trips(Box::new(Submitted {
                write,
                reply,
                settled,
            }))))
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
            Command::Write(write) => write.refuse(Arc::new(anyhow!("the store is closing"))),
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
/// of what a write costs. So the writer sends as few as it can:
/// - one-trip writes go in runs ([`plan`]): the statements of [`MAX_RUN`] writes of one text,
///   each wrapped in its own `SAVEPOINT write; … RELEASE write`, in one query
///   ([`run_together`]);
/// - a write of several trips gets `SAVEPOINT write` in a trip of its own before it, and the
///   writer's commands waiting then (`BEGIN IMMEDIATE`, `RELEASE write` after a write of
///   several trips that succeeded, `ROLLBACK TO write; RELEASE write` after a write that
///   failed) travel with it;
/// - before a run, the waiting commands go in a trip of their own, and `COMMIT` ends the batch
///   alone (with whatever waits);
/// - a batch of one one-trip write (a create when the service is not busy) is one trip: the
///   `BEGIN IMMEDIATE`, the write and the `COMMIT`.
///
/// The writer's commands do not travel with runs, because sqlx keeps the prepared statements
/// of every query text it has run, and each text of a write would then be kept in a variant per
/// command that may come before or after it: a write's text is kept in three variants (alone
/// in its batch, a run of one, a run of four).
///
/// # Runs
/// Under load a batch holds tens of writes, most of them creates and the ends of their
/// deliveries, and a trip per write kept the writer's connection thread and the writer task
/// waking each other for every one. One query per run of [`MAX_RUN`] writes cuts that to a
/// fraction of a trip per write (`docs/benchmarks.md`, "One query for several writes"). A
/// write that fails in a run is rolled back alone, as in a trip of its own, and the writes
/// after it in the run are sent again.
///
/// When the failure was one that made SQLite roll the whole transaction back (a full disk, an
/// I/O error), the savepoint is gone, the rollback to it fails, and the batch fails as a whole.
async fn run_batch(conn: &mut SqliteConnection, batch: Vec<Write>) -> anyhow::Result<Vec<Answer>> {
    // The writer's commands not sent yet; the few combinations are prepared once and kept.
    let mut waiting = String::from("BEGIN IMMEDIATE; ");
    // Whether the writer's own savepoint is open (after a several-trip write that succeeded).
    let mut open = false;
    let mut answers = Vec::with_capacity(batch.len());
    let mut steps = plan(batch);
    let mut broken = None;
    let mut committed = false;
    while let Some(step) = steps.pop_front() {
        if open {
            waiting.push_str("RELEASE write; ");
            open = false;
        }
        match step {
            Step::Trips(job) => {
                waiting.push_str("SAVEPOINT write; ");
                let opening = "beginning the write transaction or a write's savepoint";
                if let Err(error) = send_commands(conn, std::mem::take(&mut waiting), opening).await
                {
                    // This write never ran: refuse it with the rest.
                    job.refuse(Arc::new(anyhow!("{error:#}")));
                    broken = Some(error);
                    break;
                }
                let (succeeded, answer) = job.run(conn).await;
                answers.push(answer);
                if succeeded {
                    open = true;
                } else {
                    // A failed write leaves nothing behind; the others of the batch stand.
                    waiting.push_str("ROLLBACK TO write; RELEASE write; ");
                }
            }
            Step::Run(run) => {
                // A batch of one one-trip write (a create when the service is not busy) is one
                // trip: the `BEGIN IMMEDIATE`, the write and the `COMMIT`. Otherwise the
                // writer's commands go in trips of their own, so that each text of a write is
                // prepared in three variants only (alone in its batch, a run of one, a run of
                // four), not one per command that might precede or follow it: every variant
                // keeps its statements prepared.
                let alone = run.len() == 1 && steps.is_empty() && answers.is_empty();
                if !alone && !waiting.is_empty() {
                    let doing = "beginning the write transaction or undoing a write";
                    let sent = send_commands(conn, std::mem::take(&mut waiting), doing).await;
                    if let Err(error) = sent {
                        let reason = Arc::new(anyhow!("{error:#}"));
                        run.into_iter().for_each(|job| job.refuse(reason.clone()));
                        broken = Some(error);
                        break;
                    }
                }
                let ran = run_together(conn, std::mem::take(&mut waiting), run, alone).await;
                answers.extend(ran.answers);
                committed = ran.committed;
                if ran.failed {
                    waiting.push_str("ROLLBACK TO write; RELEASE write; ");
                }
                if !ran.not_run.is_empty() {
                    steps.push_front(Step::Run(ran.not_run));
                }
            }
        }
    }
    let outcome = match broken {
        None if committed => Ok(()),
        // `COMMIT` also releases a savepoint still open.
        None => {
            waiting.push_str("COMMIT");
            send_commands(conn, waiting, "committing a write transaction").await
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
    for step in steps {
        match step {
            Step::Trips(job) => job.refuse(reason.clone()),
            Step::Run(run) => run.into_iter().for_each(|job| job.refuse(reason.clone())),
        }
    }
    Err(anyhow!("{reason:#}"))
}

/// Sends the writer's own `commands` in a trip of their own; `doing` names them in the error.
async fn send_commands(
    conn: &mut SqliteConnection,
    commands: String,
    doing: &'static str,
) -> anyhow::Result<()> {
    sqlx::query(AssertSqlSafe(commands))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .context(doing)
}

/// How many one-trip writes of one text a run carries ([`plan`]).
///
/// Each size of run is a query text of its own, whose statements sqlx prepares and keeps, so
/// there is one size besides runs of one. Runs of 8 were no faster than runs of 4 and kept
/// twice the prepared statements; runs of 2 as well as 4 kept more and added nothing
/// (`docs/benchmarks.md`, "One query for several writes").
pub(crate) const MAX_RUN: usize = 4;

/// What the writer sends next in a batch.
enum Step {
    /// A write of several trips.
    Trips(Box<dyn Job>),
    /// One-trip writes of the same statement text, sent in one query.
    Run(Vec<Box<dyn OneTripJob>>),
}

/// The order in which the writer runs a batch's writes, and which one-trip writes travel
/// together.
///
/// Between two writes of several trips, the one-trip writes are gathered by their statement
/// text (in the order each text first appears, and each text's writes in submission order),
/// and each gathering is cut into runs of [`MAX_RUN`] and, for what is left, runs of one. sqlx
/// prepares a query's statements once and keeps them by the query's text, so runs of one text
/// reuse one prepared query, where runs of mixed texts would make a new one almost every time.
///
/// Gathering reorders one-trip writes of different texts within the batch. That is safe: none
/// of the writes of a batch has been answered, so none of their callers can have sent another
/// of them after learning its outcome; they are concurrent, and any order of them is one the
/// callers could have seen. A write of several trips (a PATCH's read-modify-write) keeps its
/// place: it sees every write submitted before it.
fn plan(batch: Vec<Write>) -> VecDeque<Step> {
    let mut steps = VecDeque::with_capacity(batch.len());
    let mut gathered: Vec<Vec<Box<dyn OneTripJob>>> = Vec::new();
    for write in batch {
        match write {
            Write::OneTrip(job) => {
                let same_text = gathered
                    .iter_mut()
                    .find(|jobs| jobs[0].statements().sql() == job.statements().sql());
                match same_text {
                    Some(jobs) => jobs.push(job),
                    None => gathered.push(vec![job]),
                }
            }
            Write::Trips(job) => {
                cut_into_runs(&mut gathered, &mut steps);
                steps.push_back(Step::Trips(job));
            }
        }
    }
    cut_into_runs(&mut gathered, &mut steps);
    steps
}

/// Appends the gathered one-trip writes to `steps` as runs of [`MAX_RUN`] writes, and what is
/// left of each text as runs of one.
fn cut_into_runs(gathered: &mut Vec<Vec<Box<dyn OneTripJob>>>, steps: &mut VecDeque<Step>) {
    for mut jobs in gathered.drain(..) {
        while !jobs.is_empty() {
            let size = if jobs.len() >= MAX_RUN { MAX_RUN } else { 1 };
            let rest = jobs.split_off(size);
            steps.push_back(Step::Run(std::mem::replace(&mut jobs, rest)));
        }
    }
}

/// How a run of one-trip writes went ([`run_together`]).
struct RunEnd {
    /// The answers of the writes that ran, in order.
    answers: Vec<Answer>,
    /// The last write that ran failed; its savepoint is open.
    failed: bool,
    /// The query ended with the batch's `COMMIT`, and it ran.
    committed: bool,
    /// The writes after the one that failed, which never ran: to be sent again.
    not_run: Vec<Box<dyn OneTripJob>>,
}

/// Sends `waiting`, then each write of `run` inside a savepoint of its own, then (when `last`)
/// the batch's `COMMIT`, in one query.
///
/// SQLite runs the statements in order and stops at the first that fails. sqlx reports the end
/// of each statement, and a statement's rows before its end; counting the ends tells which
/// write each row belongs to, and which write a failure stopped in. The writes before it
/// succeeded (their savepoints released), it failed with its savepoint open, and the writes
/// after it never ran. A failure in the waiting commands is the first write's, and one in the
/// `COMMIT` the last's; either way the savepoint is then gone and the batch fails.
///
/// The writes that succeeded are answered first, then the one that failed; each reads on the
/// connection after the statements sent with it have run.
async fn run_together(
    conn: &mut SqliteConnection,
    waiting: String,
    run: Vec<Box<dyn OneTripJob>>,
    last: bool,
) -> RunEnd {
    let mut sql = waiting;
    let commands = sql.len();
    let mut ended = count_statements(&sql);
    // The number of statements ended once each write's savepoint is released.
    let mut ends = Vec::with_capacity(run.len());
    let mut arguments = SqliteArguments::default();
    let mut encoded = Ok(());
    for job in &run {
        let statements = job.statements();
        sql.push_str("SAVEPOINT write; ");
        sql.push_str(statements.sql());
        sql.push_str("RELEASE write; ");
        ended += job.statement_count() + 2;
        ends.push(ended);
        if encoded.is_ok() {
            encoded = statements.bind_to(&mut arguments);
        }
    }
    if last {
        sql.push_str("COMMIT");
    }
    let mut rows: Vec<Vec<SqliteRow>> = run.iter().map(|_| Vec::new()).collect();
    let failure = match encoded {
        // Nothing of the run is sent. Send the waiting commands and open the first write's
        // savepoint all the same, so that the writer's rollback finds it.
        Err(error) => {
            let opened = sqlx::query(AssertSqlSafe(format!(
                "{}SAVEPOINT write",
                &sql[..commands]
            )))
            .execute(&mut *conn)
            .await;
            Some((0, opened.err().unwrap_or(error)))
        }
        Ok(()) => {
            let mut ended = 0;
            let mut failure = None;
            let mut results = conn.fetch_many(sqlx::query_with(AssertSqlSafe(sql), arguments));
            while let Some(result) = poll_fn(|cx| results.as_mut().poll_next(cx)).await {
                match result {
                    Ok(Either::Left(_)) => ended += 1,
                    Ok(Either::Right(row)) => {
                        let write = ends.partition_point(|&end| end <= ended);
                        if let Some(rows) = rows.get_mut(write) {
                            rows.push(row);
                        }
                    }
                    Err(error) => {
                        let write = ends.partition_point(|&end| end <= ended);
                        failure = Some((write.min(run.len() - 1), error));
                        break;
                    }
                }
            }
            failure
        }
    };
    let mut answers = Vec::with_capacity(run.len());
    let mut jobs = run.into_iter();
    let succeeded = failure.as_ref().map_or(rows.len(), |(write, _)| *write);
    for (job, rows) in jobs.by_ref().take(succeeded).zip(rows) {
        answers.push(job.succeeded(conn, rows).await);
    }
    let failed = if let Some((_, error)) = failure
        && let Some(job) = jobs.next()
    {
        answers.push(job.failed(conn, error).await);
        true
    } else {
        false
    };
    RunEnd {
        answers,
        failed,
        committed: last && !failed,
        not_run: jobs.collect(),
    }
}

/// Turns a write's body into the boxed future [`Writer::write`] takes.
pub(crate) fn boxed<'c, T>(
    future: impl Future<Output = Result<T, StoreError>> + Send + 'c,
) -> WriteFuture<'c, T> {
    Box::pin(future)
}

#[cfg(test)]
mod tests;
