//! [`WalSync`]: makes the writer's commits durable off the writer's path, then answers their
//! callers.
//!
//! With `synchronous=FULL`, SQLite syncs the WAL file inside every commit. The writer runs one
//! transaction at a time, so it stood idle through each sync while the next writes queued
//! behind it. Its connection now commits with `synchronous=NORMAL` instead: the commit's frames
//! are written to the WAL file, not yet synced. The writer hands the batch's answers to this
//! thread and goes on with the next batch. The thread syncs the WAL file and only then answers
//! them. One sync carries every batch committed while the previous sync ran.
//!
//! The guarantee to callers is FULL's: no caller hears of a write before the WAL frames that
//! hold it are on disk. Syncing a file makes durable what any descriptor wrote to it, so a
//! descriptor of our own on the `-wal` file serves. `NORMAL` still syncs the WAL before every
//! checkpoint copies it into the database file, and after writing a new WAL header, so a power
//! loss cannot corrupt the file. What differs from FULL (`docs/delivery.md`, "Durability"):
//! another connection can read a committed write during the sync that makes it durable, up to
//! one sync before the writer's caller hears of it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::anyhow;

use crate::writer::Answer;

/// Makes what has been written to the WAL file durable.
pub(crate) type SyncWal = Box<dyn FnMut() -> io::Result<()> + Send>;

/// The thread that syncs the WAL after the writer's commits and then answers their callers.
#[derive(Debug)]
pub(crate) struct WalSync {
    committed: mpsc::Sender<Vec<Answer>>,
    thread: JoinHandle<()>,
}

impl WalSync {
    /// Starts the thread, syncing the WAL file at `wal` (the database's path with `-wal`).
    ///
    /// The file is opened at the first sync, after a commit has written to it, and kept open.
    /// SQLite deletes the WAL only when the last connection to the database closes, and the
    /// writer's connection lives as long as this thread, so the descriptor keeps naming the
    /// WAL (checkpoints truncate it in place).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub(crate) fn start(wal: PathBuf) -> io::Result<Self> {
        let mut file: Option<File> = None;
        Self::with(Box::new(move || {
            let file = match &mut file {
                Some(file) => file,
                None => file.insert(OpenOptions::new().write(true).open(&wal)?),
            };
            file.sync_data()
        }))
    }

    /// Starts the thread with `sync` as the way to make the WAL durable (tests hold or fail it).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub(crate) fn with(sync: SyncWal) -> io::Result<Self> {
        let (committed, batches) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-wal-sync".to_owned())
            .spawn(move || run(&batches, sync))?;
        Ok(Self { committed, thread })
    }

    /// Answers a committed batch's callers once the WAL holding it is on disk (or with an error
    /// when the sync failed).
    pub(crate) fn answer_when_durable(&self, answers: Vec<Answer>) {
        if let Err(mpsc::SendError(answers)) = self.committed.send(answers) {
            // Only a panic ends the thread early; nobody hears of a write it did not sync.
            let reason = Arc::new(anyhow!("the WAL sync thread stopped"));
            for answer in answers {
                answer(Err(reason.clone()));
            }
        }
    }

    /// Answers every batch handed over so far, then ends the thread; returns it to be joined.
    pub(crate) fn finish(self) -> JoinHandle<()> {
        drop(self.committed);
        self.thread
    }
}

/// The thread: waits for a committed batch, takes every other one that is waiting, syncs once,
/// answers them all in the order they were committed.
///
/// After a sync has failed, no later one is trusted: the kernel may have dropped the pages it
/// could not write and report the next sync as a success, and SQLite's recovery stops at the
/// first WAL frame that is missing, so later commits would be lost with it. Every write from
/// then on is answered with the failure, which also fails the readiness probe (its empty write
/// goes through here), until the service is restarted and SQLite recovers the file.
fn run(batches: &mpsc::Receiver<Vec<Answer>>, mut sync: SyncWal) {
    let mut failed: Option<Arc<anyhow::Error>> = None;
    while let Ok(mut answers) = batches.recv() {
        while let Ok(more) = batches.try_recv() {
            answers.extend(more);
        }
        let outcome = match &failed {
            Some(earlier) => Err(earlier.clone()),
            None => sync().map_err(|error| {
                let error = anyhow::Error::new(error).context(
                    "syncing the WAL file after a commit (no write is acknowledged after a \
                     failed sync until the service restarts)",
                );
                // The writes are committed but not known to be on disk: their callers are told
                // they failed, and the operator must look at the disk.
                tracing::error!(error.message = %error, error.cause_chain = ?error, "a commit could not be made durable; its writes and every later one are answered with the error");
                let error = Arc::new(error);
                failed = Some(error.clone());
                error
            }),
        };
        for answer in answers {
            answer(outcome.clone());
        }
    }
}
