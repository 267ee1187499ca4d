//! Listing and counting partners: the typed [`ListQuery`] of the application translated into
//! one `SELECT` built with [`QueryBuilder`], every value of the filter and the cursor bound,
//! never pasted into the SQL text.
//!
//! How each property compares (the same in `$filter`, `$orderby` and the keyset cursor):
//!
//! | property | column | compared as |
//! |---|---|---|
//! | `displayName` | `name_key` | its `NaturalKey`: case-insensitive, as uniqueness is |
//! | `partnerState` | `partner_state_order` | the enum's declared order, `unknown` 0 to `unresponsive` 5 |
//! | `lastHeartbeatDateTime` | `last_heartbeat` | ticks |
//! | `<platform>Onboarded` | `<platform>_onboarded` | 0 / 1 |
//! | `id` | `id` | lowercase hyphenated GUID text, which sorts as the GUIDs do |
//!
//! Every column is `NOT NULL` on a live partner, so `ne` and `not` need no three-valued logic.
//!
//! A page is a keyset page: after a cursor it starts with a range condition on the sort keys,
//! which one of the partial indexes of the migration serves in order, and it reads `page_size + 1`
//! rows to learn whether another page follows. Its cost does not grow with its depth (see the
//! plan test and `benches/list_page.rs`).

use anyhow::Context;
use cmp_application::StoreError;
use cmp_application::query::{Filter, ListQuery, PartnerPage};
use cmp_domain::TenantId;
use sqlx::{Connection, Sqlite, SqliteConnection};

mod select;

use select::*;

/// The database the shared listing SQL of [`select`] is built for.
type Db = Sqlite;
/// A connection to [`Db`].
type DbConnection = SqliteConnection;

use crate::SqlitePartnerStore;

/// How many partner ids one `IN (...)` list binds when a page's assignments are read. A page
/// holds at most 999 partners, so this is one statement in practice; the bound only keeps an
/// oversized page below SQLite's limit of 32,766 variables per statement.
const IDS_PER_ASSIGNMENT_READ: usize = 10_000;

impl SqlitePartnerStore {
    /// [`PartnerStore::list_partners`](cmp_application::PartnerStore::list_partners).
    pub(crate) async fn list(
        &self,
        tenant: TenantId,
        query: &ListQuery,
    ) -> Result<PartnerPage, StoreError> {
        // One read transaction: the page, its assignments and the count come from one snapshot.
        let mut conn = self.connections.read().await?;
        let mut tx = conn.begin().await.context("beginning a read transaction")?;
        let page = read_page(&mut tx, tenant, query).await?;
        tx.commit().await.context("ending the read transaction")?;
        Ok(page)
    }

    /// [`PartnerStore::count_partners`](cmp_application::PartnerStore::count_partners).
    pub(crate) async fn count(
        &self,
        tenant: TenantId,
        filter: Option<&Filter>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.connections.read().await?;
        count_on(&mut conn, tenant, filter).await
    }
}

#[cfg(test)]
mod tests;
