//! [`SqliteSettings`] and [`SqliteStore`]: opening the database file, its pragmas, the two
//! connection pools and the migrations.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde::Deserialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::MIGRATOR;
use crate::outbox::SqliteOutbox;
use crate::partner_store::SqlitePartnerStore;

/// How every write transaction starts.
///
/// `IMMEDIATE` takes the write lock at `BEGIN`, where `busy_timeout` can wait for it. The
/// default `DEFERRED` starts as a reader and upgrades at its first write; if another connection
/// (another process, an operator's shell) wrote in between, that upgrade fails at once with
/// `SQLITE_BUSY`, half-way through the transaction, and no timeout helps.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

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
    /// and a partner we answered `201`/`202` for must never be lost (`docs/delivery.md`).
    /// `foreign_keys` is a per-connection setting that SQLite leaves off by default; the
    /// cascades of the schema need it on every connection.
    pub fn connect_options(&self) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(&self.path)
            .busy_timeout(Duration::from_millis(self.busy_timeout_ms))
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
    }
}

/// The opened database: one writer connection and a pool of reader connections to one file,
/// shared by the [`SqlitePartnerStore`] and the [`SqliteOutbox`] it hands out.
///
/// All writes go through the single writer. SQLite admits one writer at a time anyway; several
/// writer connections would only queue inside SQLite's busy handler, which adds no throughput
/// with `synchronous=FULL` but multiplies tail latency (worst cases of 300 to 750 ms were
/// measured). Queuing in the pool instead is fair and cheap. Readers run in parallel beside the
/// writer, which WAL mode allows.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) connections: Connections,
}

/// The store's two pools, cloned into each port implementation (a clone shares the pools).
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    /// The one connection every write transaction runs on (`max_connections = 1`).
    pub(crate) writer: SqlitePool,
    /// Connections for reads only; `query_only` makes any write on them fail.
    pub(crate) reader: SqlitePool,
}

impl Connections {
    /// A write transaction on the single writer, holding the write lock from `BEGIN` on.
    pub(crate) async fn begin_write(&self) -> anyhow::Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with(BEGIN_WRITE)
            .await
            .context("beginning a write transaction")
    }

    /// A read transaction on a reader connection: one consistent WAL snapshot for its
    /// statements.
    pub(crate) async fn begin_read(&self) -> anyhow::Result<Transaction<'static, Sqlite>> {
        self.reader
            .begin()
            .await
            .context("beginning a read transaction")
    }
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
        Ok(Self {
            connections: Connections { writer, reader },
        })
    }

    /// The partner store over this store's connections.
    pub fn partner_store(&self) -> SqlitePartnerStore {
        SqlitePartnerStore::new(self.connections.clone())
    }

    /// The outbox over this store's connections.
    pub fn outbox(&self) -> SqliteOutbox {
        SqliteOutbox::new(self.connections.clone())
    }

    /// Closes both pools, waiting for connections in use to be returned. Closing the last
    /// connection checkpoints the WAL into the database file.
    pub async fn close(&self) {
        self.connections.reader.close().await;
        self.connections.writer.close().await;
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

        for (name, pool) in [
            ("writer", &store.connections.writer),
            ("reader", &store.connections.reader),
        ] {
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

        assert_eq!(store.connections.writer.options().get_max_connections(), 1);
        assert_eq!(store.connections.reader.options().get_max_connections(), 4);
        store.close().await;
    }

    #[tokio::test]
    async fn reader_connections_refuse_writes() {
        let dir = TempDir::new().expect("temp dir");
        let store = SqliteStore::open(&settings(&dir)).await.expect("open");

        let result = sqlx::query("DELETE FROM audit_log")
            .execute(&store.connections.reader)
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
            .fetch_one(&store.connections.reader)
            .await
            .expect("count migrations");
        assert_eq!(
            applied,
            i64::try_from(MIGRATOR.iter().count()).expect("few")
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

    #[tokio::test]
    async fn a_database_of_the_first_schema_is_migrated_to_the_outbox_vocabulary_keeping_its_rows()
    {
        let dir = TempDir::new().expect("temp dir");
        let settings = settings(&dir);
        std::fs::create_dir_all(settings.path.parent().expect("a parent")).expect("dir");
        let legacy = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(settings.connect_options().create_if_missing(true))
            .await
            .expect("legacy pool");
        MIGRATOR
            .run_to(1, &legacy)
            .await
            .expect("first schema only");
        for statement in [
            "INSERT INTO partners (id, tenant_id, display_name, name_key, partner_state, \
             last_heartbeat, mac_os_onboarded, windows_onboarded, android_onboarded, \
             ios_onboarded, linux_onboarded, graph_id, created_at, updated_at, deleted_at) \
             VALUES ('p-1', 't', 'ΟΔΟΣ', 'οδος', 'enabled', 0, 0, 0, 0, 0, 0, 'not-in-graph', \
             1, 1, 2)",
            "INSERT INTO outbox (id, tenant_id, partner_id, operation, natural_key, state, \
             attempts, next_attempt_at, graph_id, created_at, updated_at) \
             VALUES ('o-1', 't', 'p-1', 'create', 'οδος', 'delivered', 1, 1, 'not-in-graph', \
             1, 1)",
            "INSERT INTO outbox (id, tenant_id, partner_id, operation, natural_key, state, \
             attempts, next_attempt_at, dead_reason, created_at, updated_at) \
             VALUES ('o-2', 't', 'p-1', 'delete', 'οδος', 'dead', 1, 1, \
             'duplicate in Graph: 2 objects', 2, 2)",
            "INSERT INTO delivery_attempts (outbox_id, attempt, client_request_id, started_at, \
             outcome) VALUES ('o-1', 1, 'c-1', 1, 'absent_in_graph')",
            "INSERT INTO delivery_attempts (outbox_id, attempt, client_request_id, started_at, \
             outcome) VALUES ('o-2', 1, 'c-2', 2, 'dead')",
        ] {
            sqlx::query(statement)
                .execute(&legacy)
                .await
                .expect("legacy row");
        }
        legacy.close().await;

        let store = SqliteStore::open(&settings).await.expect("migrating open");

        let reader = &store.connections.reader;
        let partner: (Option<String>, Option<String>) =
            sqlx::query_as("SELECT graph_id, name_key FROM partners WHERE id = 'p-1'")
                .fetch_one(reader)
                .await
                .expect("partner");
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT id, natural_key, graph_id FROM outbox ORDER BY id")
                .fetch_all(reader)
                .await
                .expect("outbox");
        let outcomes: Vec<(String, String)> =
            sqlx::query_as("SELECT outbox_id, outcome FROM deliveries ORDER BY outbox_id")
                .fetch_all(reader)
                .await
                .expect("deliveries");
        assert_eq!(
            partner,
            (None, Some("οδοσ".to_owned())),
            "placeholder id gone, key folded"
        );
        assert_eq!(
            rows,
            [
                ("o-1".to_owned(), "οδοσ".to_owned(), None),
                ("o-2".to_owned(), "οδοσ".to_owned(), None)
            ]
        );
        assert_eq!(
            outcomes,
            [
                ("o-1".to_owned(), "absent_in_graph".to_owned()),
                ("o-2".to_owned(), "duplicate_in_graph".to_owned())
            ]
        );
        let foreign_key: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_list('deliveries')")
                .fetch_all(reader)
                .await
                .expect("foreign keys");
        assert_eq!(
            foreign_key,
            [("outbox".to_owned(),)],
            "deliveries refer to the new outbox"
        );
        store.close().await;
    }
}
