//! [`Connections`]: the store's writer task and reader connections, which every port
//! implementation of the store holds a clone of.

use anyhow::Context;
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::read_slots::{ReadGuard, ReadSlots};
use crate::writer::Writer;

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
}

impl Connections {
    /// A reader connection of the request path: one statement on it is one snapshot; several
    /// need a transaction (`Connection::begin`).
    pub(crate) async fn read(&self) -> anyhow::Result<ReadGuard> {
        self.slots.take().await
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
