//! [`Writer`]: the one task every write of the store goes through, committing the writes that
//! wait together (group commit).
//!
//! SQLite admits one writer at a time, and with `synchronous=FULL` every commit waits for an
//! fsync: one commit per request caps the service at the disk's fsync rate, whatever the
//! concurrency. The writer instead takes every write that is waiting (up to
//! [`MAX_BATCH`]), runs them in one `BEGIN IMMEDIATE` transaction, each inside a savepoint of its
//! own, commits once, and only then answers each caller. One fsync carries the whole batch.
//!
//! - A write that fails (a duplicate name, a missing partner, a stale lease) is rolled back to
//!   its savepoint: the others of the batch are unaffected, and nothing of it is half-written.
//! - No caller is answered before the commit that holds its write is on disk; when the commit
//!   fails, every write of the batch fails.
//! - Writes run in the order they were submitted, so a read-modify-write (a PATCH) sees every
//!   write submitted before it, committed or in the same batch: concurrent updates of one
//!   partner serialise instead of racing.
//! - The writer does not checkpoint the WAL inside a commit (`wal_autocheckpoint=0`); the
//!   checkpointer does, off the request path (`checkpointer.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow};
use cmp_application::StoreError;
use sqlx::{Connection, SqliteConnection};
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
    /// Runs the write on `conn`; answers whether it succeeded (else its savepoint is rolled
    /// back) and how to answer its caller once the batch's fate is known.
    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> Pin<Box<dyn Future<Output = (bool, Answer)> + Send + 'c>>;

    /// Answers the caller that the write could not run at all.
    fn refuse(self: Box<Self>, reason: Arc<anyhow::Error>);
}

/// Answers a caller once its batch committed (`Ok`) or failed (`Err`).
type Answer = Box<dyn FnOnce(Result<(), Arc<anyhow::Error>>) + Send>;

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
            let succeeded = result.is_ok();
            let answer: Answer = Box::new(move |batch| {
                if let Some(settled) = settled {
                    settled();
                }
                let answer = match batch {
                    Ok(()) => result,
                    // The write itself failed: its own error stands, whatever the batch did.
                    Err(_) if result.is_err() => result,
                    Err(reason) => Err(StoreError::Unexpected(anyhow!(
                        "the transaction holding this write was not committed: {reason:#}"
                    ))),
                };
                // The caller may have gone away; its write stands or falls with the batch.
                let _ = reply.send(answer);
            });
            (succeeded, answer)
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
    /// Starts the writer task on `conn`, which must be the store's only writing connection.
    pub(crate) fn start(conn: SqliteConnection) -> Self {
        let (commands, queue) = mpsc::channel(QUEUE_CAPACITY);
        let commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(conn, queue, commits.clone()));
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

    /// Like [`write`](Self::write), and runs `settled` in the writer task once the write's
    /// transaction has committed or failed (or the write was refused), before its caller is
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
    mut queue: mpsc::Receiver<Command>,
    commits: Arc<AtomicU64>,
) {
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = queue.recv().await else {
            break;
        };
        let mut batch = Vec::new();
        match first {
            Command::Write(job) => batch.push(job),
            Command::Close(done) => closing = Some(done),
        }
        while closing.is_none() && batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(Command::Write(job)) => batch.push(job),
                Ok(Command::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        match run_batch(&mut conn, batch).await {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::error!(error.message = %error, error.cause_chain = ?error, "a write transaction failed; its writes were answered with the error");
            }
        }
    }
    // Refuse what arrived after the close, then close the connection.
    queue.close();
    while let Ok(command) = queue.try_recv() {
        match command {
            Command::Write(job) => job.refuse(Arc::new(anyhow!("the store is closing"))),
            Command::Close(done) => {
                let _ = done.send(());
            }
        }
    }
    if let Err(error) = conn.close().await {
        tracing::warn!(error.message = %error, "closing the SQLite writer connection failed");
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Runs `batch` in one transaction, each write in a savepoint, commits, and answers every
/// caller. Answers nobody before the commit is on disk.
///
/// Every command is a trip to the connection's own thread and back (sqlx runs each SQLite
/// connection on a thread of its own), and on this serial path the trips, not SQLite, are what
/// a write costs. So the savepoint commands travel together, one trip between two writes:
/// - `BEGIN IMMEDIATE; SAVEPOINT write` opens the batch and the first write's savepoint;
/// - after a write that succeeded, `RELEASE write; SAVEPOINT write` keeps it and opens the next;
/// - after a write that failed, `ROLLBACK TO write` undoes it and leaves the savepoint open,
///   empty, for the next write;
/// - `COMMIT` commits the last savepoint with the transaction.
async fn run_batch(conn: &mut SqliteConnection, batch: Vec<Box<dyn Job>>) -> anyhow::Result<()> {
    if let Err(error) = sqlx::query("BEGIN IMMEDIATE; SAVEPOINT write")
        .execute(&mut *conn)
        .await
    {
        // `BEGIN` may have succeeded and only the savepoint failed: end what was begun.
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        let reason = Arc::new(anyhow::Error::new(error).context("beginning a write transaction"));
        for job in batch {
            job.refuse(reason.clone());
        }
        return Err(anyhow!("beginning a write transaction failed"));
    }
    let mut answers = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter().peekable();
    let mut broken = None;
    while let Some(job) = jobs.next() {
        let (succeeded, answer) = job.run(conn).await;
        answers.push(answer);
        let between = match (succeeded, jobs.peek().is_some()) {
            (true, true) => Some("RELEASE write; SAVEPOINT write"),
            (true, false) => None,
            // A failed write leaves nothing behind; the others of the batch stand. When the
            // failure was one that made SQLite roll the whole transaction back (a full disk,
            // an I/O error), the savepoint is gone and this fails: the batch fails as a whole.
            (false, _) => Some("ROLLBACK TO write"),
        };
        if let Some(between) = between
            && let Err(error) = sqlx::query(between).execute(&mut *conn).await
        {
            broken = Some(anyhow::Error::new(error).context("closing a savepoint"));
            break;
        }
    }
    let outcome = match broken {
        None => sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .context("committing a write transaction"),
        Some(error) => Err(error),
    };
    let outcome = match outcome {
        Ok(()) => Ok(()),
        Err(error) => {
            // Leave no transaction open behind a failed batch; SQLite may have ended it already.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(Arc::new(error))
        }
    };
    for answer in answers {
        answer(outcome.clone());
    }
    if let Err(reason) = &outcome {
        for job in jobs {
            job.refuse(reason.clone());
        }
        return Err(anyhow!("{reason:#}"));
    }
    Ok(())
}

/// Turns a write's body into the boxed future [`Writer::write`] takes.
pub(crate) fn boxed<'c, T>(
    future: impl Future<Output = Result<T, StoreError>> + Send + 'c,
) -> WriteFuture<'c, T> {
    Box::pin(future)
}

#[cfg(test)]
mod tests;
