//! [`SqliteSettings`] and [`SqliteStore`]: opening the database file, its pragmas, the two
//! connection pools and the migrations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde::Deserialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqlitePool};

use crate::MIGRATOR;
use crate::partner_repository::SqlitePartnerRepository;

/// Where the database lives and how connections to it behave: the `[sqlite]` section of the
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSettings {
    /// The database file. It and its parent directory are created when missing; SQLite keeps
    /// its `-wal` and `-shm` files next to it.
    pub path: PathBuf,
    /// How long a connection waits for a lock held by another connection or process before
    /// failing with `SQLITE_BUSY`, in milliseconds (`5000` in the default configuration).
    pub busy_timeout_ms: u64,
    /// How many connections serve reads. In WAL mode readers never block the writer nor each
    /// other, so reads scale with this number while writes stay on one connection.
    pub max_read_connections: u32,
}

impl SqliteSettings {
    /// The connection options shared by the writer and the readers: the file, `busy_timeout`,
    /// `synchronous=FULL` and `foreign_keys=ON`.
    ///
    /// `synchronous=FULL` because `NORMAL` in WAL mode may lose the last commits on power loss,
    /// and a partner we answered `201`/`202` for must never be lost (graph-client-behaviour
    /// §3.1). `foreign_keys` is a per-connection setting that SQLite leaves off by default; the
    /// cascades of the schema need it on every connection.
    pub fn connect_options(&self) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(&self.path)
            .busy_timeout(Duration::from_millis(self.busy_timeout_ms))
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
    }
}

