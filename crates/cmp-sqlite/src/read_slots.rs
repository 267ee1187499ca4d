//! [`ReadSlots`]: the reader connections of the request path, handed out without a trip to a
//! connection's thread.
//!
//! Each sqlx SQLite connection runs on a thread of its own, and every command sent to it is a
//! wake-up of that thread and another of the task awaiting the answer; on the read path these
//! wake-ups, not SQLite, were the largest cost measured (`docs/benchmarks.md`). sqlx's pool adds
//! one command of its own to every read: it pings the connection when it is given back, from a
//! task it spawns for that. These slots are the same connections without the pool: a connection
//! is taken from a list under a semaphore and put back when its guard drops, so a read that is
//! one statement is one command.
//!
//! A read dropped halfway (its request cancelled) gives its connection back with the statement
//! or transaction it left open; sqlx's connection thread finishes what was queued (a dropped
//! transaction queues its rollback) before it runs the next reader's command, so the next
//! reader starts clean.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Up to a fixed number of reader connections, opened on first need and kept.
#[derive(Debug, Clone)]
pub(crate) struct ReadSlots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// How each connection is opened (the store's reader options, `query_only`).
    options: SqliteConnectOptions,
    /// One permit per connection, taken out and opened or not.
    permits: Arc<Semaphore>,
    /// The connections not taken out.
    idle: Mutex<Vec<SqliteConnection>>,
}

impl ReadSlots {
    /// At most `size` connections opened with `options`.
    pub(crate) fn new(options: SqliteConnectOptions, size: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                permits: Arc::new(Semaphore::new(size)),
                idle: Mutex::new(Vec::with_capacity(size)),
            }),
        }
    }

    /// A connection of its own until the guard drops; waits while all of them are out.
    ///
    /// # Errors
    /// When the slots are closed, or a connection must be opened and cannot be.
    pub(crate) async fn take(&self) -> anyhow::Result<ReadGuard> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .context("the store's readers are closed")?;
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self
                .inner
                .options
                .connect()
                .await
                .context("opening a SQLite reader connection")?,
        };
        Ok(ReadGuard {
            connection: Some(connection),
            slots: Arc::clone(&self.inner),
            _permit: permit,
        })
    }

    /// Refuses new reads and closes the idle connections; a connection still taken out is
    /// closed when its guard drops.
    pub(crate) async fn close(&self) {
        self.inner.permits.close();
        let idle = std::mem::take(
            &mut *self
                .inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for connection in idle {
            if let Err(error) = connection.close().await {
                tracing::warn!(error.message = %error, "closing a SQLite reader connection failed");
            }
        }
    }
}

/// A reader connection taken from [`ReadSlots`]; it goes back when the guard drops.
#[derive(Debug)]
pub(crate) struct ReadGuard {
    /// `Some` until the guard drops.
    connection: Option<SqliteConnection>,
    slots: Arc<Inner>,
    /// Given back after the connection, so a waiting reader finds it idle.
    _permit: OwnedSemaphorePermit,
}

impl Deref for ReadGuard {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.connection
            .as_ref()
            .expect("a guard holds its connection until it drops")
    }
}

impl DerefMut for ReadGuard {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.connection
            .as_mut()
            .expect("a guard holds its connection until it drops")
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Once closed, a connection given back is dropped, which closes it too.
            if !self.slots.permits.is_closed() {
                self.slots
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(connection);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::settings;

    #[tokio::test]
    async fn a_connection_given_back_is_the_one_taken_next_and_no_more_are_opened_than_slots() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let options = settings(&dir).connect_options().create_if_missing(true);
        let slots = ReadSlots::new(options, 2);

        let mut first = slots.take().await.expect("first");
        let second = slots.take().await.expect("second");
        let first_id: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *first)
            .await
            .expect("a read");
        assert_eq!(first_id, 1);
        assert!(
            tokio::time::timeout(std::time::Duration::ZERO, slots.take())
                .await
                .is_err(),
            "a third waits while both are out"
        );
        drop(first);
        let third = slots.take().await.expect("the first one, given back");
        drop((second, third));
        assert_eq!(
            slots.inner.idle.lock().expect("idle").len(),
            2,
            "two opened in all"
        );

        slots.close().await;
        assert!(slots.take().await.is_err(), "closed");
    }
}
