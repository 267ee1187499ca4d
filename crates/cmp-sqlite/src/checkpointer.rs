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
//! - when the WAL has grown past [`WAL_BOUND_BYTES`] all the same (a reader holding an old
//!   snapshot blocks passive checkpoints), `RESTART`: waits until it can copy everything, so the
//!   WAL starts over from the beginning and stays bounded.

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
    /// Wait for readers, copy everything, and let the WAL start over.
    Restart,
    /// As `Restart`, and truncate the WAL file to nothing.
    Truncate,
}

impl Mode {
    fn statement(self) -> &'static str {
        match self {
            Self::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Self::Restart => "PRAGMA wal_checkpoint(RESTART)",
            Self::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        }
    }
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

/// The checkpoint a tick calls for: `TRUNCATE` after an idle interval, `RESTART` past the bound,
/// `PASSIVE` otherwise; none when nothing was written since the WAL was last emptied.
pub(crate) fn mode_for(written_since_last_tick: bool, wal_bytes: u64) -> Option<Mode> {
    if wal_bytes == 0 {
        None
    } else if !written_since_last_tick {
        Some(Mode::Truncate)
    } else if wal_bytes > WAL_BOUND_BYTES {
        Some(Mode::Restart)
    } else {
        Some(Mode::Passive)
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
        let Some(mode) = mode_for(commits != last_commits, wal_bytes) else {
            continue;
        };
        last_commits = commits;
        match checkpoint(&mut conn, mode).await {
            Ok(done) => {
                tracing::trace!(
                    ?mode,
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
                Some(Mode::Truncate),
            ),
            (
                "a busy store is checkpointed passively",
                true,
                4096,
                Some(Mode::Passive),
            ),
            (
                "a WAL past the bound waits for readers",
                true,
                WAL_BOUND_BYTES + 1,
                Some(Mode::Restart),
            ),
        ];
        for (case, written, bytes, expected) in cases {
            assert_eq!(mode_for(written, bytes), expected, "case: {case}");
        }
    }
}
