//! [`SqliteSettings`] and [`SqliteStore`]: opening the database file, its pragmas, the two
//! connection pools and the migrations.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, ensure};
use cmp_application::PacerRates;
use cmp_domain::{TenantId, Timestamp};
use serde::Deserialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::MIGRATOR;
use crate::checkpointer::{Checkpointer, WAL_BOUND_BYTES};
use crate::connections::Connections;
use crate::outbox::SqliteOutbox;
use crate::pacer_state::SqlitePacer;
use crate::partner_cache::{self, PartnerCache};
use crate::partner_store::SqlitePartnerStore;
use crate::read_slots::ReadSlots;
use crate::wal_sync::WalSync;
use crate::writer::Writer;

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
    /// How many connections serve the requests' reads. In WAL mode readers never block the
    /// writer nor each other, so reads scale with this number while writes stay on one
    /// connection. The operators' views and the metrics read on connections of their own, as
    /// many at most, opened when they are used.
    pub max_read_connections: u32,
}

impl SqliteSettings {
    /// The connection options shared by the writer and the readers: the file, `busy_timeout`,
    /// `synchronous=FULL` and `foreign_keys=ON`.
    ///
    /// `synchronous=FULL` because `NORMAL` in WAL mode may lose the last commits on power loss,
    /// and a partner we answered `201`/`202` for must never be lost (`docs/delivery.md`). The
    /// writer alone commits with `NORMAL` and syncs the WAL itself before it answers
    /// (`wal_sync.rs`), which keeps that promise.
    /// `foreign_keys` is a per-connection setting that SQLite leaves off by default; the
    /// cascades of the schema need it on every connection.
    /// `cache_size` is 512 KiB per connection instead of SQLite's 2 MiB: the writer filled its
    /// cache with the scattered leaf pages of the display-name index, and a reader with the
    /// outbox pages the metrics count scans. A page that is not cached is read from the OS's
    /// cache, and neither create nor read throughput moved (`docs/benchmarks.md`, "Memory").
    pub fn connect_options(&self) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(&self.path)
            .busy_timeout(Duration::from_millis(self.busy_timeout_ms))
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .pragma("cache_size", "-512")
    }
}

/// The name of the writer connection's thread (the readers' threads keep sqlx's name).
pub const WRITER_THREAD_NAME: &str = "sqlite-writer";

