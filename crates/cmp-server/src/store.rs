//! [`Store`]: the store the configuration chose (`store.kind`), opened, with the ports and the
//! readiness check the rest of the binary uses whichever it is.

use std::sync::Arc;

use anyhow::Context;
use cmp_application::{Outbox, Pacer, PacerRates, PartnerStore};
use cmp_domain::{TenantId, Timestamp};
use cmp_postgres::PostgresStore;
use cmp_sqlite::SqliteStore;

use crate::config::{Settings, StoreKind};

/// The opened store.
#[derive(Debug, Clone)]
pub enum Store {
    /// One SQLite file.
    Sqlite(SqliteStore),
    /// One PostgreSQL database shared by several replicas.
    Postgres(PostgresStore),
}

/// What the readiness probe learns about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreChecks {
    /// The store takes writes.
    pub writable: bool,
    /// The migrations applied are those of this build.
    pub migrations_applied: bool,
}

impl Store {
    /// Opens (and migrates) the configured store.
    ///
    /// # Errors
    /// When the store cannot be opened or migrated; the message says which store, never the
    /// PostgreSQL URL.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        match settings.store.kind {
            StoreKind::Sqlite => SqliteStore::open(&settings.sqlite)
                .await
                .map(Self::Sqlite)
                .with_context(|| {
                    format!(
                        "opening the SQLite store at {}",
                        settings.sqlite.path.display()
                    )
                }),
            StoreKind::Postgres => {
                let postgres = settings
                    .store
                    .postgres
                    .settings(&settings.store.replica_id)?;
                PostgresStore::open(&postgres)
                    .await
                    .map(Self::Postgres)
                    .context("opening the PostgreSQL store (store.postgres)")
            }
        }
    }

    /// The partner store port.
    pub fn partner_store(&self) -> Arc<dyn PartnerStore> {
        match self {
            Self::Sqlite(store) => Arc::new(store.partner_store()),
            Self::Postgres(store) => Arc::new(store.partner_store()),
        }
    }

    /// The outbox port.
    pub fn outbox(&self) -> Arc<dyn Outbox> {
        match self {
            Self::Sqlite(store) => Arc::new(store.outbox()),
            Self::Postgres(store) => Arc::new(store.outbox()),
        }
    }

    /// The pacer of `tenant`'s Graph budget and `Retry-After` pause. On PostgreSQL it is kept in
    /// the database, so that every replica books from one schedule and waits out one pause; on
    /// SQLite, where one process serves, in this process's memory, each pause also kept in the
    /// file.
    ///
    /// The SQLite pacer starts at `now` inside the pause the file kept, if one is still in
    /// force, and as if the budget had just been spent, since a restarted process cannot know
    /// what it sent before; the database row outlives restarts and needs no such guess.
    ///
    /// # Errors
    /// When the SQLite file's kept pacing state cannot be read.
    pub async fn pacer(
        &self,
        tenant: TenantId,
        rates: PacerRates,
        now: Timestamp,
    ) -> anyhow::Result<Arc<dyn Pacer>> {
        Ok(match self {
            Self::Sqlite(store) => Arc::new(
                store
                    .pacer(tenant, rates, now)
                    .await
                    .context("starting the tenant's pacer from the SQLite store")?,
            ),
            Self::Postgres(store) => Arc::new(store.pacer(tenant, rates)),
        })
    }

    /// The store's part of `/readyz`.
    pub async fn check_ready(&self) -> StoreChecks {
        match self {
            Self::Sqlite(store) => {
                let ready = store.check_ready().await;
                StoreChecks {
                    writable: ready.writable,
                    migrations_applied: ready.migrations_applied,
                }
            }
            Self::Postgres(store) => {
                let ready = store.check_ready().await;
                StoreChecks {
                    writable: ready.writable,
                    migrations_applied: ready.migrations_applied,
                }
            }
        }
    }

    /// Closes the store, letting writes already submitted finish.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}
