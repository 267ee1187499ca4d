//! Listing and counting partners in PostgreSQL, as the SQLite store lists them: the typed [`ListQuery`] of the application translated into
//! one `SELECT` built with [`QueryBuilder`], every value of the filter and the cursor bound,
//! never pasted into the SQL text.
//!
//! How each property compares (the same in `$filter`, `$orderby` and the keyset cursor):
//!
//! | property | column | compared as |
//! |---|---|---|
//! | `displayName` | `name_key` | the trimmed, lower-cased name: case-insensitive, as uniqueness is |
//! | `partnerState` | `partner_state_order` | the enum's declared order, `unknown` 0 to `unresponsive` 5 |
//! | `lastHeartbeatDateTime` | `last_heartbeat` | ticks |
//! | `<platform>Onboarded` | `<platform>_onboarded` | boolean |
//! | `id` | `id` | lowercase hyphenated GUID text, which sorts as the GUIDs do |
//!
//! Every column is `NOT NULL` on a live partner, so `ne` and `not` need no three-valued logic.
//!
//! A page is a keyset page: after a cursor it starts with a range condition on the sort keys,
//! which one of the partial indexes of the migration serves in order, and it reads `page_size + 1`
//! rows to learn whether another page follows. Its cost does not grow with its depth.

use anyhow::Context;
use cmp_application::StoreError;
use cmp_application::query::{Filter, ListQuery, PartnerPage};
use cmp_domain::TenantId;
use sqlx::{PgConnection, Postgres};

// The page's SQL is the SQLite store's, which PostgreSQL reads the same way.
#[path = "../../cmp-sqlite/src/partner_listing/select.rs"]
mod select;

use select::*;

/// The database the shared listing SQL of [`select`] is built for.
type Db = Postgres;
/// A connection to [`Db`].
type DbConnection = PgConnection;

use crate::PostgresPartnerStore;

/// How many partner ids one `IN (...)` list binds when a page's assignments are read. A page
/// holds at most 999 partners, so this is one statement in practice; the bound only keeps an
/// oversized page below PostgreSQL's limit of 65,535 parameters per statement.
const IDS_PER_ASSIGNMENT_READ: usize = 10_000;

impl PostgresPartnerStore {
    /// [`PartnerStore::list_partners`](cmp_application::PartnerStore::list_partners).
    pub(crate) async fn list(
        &self,
        tenant: TenantId,
        query: &ListQuery,
    ) -> Result<PartnerPage, StoreError> {
        // One read transaction: the page, its assignments and the count come from one snapshot.
        let mut tx = self
            .pool
            .begin()
            .await
            .context("beginning a read transaction")?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .context("making the read consistent")?;
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
        let mut conn = self
            .pool
            .acquire()
            .await
            .context("acquiring a connection")?;
        count_on(&mut conn, tenant, filter).await
    }
}
