//! [`PostgresSettings`] and [`PostgresStore`]: the connection pool, its timeouts, the migrations
//! under an advisory lock, and the store's part of the readiness probe.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, ensure};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::MIGRATOR;
use crate::outbox::PostgresOutbox;
use crate::pacer::PostgresPacer;
use crate::partner_store::PostgresPartnerStore;
use crate::replica::Replica;

/// The key of the session advisory lock every replica takes while it migrates: replicas that
/// start together apply the migrations one after the other, the later ones finding nothing left
/// to do. (Any constant shared by all replicas would do; this is "cmp-migr" in ASCII.)
const MIGRATION_LOCK_KEY: i64 = 0x636d_702d_6d69_6772;

/// How to reach the database and how connections behave: `store.postgres` of the configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database?...`. A secret (it may hold a password):
    /// never logged, and `Debug` prints it redacted.
    pub url: String,
    /// Connections in the pool, shared by requests and dispatcher workers.
    pub pool_size: u32,
    /// How long opening a connection (or waiting for a pooled one) may take.
    pub connect_timeout: Duration,
    /// PostgreSQL's `statement_timeout` on every connection: a statement running longer is
    /// cancelled by the server and its transaction rolls back.
    pub statement_timeout: Duration,
    /// This replica's id, the prefix of the leases it writes (`<replica>/<owner>`).
    pub replica_id: String,
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &"[redacted]")
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("replica_id", &self.replica_id)
            .finish()
    }
}

impl PostgresSettings {
    /// The connection options: the URL with `statement_timeout` set on every connection, and
    /// sqlx's statement logging off (statements carry no secret, but bound values may name
    /// partners, and the service logs through its own spans).
    ///
    /// # Errors
    /// When the URL does not parse; the message never repeats it.
    pub fn connect_options(&self) -> anyhow::Result<PgConnectOptions> {
        let options: PgConnectOptions = self.url.parse().map_err(|_| {
            anyhow::anyhow!("store.postgres.url is not a valid PostgreSQL connection URL")
        })?;
        let timeout_ms = self.statement_timeout.as_millis().to_string();
        Ok(options
            .options([("statement_timeout", timeout_ms.as_str())])
            .application_name("cmp-server")
            .disable_statement_logging())
    }
}

/// What the readiness probe learns about the store. A failing check's cause is logged, never
/// returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreReadiness {
    /// A write transaction could begin and take a row lock.
    pub writable: bool,
    /// Every migration embedded in this build is applied, successfully, and no other.
    pub migrations_applied: bool,
}

/// The opened database: one pool shared by the [`PostgresPartnerStore`] and the
/// [`PostgresOutbox`] it hands out, and the replica id their leases carry.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    pub(crate) replica: Replica,
}

impl PostgresStore {
    /// Connects the pool and runs the embedded migrations under a session advisory lock.
    ///
    /// # Errors
    /// When the pool size is 0, the URL does not parse, the server cannot be reached within
    /// the connect timeout, or a migration fails.
    pub async fn open(settings: &PostgresSettings) -> anyhow::Result<Self> {
        ensure!(
            settings.pool_size >= 1,
            "store.postgres.pool_size must be at least 1"
        );
        ensure!(
            !settings.replica_id.is_empty() && !settings.replica_id.contains('/'),
            "the replica id must be non-empty and hold no '/'"
        );
        let options = settings.connect_options()?;
        let mut migrating = tokio::time::timeout(
            settings.connect_timeout,
            PgConnection::connect_with(&options),
        )
        .await
        .context("connecting to PostgreSQL: the connect timeout passed")?
        .context("connecting to PostgreSQL")?;
        migrate(&mut migrating).await?;
        migrating
            .close()
            .await
            .context("closing the migration connection")?;

        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_size)
            .acquire_timeout(settings.connect_timeout)
            .connect_with(options)
            .await
            .context("opening the PostgreSQL connection pool")?;
        tracing::debug!(
            postgres.pool_size = settings.pool_size,
            replica.id = %settings.replica_id,
            "PostgreSQL store opened"
        );
        Ok(Self {
            pool,
            replica: Replica(settings.replica_id.as_str().into()),
        })
    }

    /// The partner store over this store's pool.
    pub fn partner_store(&self) -> PostgresPartnerStore {
        PostgresPartnerStore::new(self.pool.clone(), self.replica.clone())
    }

    /// The outbox over this store's pool.
    pub fn outbox(&self) -> PostgresOutbox {
        PostgresOutbox::new(self.pool.clone(), self.replica.clone())
    }

    /// The pacer of `tenant`'s Graph budget, kept in the database and shared with every
    /// replica on it; `rates` are this replica's configured spacing.
    pub fn pacer(
        &self,
        tenant: cmp_domain::TenantId,
        rates: cmp_application::PacerRates,
    ) -> PostgresPacer {
        PostgresPacer::new(self.pool.clone(), tenant, rates)
    }

    /// The pool, for tools that copy rows in bulk (`cmp-server migrate-store`).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for the connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks that the store takes writes and holds the schema of this build.
    ///
    /// Writable means a transaction could begin and lock a row for update (`SELECT ... FOR
    /// UPDATE` on the migrations table): that fails on a read-only standby, when the pool
    /// cannot reach the server, and when the server refuses connections; it writes nothing.
    pub async fn check_ready(&self) -> StoreReadiness {
        let writable = match self.try_write().await {
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

    async fn try_write(&self) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await.context("beginning a transaction")?;
        sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version LIMIT 1 FOR UPDATE")
            .execute(&mut *tx)
            .await
            .context("locking a row")?;
        tx.rollback().await.context("rolling back")?;
        Ok(())
    }

    async fn applied_migrations_match(&self) -> anyhow::Result<bool> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
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

/// Runs the migrations while holding [`MIGRATION_LOCK_KEY`]: a replica that starts while another
/// migrates waits here, then finds every migration applied.
async fn migrate(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .context("taking the migration lock")?;
    let migrated = MIGRATOR
        .run(&mut *conn)
        .await
        .context("running the PostgreSQL migrations");
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .context("releasing the migration lock");
    migrated?;
    unlocked?;
    Ok(())
}