/// The opened database: one writer connection and a pool of reader connections to one file.
///
/// All writes go through the single writer. SQLite admits one writer at a time anyway; several
/// writer connections would only queue inside SQLite's busy handler, which adds no throughput
/// with `synchronous=FULL` but multiplies tail latency (stack.md measured 300 to 750 ms
/// worst cases). Queuing in the pool instead is fair and cheap. Readers run in parallel beside
/// the writer, which WAL mode allows.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one connection every write transaction runs on (`max_connections = 1`).
    pub(crate) writer: SqlitePool,
    /// Connections for reads only; `query_only` makes any write on them fail.
    pub(crate) reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file, sets its pragmas and runs the
    /// embedded migrations.
    ///
    /// # Errors
    /// When `max_read_connections` is 0, the parent directory cannot be created, the file
    /// cannot be opened or set to WAL mode, or a migration fails.
    pub async fn open(settings: &SqliteSettings) -> anyhow::Result<SqliteStore> {
        ensure!(
            settings.max_read_connections >= 1,
            "sqlite.max_read_connections must be at least 1"
        );
        if let Some(parent) = settings.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Blocking I/O on the runtime, but once at startup and before anything else runs.
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the database directory {}", parent.display()))?;
        }

        // The writer connects first: it creates the file and switches it to WAL. The journal
        // mode is stored in the file, so the readers inherit it; they must not set it
        // themselves, because changing it needs an exclusive lock that busy_timeout cannot wait
        // for.
        let writer_options = settings
            .connect_options()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // Keep the writer connection open: closing the last connection checkpoints and
            // deletes the WAL file, and reopening costs a few milliseconds on a hot path.
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options)
            .await
            .with_context(|| {
                format!(
                    "opening the SQLite writer connection to {}",
                    settings.path.display()
                )
            })?;

        MIGRATOR
            .run(&writer)
            .await
            .context("running the SQLite migrations")?;

        // `query_only` rather than SQLITE_OPEN_READONLY: read-only connections to a WAL file
        // depend on who creates the `-wal` and `-shm` files (sqlite.org/wal.html#readonly),
        // while `query_only` simply refuses every write statement, the guarantee wanted here.
        let reader_options = settings.connect_options().pragma("query_only", "ON");
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.max_read_connections)
            .connect_with(reader_options)
            .await
            .with_context(|| {
                format!(
                    "opening the SQLite reader connections to {}",
                    settings.path.display()
                )
            })?;

        tracing::debug!(
            sqlite.path = %settings.path.display(),
            sqlite.max_read_connections = settings.max_read_connections,
            "SQLite store opened"
        );
        Ok(Self { writer, reader })
    }

    /// The partner repository over this store's connections.
    pub fn partner_repository(&self) -> SqlitePartnerRepository {
        SqlitePartnerRepository::new(self.writer.clone(), self.reader.clone())
    }

    /// Writes a consistent copy of the database to `destination` while the service keeps
    /// running, with `VACUUM INTO`: the copy is one read transaction's snapshot, compacted, with
    /// no `-wal` file of its own, ready to be put in place as the database file.
    ///
    /// It runs on a connection of its own, so writers are not held up; WAL mode lets them
    /// commit while the snapshot is read.
    ///
    /// # Errors
    /// When `destination` exists (it is never overwritten), its folder does not exist, or
    /// SQLite fails to write it.
    pub async fn backup_to(&self, destination: &Path) -> anyhow::Result<()> {
        // SQLite itself refuses a non-empty file; an existing empty one would be overwritten,
        // and an operator naming an existing file most likely meant another name.
        ensure!(
            !destination.exists(),
            "{} already exists; a backup never overwrites a file",
            destination.display()
        );
        let target = destination
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 path", destination.display()))?;
        // A connection of its own: the readers' `query_only` refuses `VACUUM INTO` (it writes,
        // if not to this database), and the writer must stay free for the service's writes.
        let options = (*self.reader.connect_options())
            .clone()
            .pragma("query_only", "OFF");
        let mut connection = options
            .connect()
            .await
            .context("opening a connection for the backup")?;
        let copied = sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&mut connection)
            .await
            .with_context(|| format!("writing the backup to {}", destination.display()));
        connection
            .close()
            .await
            .context("closing the backup connection")?;
        copied.map(|_| ())
    }

    /// Closes both pools, waiting for connections in use to be returned. Closing the last
    /// connection checkpoints the WAL into the database file.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    fn settings(dir: &TempDir) -> SqliteSettings {
        SqliteSettings {
            path: dir.path().join("nested").join("deeper").join("cmp.db"),
            busy_timeout_ms: 5000,
            max_read_connections: 4,
        }
    }

    #[tokio::test]
    async fn open_creates_the_parent_directory_and_the_file() {
        let dir = TempDir::new().expect("temp dir");
        let settings = settings(&dir);
        assert!(!settings.path.exists());

        let store = SqliteStore::open(&settings).await.expect("open");

        assert!(settings.path.is_file(), "database file created");
        store.close().await;
    }

    #[tokio::test]
    async fn opened_store_uses_wal_synchronous_full_and_foreign_keys_on_every_pool() {
        let dir = TempDir::new().expect("temp dir");
        let store = SqliteStore::open(&settings(&dir)).await.expect("open");

        for (name, pool) in [("writer", &store.writer), ("reader", &store.reader)] {
            let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(pool)
                .await
                .expect("journal_mode");
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .expect("synchronous");
            let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(pool)
                .await
                .expect("foreign_keys");
            let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(pool)
                .await
                .expect("busy_timeout");

            assert_eq!(journal_mode, "wal", "{name}");
            assert_eq!(synchronous, 2, "{name}: FULL is 2");
            assert_eq!(foreign_keys, 1, "{name}");
            assert_eq!(busy_timeout, 5000, "{name}");
        }
        store.close().await;
    }

    #[tokio::test]
    async fn writes_use_one_connection_and_reads_several() {
        let dir = TempDir::new().expect("temp dir");
        let store = SqliteStore::open(&settings(&dir)).await.expect("open");

        assert_eq!(store.writer.options().get_max_connections(), 1);
        assert_eq!(store.reader.options().get_max_connections(), 4);
        store.close().await;
    }

    #[tokio::test]
    async fn reader_connections_refuse_writes() {
        let dir = TempDir::new().expect("temp dir");
        let store = SqliteStore::open(&settings(&dir)).await.expect("open");

        let result = sqlx::query("DELETE FROM audit_log")
            .execute(&store.reader)
            .await;

        let error = result.expect_err("a write on a reader must fail");
        assert!(error.to_string().contains("readonly"), "{error}");
        store.close().await;
    }

    #[tokio::test]
    async fn reopening_an_existing_database_runs_migrations_idempotently() {
        let dir = TempDir::new().expect("temp dir");
        let settings = settings(&dir);
        SqliteStore::open(&settings)
            .await
            .expect("first open")
            .close()
            .await;

        let store = SqliteStore::open(&settings).await.expect("second open");

        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&store.reader)
            .await
            .expect("count migrations");
        assert_eq!(
            applied,
            i64::try_from(MIGRATOR.iter().count()).expect("few")
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_backup_holds_every_row_and_opens_as_a_store_of_its_own() {
        let dir = TempDir::new().expect("temp dir");
        let store = SqliteStore::open(&settings(&dir)).await.expect("open");
        for entry in 0..3 {
            sqlx::query(
                "INSERT INTO audit_log (id, partner_id, action, request_id, caller, at, detail) VALUES (?, 'p', 'created', 'r', 'app:t/o', 0, '{}')",
            )
            .bind(format!("entry-{entry}"))
            .execute(&store.writer)
            .await
            .expect("insert");
        }
        let backup = dir.path().join("backup.db");

        store.backup_to(&backup).await.expect("backup");
        store.close().await;

        let restored = SqliteStore::open(&SqliteSettings {
            path: backup,
            ..settings(&dir)
        })
        .await
        .expect("the backup opens");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&restored.reader)
            .await
            .expect("count");
        assert_eq!(rows, 3);
        restored.close().await;
    }

    #[tokio::test]
    async fn a_backup_never_overwrites_an_existing_file() {
        let dir = TempDir::new().expect("temp dir");
        let store = SqliteStore::open(&settings(&dir)).await.expect("open");
        let existing = dir.path().join("existing.db");
        std::fs::write(&existing, b"").expect("an empty file");

        let error = store.backup_to(&existing).await.expect_err("must refuse");

        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(
            std::fs::read(&existing).expect("read").len(),
            0,
            "untouched"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn open_refuses_zero_read_connections() {
        let dir = TempDir::new().expect("temp dir");
        let settings = SqliteSettings {
            max_read_connections: 0,
            ..settings(&dir)
        };

        let error = SqliteStore::open(&settings).await.expect_err("must refuse");

        assert!(
            error.to_string().contains("max_read_connections"),
            "{error}"
        );
        assert!(!settings.path.exists(), "nothing created");
    }
}