/// The opened database: one writer task with its connection, a pool of reader connections,
/// and the checkpoint task, all on one file, shared by the [`SqlitePartnerStore`] and the
/// [`SqliteOutbox`] it hands out.
///
/// All writes go through the single writer (`writer.rs`), which commits the writes waiting
/// together. SQLite admits one writer at a time anyway; several writer connections would only
/// queue inside SQLite's busy handler, which adds no throughput with `synchronous=FULL` but
/// multiplies tail latency (worst cases of 300 to 750 ms were measured). Readers run in parallel
/// beside the writer, which WAL mode allows.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) connections: Connections,
    /// Where the file is and how connections to it behave.
    pub(crate) settings: SqliteSettings,
    /// Taken out when the store closes.
    checkpointer: Arc<Mutex<Option<Checkpointer>>>,
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
        // for. Its commits never checkpoint (the checkpointer does, off the request path).
        //
        // `temp_store=MEMORY` keeps the statement journal in memory. Each write of a batch runs
        // in a savepoint, and SQLite keeps the pages a savepoint changes in that journal so it
        // can roll back to it; past 64 KiB (one create) the journal spilled into a temporary
        // file, created, written and deleted by the writer for every write. In memory it is
        // bounded by one write's pages, since releasing the savepoint empties it.
        let writer_options = settings
            .connect_options()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0")
            .pragma("temp_store", "MEMORY")
            // When the WAL starts over after growing past its bound, the file is cut back to it.
            .pragma("journal_size_limit", WAL_BOUND_BYTES.to_string())
            // Its commits are synced by the WAL sync thread, off the writer's path, before
            // anyone hears of them (`wal_sync.rs`): the same guarantee as FULL.
            .synchronous(SqliteSynchronous::Normal)
            // Named so that an operator (and the binary's test of thread priorities) can tell
            // the writer's thread from the readers' in `top -H` or `/proc`.
            .thread_name(|_| WRITER_THREAD_NAME.to_owned());
        let mut writer = SqliteConnection::connect_with(&writer_options)
            .await
            .with_context(|| {
                format!(
                    "opening the SQLite writer connection to {}",
                    settings.path.display()
                )
            })?;

        MIGRATOR
            .run(&mut writer)
            .await
            .context("running the SQLite migrations")?;

        // `query_only` rather than SQLITE_OPEN_READONLY: read-only connections to a WAL file
        // depend on who creates the `-wal` and `-shm` files (sqlite.org/wal.html#readonly),
        // while `query_only` simply refuses every write statement, the guarantee wanted here.
        let reader_options = settings.connect_options().pragma("query_only", "ON");
        let slots = ReadSlots::new(
            reader_options.clone(),
            usize::try_from(settings.max_read_connections).unwrap_or(usize::MAX),
        );
        // No ping before each acquire: the connections live in this process and cannot hang up,
        // and the ping was one more trip to a connection's thread on every read.
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.max_read_connections)
            .test_before_acquire(false)
            .connect_with(reader_options)
            .await
            .with_context(|| {
                format!(
                    "opening the SQLite reader connections to {}",
                    settings.path.display()
                )
            })?;

        let checkpoints = SqliteConnection::connect_with(&settings.connect_options())
            .await
            .context("opening the SQLite checkpoint connection")?;
        let mut wal_path = settings.path.clone().into_os_string();
        wal_path.push("-wal");
        let wal_path = PathBuf::from(wal_path);
        let durable =
            WalSync::start(wal_path.clone()).context("starting the SQLite WAL sync thread")?;
        let writer = Writer::start(writer, durable);
        let checkpointer = Checkpointer::start(checkpoints, wal_path, writer.clone());

        tracing::debug!(
            sqlite.path = %settings.path.display(),
            sqlite.max_read_connections = settings.max_read_connections,
            "SQLite store opened"
        );
        Ok(Self {
            settings: settings.clone(),
            connections: Connections {
                writer,
                reader,
                slots,
                partners: Arc::new(PartnerCache::new(partner_cache::CAPACITY)),
            },
            checkpointer: Arc::new(Mutex::new(Some(checkpointer))),
        })
    }

    /// The pacer of `tenant`'s Graph budget and `Retry-After` pause for this process, started
    /// at `now` from the pause the file kept (see [`SqlitePacer`]).
    ///
    /// # Errors
    /// When the kept state cannot be read.
    pub async fn pacer(
        &self,
        tenant: TenantId,
        rates: PacerRates,
        now: Timestamp,
    ) -> anyhow::Result<SqlitePacer> {
        SqlitePacer::open(self.connections.clone(), tenant, rates, now).await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.settings.path
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
        let options = (*self.connections.reader.connect_options())
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

    /// The partner store over this store's connections.
    pub fn partner_store(&self) -> SqlitePartnerStore {
        SqlitePartnerStore::new(self.connections.clone())
    }

    /// The outbox over this store's connections.
    pub fn outbox(&self) -> SqliteOutbox {
        SqliteOutbox::new(self.connections.clone())
    }

    /// Stops the checkpointer, closes the readers, and lets the writer finish the writes already
    /// submitted before it closes. Closing the last connection checkpoints the WAL into the
    /// database file.
    pub async fn close(&self) {
        let checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(checkpointer) = checkpointer {
            checkpointer.stop().await;
        }
        self.connections.slots.close().await;
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

    /// The pragmas a connection runs with: journal mode, synchronous, foreign keys, busy
    /// timeout, WAL auto-checkpoint.
    async fn pragmas(conn: &mut SqliteConnection) -> (String, i64, i64, i64, i64) {
        let mut values = Vec::new();
        for pragma in [
            "PRAGMA synchronous",
            "PRAGMA foreign_keys",
            "PRAGMA busy_timeout",
            "PRAGMA wal_autocheckpoint",
        ] {
            values.push(
                sqlx::query_scalar::<_, i64>(pragma)
                    .fetch_one(&mut *conn)
                    .await
                    .expect("pragma"),
            );
        }
        let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .expect("journal_mode");
        (journal_mode, values[0], values[1], values[2], values[3])
    }

    #[tokio::test]
    async fn the_writer_and_the_readers_use_wal_and_foreign_keys_the_writer_syncs_itself_and_only_the_checkpointer_checkpoints()
     {
        let dir = TempDir::new().expect("temp dir");
        let store = SqliteStore::open(&settings(&dir)).await.expect("open");

        let writer = store
            .connections
            .writer
            .write(|conn| crate::writer::boxed(async move { Ok(pragmas(conn).await) }))
            .await
            .expect("the writer's pragmas");
        let mut connection = store.connections.reader.acquire().await.expect("a reader");
        let reader = pragmas(&mut connection).await;
        // Back to the pool: closing the store waits for every reader to return.
        drop(connection);

        assert_eq!(
            writer,
            ("wal".to_owned(), 1, 1, 5000, 0),
            "writer: WAL, NORMAL (1: the WAL sync thread syncs its commits), foreign keys, busy timeout, no checkpoint inside a commit"
        );
        assert_eq!(
            (reader.0.as_str(), reader.1, reader.2, reader.3),
            ("wal", 2, 1, 5000),
            "reader"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn reads_use_the_configured_number_of_connections() {
        let dir = TempDir::new().expect("temp dir");
        let store = SqliteStore::open(&settings(&dir)).await.expect("open");

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
    async fn a_backup_holds_every_row_and_opens_as_a_store_of_its_own() {
        let dir = TempDir::new().expect("temp dir");
        let store = SqliteStore::open(&settings(&dir)).await.expect("open");
        for entry in 0..3 {
            sqlx::query(
                "INSERT INTO audit_log (id, partner_id, action, request_id, caller, at, detail) VALUES (?, 'p', 'created', 'r', 'app:t/o', 0, '{}')",
            )
            .bind(format!("entry-{entry}"))
            .execute(&mut crate::test_support::side_connection(&store).await)
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
            .fetch_one(&restored.connections.reader)
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

    #[tokio::test]
    async fn a_database_of_the_second_schema_keeps_its_rows_and_their_order_in_fewer_b_trees() {
        let dir = TempDir::new().expect("temp dir");
        let settings = settings(&dir);
        std::fs::create_dir_all(settings.path.parent().expect("a parent")).expect("dir");
        let legacy = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(settings.connect_options().create_if_missing(true))
            .await
            .expect("legacy pool");
        MIGRATOR
            .run_to(2, &legacy)
            .await
            .expect("second schema only");
        for statement in [
            "INSERT INTO partners (id, tenant_id, display_name, name_key, partner_state, \
             last_heartbeat, mac_os_onboarded, windows_onboarded, android_onboarded, \
             ios_onboarded, linux_onboarded, graph_id, created_at, updated_at, deleted_at) \
             VALUES ('p-1', 't', 'One', 'one', 'enabled', 5, 1, 0, 0, 0, 0, 'g-1', 1, 1, NULL), \
             ('p-2', 't', 'Two', NULL, 'unknown', 0, 0, 0, 0, 0, 0, NULL, 1, 3, 3)",
            "INSERT INTO partner_assignments (partner_id, platform, position, target_type, \
             filter_type) VALUES ('p-1', 'macOs', 0, 'allDevicesAssignmentTarget', 'none')",
            // Rowids out of the ids' order, and two rows written at the same instant: the
            // rowid is what orders them.
            "INSERT INTO outbox (rowid, id, tenant_id, partner_id, operation, natural_key, \
             state, attempts, next_attempt_at, graph_id, created_at, updated_at) \
             VALUES (7, 'o-b', 't', 'p-1', 'create', 'one', 'delivered', 1, 1, 'g-1', 1, 1), \
             (9, 'o-a', 't', 'p-1', 'update', 'one', 'pending', 0, 1, NULL, 1, 1)",
            "INSERT INTO deliveries (outbox_id, attempt, client_request_id, started_at, \
             outcome) VALUES ('o-b', 1, 'c-1', 1, 'created')",
        ] {
            sqlx::query(statement)
                .execute(&legacy)
                .await
                .expect("legacy row");
        }
        legacy.close().await;

        let store = SqliteStore::open(&settings).await.expect("migrating open");

        let reader = &store.connections.reader;
        let partners: Vec<(String, Option<String>, Option<String>, i64)> = sqlx::query_as(
            "SELECT id, name_key, graph_id, partner_state_order FROM partners ORDER BY id",
        )
        .fetch_all(reader)
        .await
        .expect("partners");
        assert_eq!(
            partners,
            [
                (
                    "p-1".to_owned(),
                    Some("one".to_owned()),
                    Some("g-1".to_owned()),
                    2
                ),
                ("p-2".to_owned(), None, None, 0)
            ]
        );
        let outbox: Vec<(i64, String)> =
            sqlx::query_as("SELECT rowid, id FROM outbox ORDER BY created_at, rowid")
                .fetch_all(reader)
                .await
                .expect("outbox");
        assert_eq!(outbox, [(7, "o-b".to_owned()), (9, "o-a".to_owned())]);
        let kept: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM partner_assignments), (SELECT COUNT(*) FROM deliveries)",
        )
        .fetch_one(reader)
        .await
        .expect("counts");
        assert_eq!(kept, (1, 1));

        // One b-tree per table keyed by its primary key; the references follow the renames.
        let without_rowid: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM pragma_table_list WHERE wr = 1 AND schema = 'main' ORDER BY name",
        )
        .fetch_all(reader)
        .await
        .expect("table list");
        assert_eq!(
            without_rowid,
            [
                ("deliveries".to_owned(),),
                ("partner_assignments".to_owned(),),
                ("partners".to_owned(),),
                // Made so by a later migration (0004), which the open runs too.
                ("tenant_pacers".to_owned(),)
            ]
        );
        let references: Vec<(String, String)> = sqlx::query_as(
            "SELECT child.name, reference.\"table\" FROM sqlite_schema AS child, \
             pragma_foreign_key_list(child.name) AS reference \
             WHERE child.type = 'table' ORDER BY child.name",
        )
        .fetch_all(reader)
        .await
        .expect("foreign keys");
        assert_eq!(
            references,
            [
                ("deliveries".to_owned(), "outbox".to_owned()),
                ("outbox".to_owned(), "partners".to_owned()),
                ("partner_assignments".to_owned(), "partners".to_owned())
            ]
        );

        // The natural key is still unique per tenant, released names excepted.
        let mut writer = crate::test_support::side_connection(&store).await;
        let duplicate = sqlx::query(
            "INSERT INTO partners (id, tenant_id, display_name, name_key, partner_state, \
             last_heartbeat, mac_os_onboarded, windows_onboarded, android_onboarded, \
             ios_onboarded, linux_onboarded, created_at, updated_at) \
             VALUES ('p-3', 't', 'ONE', 'one', 'enabled', 0, 0, 0, 0, 0, 0, 1, 1)",
        )
        .execute(&mut writer)
        .await
        .expect_err("a taken name");
        assert!(
            matches!(&duplicate, sqlx::Error::Database(db) if db.is_unique_violation()),
            "{duplicate}"
        );
        drop(writer);
        store.close().await;
    }
}
