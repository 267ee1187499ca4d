//! [`Connections`]: the store's writer task and reader connections, which every port
//! implementation of the store holds a clone of.

use std::sync::Arc;

use anyhow::Context;
use cmp_application::StoreError;
use cmp_domain::PartnerId;
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::partner_cache::PartnerCache;
use crate::read_slots::{ReadGuard, ReadSlots};
use crate::writer::{WriteFuture, Writer};

/// The store's writer and reader pool, cloned into each port implementation (a clone shares
/// them).
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    /// The one task every write runs on.
    pub(crate) writer: Writer,
    /// Connections for reads only; `query_only` makes any write on them fail. The operators'
    /// views and the metrics read here.
    pub(crate) reader: SqlitePool,
    /// The request path's reader connections, the same kind without a pool's extra command per
    /// read (`read_slots.rs`).
    pub(crate) slots: ReadSlots,
    /// The partners lately read by id; the writes that change a partner forget it.
    pub(crate) partners: Arc<PartnerCache>,
}

impl Connections {
    /// A reader connection of the request path: one statement on it is one snapshot; several
    /// need a transaction (`Connection::begin`).
    pub(crate) async fn read(&self) -> anyhow::Result<ReadGuard> {
        self.slots.take().await
    }

    /// Runs `write` on the writer, for a write that may change what a read of partner `id`
    /// returns: once its transaction has committed (or failed), the writer task forgets the
    /// partner in the cache, before anyone hears back. Done by the writer task, so a caller that
    /// goes away meanwhile (a client hanging up) cannot leave the cache holding the version the
    /// write replaced.
    pub(crate) async fn write_partner<T, F>(&self, id: PartnerId, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        let partners = self.partners.clone();
        self.writer
            .write_then(write, move || partners.forget(id))
            .await
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
