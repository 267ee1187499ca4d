//! [`SqliteStore::check_ready`]: whether the store can take writes now and holds the schema
//! this build expects, for the service's readiness probe (`docs/operations.md`).

use std::collections::BTreeSet;

use anyhow::Context;

use crate::MIGRATOR;
use crate::store::SqliteStore;
use crate::writer::boxed;

/// What the readiness probe learns about the store. A failing check's cause is logged, never
/// returned: the probe's answer names checks, not internals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreReadiness {
    /// The writer connection got the write lock within the busy timeout.
    pub writable: bool,
    /// Every migration embedded in this build is applied, successfully, and no other.
    pub migrations_applied: bool,
}

impl SqliteStore {
    /// Checks that the store is writable and its migrations are those of this build.
    ///
    /// Writable means a write transaction could begin on the writer connection: `BEGIN
    /// IMMEDIATE` takes SQLite's write lock, then the transaction is rolled back, touching
    /// nothing. That fails when the file, or the connection, is read-only (SQLite refuses a
    /// write transaction outright) and when another connection or process has held the write
    /// lock for the whole busy timeout, which are the states in which no request could store a
    /// partner. It was chosen over writing the time into a heartbeat table because it needs no
    /// schema and adds no durable write, and no fsync, to every probe; what it cannot see is a
    /// full disk, which shows as failing writes instead.
    pub async fn check_ready(&self) -> StoreReadiness {
        let writable = match self.try_write_lock().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(error.message = %error, error.cause_chain = ?error, "readiness: the store cannot take a write");
                false
            }
        };
        let migrations_applied = match self.applied_migrations_match().await {
            Ok(matched) => matched,
            Err(error) => {
                tracing::warn!(error.message = %error, error.cause_chain = ?error, "readiness: the applied migrations cannot be read");
                false
            }
        };
        StoreReadiness {
            writable,
            migrations_applied,
        }
    }

    /// An empty write through the writer task: its batch's `BEGIN IMMEDIATE` takes the lock,
    /// and the commit of a transaction that changed nothing writes nothing.
    async fn try_write_lock(&self) -> anyhow::Result<()> {
        self.connections
            .writer
            .write(|_| boxed(async { Ok(()) }))
            .await
            .context("an empty write through the store's writer")
    }

    async fn applied_migrations_match(&self) -> anyhow::Result<bool> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
                .fetch_all(&self.connections.reader)
                .await
                .context("reading the applied migrations")?;
        let embedded: BTreeSet<i64> = MIGRATOR
            .iter()
            .filter(|migration| migration.migration_type.is_up_migration())
            .map(|migration| migration.version)
            .collect();
        let applied: BTreeSet<i64> = applied.into_iter().collect();
        if applied != embedded {
            tracing::warn!(
                ?applied,
                ?embedded,
                "readiness: the applied migrations differ from this build's"
            );
        }
        Ok(applied == embedded)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    use tempfile::TempDir;

    use super::*;
    use crate::SqliteSettings;

    /// A store on a fresh file that waits `busy_timeout_ms` for a lock.
    async fn store_in(directory: &TempDir, busy_timeout_ms: u64) -> (SqliteStore, SqliteSettings) {
        let settings = SqliteSettings {
            path: directory.path().join("ready.db"),
            busy_timeout_ms,
            max_read_connections: 1,
        };
        let store = SqliteStore::open(&settings).await.expect("open");
        (store, settings)
    }

    /// Runs `statement` on the store's writer connection.
    async fn on_writer(store: &SqliteStore, statement: &'static str) {
        store
            .connections
            .writer
            .write(move |conn| {
                boxed(async move {
                    sqlx::query(statement)
                        .execute(conn)
                        .await
                        .map_err(|error| cmp_application::StoreError::Unexpected(error.into()))?;
                    Ok(())
                })
            })
            .await
            .expect(statement);
    }

    #[tokio::test]
    async fn a_freshly_opened_store_is_ready() {
        let directory = TempDir::new().expect("temp dir");
        let (store, _) = store_in(&directory, 5000).await;

        let readiness = store.check_ready().await;

        assert_eq!(
            readiness,
            StoreReadiness {
                writable: true,
                migrations_applied: true
            }
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_store_whose_writer_may_not_write_is_not_writable() {
        let directory = TempDir::new().expect("temp dir");
        let (store, _) = store_in(&directory, 5000).await;
        // The state of a connection opened on a read-only file: SQLite refuses every write.
        on_writer(&store, "PRAGMA query_only = ON").await;

        let readiness = store.check_ready().await;

        assert!(!readiness.writable);
        assert!(readiness.migrations_applied, "reads still work");
        store.close().await;
    }

    #[tokio::test]
    async fn a_store_whose_write_lock_another_process_holds_is_not_writable_until_released() {
        let directory = TempDir::new().expect("temp dir");
        let (store, settings) = store_in(&directory, 20).await;
        let mut other = SqliteConnectOptions::new()
            .filename(&settings.path)
            .connect()
            .await
            .expect("a second connection");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("the other connection takes the write lock");

        let while_held = store.check_ready().await;
        sqlx::query("ROLLBACK")
            .execute(&mut other)
            .await
            .expect("release");
        let after_release = store.check_ready().await;

        assert!(!while_held.writable);
        assert!(after_release.writable);
        other.close().await.expect("close");
        store.close().await;
    }

    #[tokio::test]
    async fn a_store_missing_a_migration_of_this_build_is_not_ready() {
        let directory = TempDir::new().expect("temp dir");
        let (store, _) = store_in(&directory, 5000).await;
        on_writer(
            &store,
            "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
        )
        .await;

        let readiness = store.check_ready().await;

        assert!(!readiness.migrations_applied);
        assert!(readiness.writable);
        store.close().await;
    }
}
