//! [`Checkpointer`]: copies the WAL back into the database file off the request path.
//!
//! By default SQLite checkpoints inside the commit that crosses 1,000 WAL pages, so one request
//! in a thousand pays for everyone's writes (p99 of several hundred milliseconds). The writer
//! turns that off (`wal_autocheckpoint=0`), and this task checkpoints on its own connection
//! instead:
//! - every [`INTERVAL`] while writes happen, `PASSIVE`: copies what it can without waiting for
//!   readers or the writer;
//! - when the store has been idle for a whole interval, `TRUNCATE`: waits for readers to move
//!   on, copies everything and empties the WAL file;
//! - when the WAL has grown past [`WAL_BOUND_BYTES`] all the same, `PASSIVE`, then the rest by
//!   the writer between two batches ([`Writer::checkpoint`]), so that the WAL starts over from
//!   its beginning and stays bounded.
//!
//! SQLite starts the WAL over only once a checkpoint has copied every frame of it. Under a
//! steady stream of writes, a checkpoint on this connection never does: the writer appends
//! frames while it copies. Waiting for the writer (`RESTART`) does not help either: the writer
//! holds the write lock from one batch to the next, and a busy handler that polls for it almost
//! never finds it free. Under a sustained load of creates the WAL grew past 350 MB in 20 s that
//! way. So the checkpoint that must finish is the writer's own, which nothing can append to;
//! the passive one here copies most of the frames first, so the writes wait only for the rest.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::writer::Writer;

/// Time between two checkpoints.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// WAL size past which a checkpoint waits for readers rather than leaving pages behind.
pub(crate) const WAL_BOUND_BYTES: u64 = 64 * 1024 * 1024;

/// A `wal_checkpoint` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Copy what can be copied without waiting.
    Passive,
    /// Wait for readers and the writer, copy everything, let the WAL start over and truncate
    /// the file to nothing.
    Truncate,
}

impl Mode {
    fn statement(self) -> &'static str {
        match self {
            Self::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Self::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        }
    }
}

/// What one tick of the checkpointer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// `PASSIVE` on the checkpointer's connection.
    Passive,
    /// `TRUNCATE` on the checkpointer's connection.
    Truncate,
    /// `PASSIVE` on the checkpointer's connection, then the rest by the writer
    /// ([`Writer::checkpoint`]), so that the WAL starts over.
    StartOver,
}

/// What a checkpoint reports: whether it was blocked, the WAL's frames, and those copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Checkpointed {
    /// 1 when a `RESTART` or `TRUNCATE` could not finish (a reader or the writer held on).
    pub(crate) busy: i64,
    /// Frames in the WAL.
    pub(crate) log: i64,
    /// Frames copied into the database file.
    pub(crate) checkpointed: i64,
}

/// Runs one checkpoint of `mode` on `conn`.
///
/// # Errors
/// When the statement fails.
pub(crate) async fn checkpoint(
    conn: &mut SqliteConnection,
    mode: Mode,
) -> anyhow::Result<Checkpointed> {
    sqlx::query_as(mode.statement())
        .fetch_one(conn)
        .await
        .with_context(|| format!("running {}", mode.statement()))
}

/// The checkpoint a tick calls for: `TRUNCATE` after an idle interval, the WAL started over
/// past the bound, `PASSIVE` otherwise; none when nothing was written since the WAL was last
/// emptied.
pub(crate) fn plan_for(written_since_last_tick: bool, wal_bytes: u64) -> Option<Plan> {
    if wal_bytes == 0 {
        None
    } else if !written_since_last_tick {
        Some(Plan::Truncate)
    } else if wal_bytes > WAL_BOUND_BYTES {
        Some(Plan::StartOver)
    } else {
        Some(Plan::Passive)
    }
}

/// The running checkpoint task.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing the database whose WAL is `wal_path`, on `conn`, watching `writer`'s
    /// commits.
    pub(crate) fn start(conn: SqliteConnection, wal_path: PathBuf, writer: Writer) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(conn, wal_path, writer, stopped));
        Self { stop, task }
    }

    /// Stops the task and closes its connection.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn run(
    mut conn: SqliteConnection,
    wal_path: PathBuf,
    writer: Writer,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_commits = writer.commits();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stopped => break,
        }
        let commits = writer.commits();
        let wal_bytes = std::fs::metadata(&wal_path).map_or(0, |meta| meta.len());
        let Some(plan) = plan_for(commits != last_commits, wal_bytes) else {
            continue;
        };
        last_commits = commits;
        let mode = match plan {
            Plan::Passive | Plan::StartOver => Mode::Passive,
            Plan::Truncate => Mode::Truncate,
        };
        let mut done = checkpoint(&mut conn, mode).await;
        // How long the writes waited for the writer's part.
        let mut writes_held = Duration::ZERO;
        if plan == Plan::StartOver && done.is_ok() {
            let started = tokio::time::Instant::now();
            done = writer.checkpoint().await;
            writes_held = started.elapsed();
        }
        match done {
            Ok(done) => {
                tracing::debug!(
                    ?plan,
                    wal.bytes = wal_bytes,
                    writes_held_ms = writes_held.as_secs_f64() * 1000.0,
                    wal.frames = done.log,
                    copied = done.checkpointed,
                    busy = done.busy,
                    "WAL checkpoint"
                );
            }
            Err(error) => {
                tracing::warn!(error.message = %error, error.cause_chain = ?error, "WAL checkpoint failed");
            }
        }
    }
    if let Err(error) = conn.close().await {
        tracing::warn!(error.message = %error, "closing the checkpoint connection failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tick_picks_the_checkpoint_its_situation_calls_for() {
        let cases = [
            ("an empty WAL needs nothing", true, 0, None),
            (
                "an idle store is truncated",
                false,
                4096,
                Some(Plan::Truncate),
            ),
            (
                "a busy store is checkpointed passively",
                true,
                4096,
                Some(Plan::Passive),
            ),
            (
                "a WAL past the bound is started over with the writer's help",
                true,
                WAL_BOUND_BYTES + 1,
                Some(Plan::StartOver),
            ),
        ];
        for (case, written, bytes, expected) in cases {
            assert_eq!(plan_for(written, bytes), expected, "case: {case}");
        }
    }
}
