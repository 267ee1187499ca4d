//! [`SqlitePartnerRepository`]: the [`PartnerRepository`] port over SQLite.
//!
//! Every write runs in one `BEGIN IMMEDIATE` transaction on the single writer connection.
//! `IMMEDIATE` takes the write lock at `BEGIN`, where `busy_timeout` can wait for it. The
//! default `DEFERRED` starts as a reader and upgrades at its first write; if another connection
//! (another process, an operator's shell) wrote in between, that upgrade fails at once with
//! `SQLITE_BUSY`, half-way through the transaction, and no timeout helps.
//! Reads run in a plain (deferred) transaction on a reader connection, which gives them one
//! consistent WAL snapshot across their statements.

use anyhow::{Context, anyhow};
use cmp_application::{
    AttemptFinish, AuditEntry, DeliveryState, NewPartnerWrite, OutboxTransition, PartnerRepository,
    StoreError,
};
use cmp_application::query::{Filter, ListQuery, PartnerPage};
use cmp_application::{ChangeQueued, ChangeWrite};
use cmp_domain::{Partner, PartnerId, TenantId};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use uuid::Uuid;

use crate::rows::{AssignmentRow, AuditRow, PartnerRow};

/// How every write transaction starts; see the module documentation.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Partners, their outbox rows, attempts and audit entries in SQLite. Made by
/// [`SqliteStore::partner_repository`](crate::SqliteStore::partner_repository); cheap to
/// clone, since it only holds the store's two pools.
#[derive(Debug, Clone)]
pub struct SqlitePartnerRepository {
    /// The store's single writer connection; every write transaction runs on it.
    writer: SqlitePool,
    /// The store's reader connections.
    reader: SqlitePool,
}

impl SqlitePartnerRepository {
    pub(crate) fn new(writer: SqlitePool, reader: SqlitePool) -> Self {
        Self { writer, reader }
    }

    /// A write transaction on the single writer, holding the write lock from `BEGIN` on.
    pub(crate) async fn begin_write(&self) -> anyhow::Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with(BEGIN_WRITE)
            .await
            .context("beginning a write transaction")
    }

    /// The reader pool, for single-statement reads that need no transaction.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// A read transaction on a reader connection: one consistent snapshot for its statements.
    pub(crate) async fn begin_read(&self) -> anyhow::Result<Transaction<'static, Sqlite>> {
        self.reader
            .begin()
            .await
            .context("beginning a read transaction")
    }
}

#[async_trait::async_trait]
impl PartnerRepository for SqlitePartnerRepository {
    async fn list_partners(&self, tenant_id: TenantId, query: &ListQuery) -> Result<PartnerPage, StoreError> {
        self.list(tenant_id, query).await
    }

    async fn count_partners(&self, tenant_id: TenantId, filter: Option<Filter>) -> Result<u64, StoreError> {
        self.count(tenant_id, filter).await
    }

    async fn update_partner(&self, partner: &Partner, write: &ChangeWrite) -> Result<ChangeQueued, StoreError> {
        self.update(partner, write).await
    }

    async fn delete_partner(&self, id: PartnerId, write: &ChangeWrite) -> Result<ChangeQueued, StoreError> {
        self.delete(id, write).await
    }

    #[tracing::instrument(name = "sqlite.insert_new_partner", skip_all, fields(partner.id = %partner.id(), outbox.id = %write.outbox_id))]
    async fn insert_new_partner(
        &self,
        partner: &Partner,
        write: &NewPartnerWrite,
    ) -> Result<(), StoreError> {
        let row = PartnerRow::from_domain(partner, write.tenant_id);
        let now = write.now.unix_ticks();
        let mut tx = self.begin_write().await?;

        let inserted = sqlx::query(
            "INSERT INTO partners (id, tenant_id, display_name, name_key, partner_state, \
             last_heartbeat, mac_os_onboarded, windows_onboarded, android_onboarded, \
             ios_onboarded, linux_onboarded, graph_id, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        )
        .bind(&row.id)
        .bind(&row.tenant_id)
        .bind(&row.display_name)
        .bind(&row.name_key)
        .bind(&row.partner_state)
        .bind(row.last_heartbeat)
        .bind(row.mac_os_onboarded)
        .bind(row.windows_onboarded)
        .bind(row.android_onboarded)
        .bind(row.ios_onboarded)
        .bind(row.linux_onboarded)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(error) = inserted {
            let unique = matches!(&error, sqlx::Error::Database(db) if db.is_unique_violation());
            // Two unique constraints guard this table: the primary key and the natural key.
            // `is_unique_violation()` cannot say which fired (SQLite reports no constraint
            // name to sqlx), so look: only a taken natural key is the caller's duplicate; an
            // id collision is our fault and stays Unexpected.
            if unique && name_key_taken(&mut tx, &row).await? {
                tx.rollback()
                    .await
                    .context("rolling back after a duplicate display name")?;
                return Err(StoreError::DuplicateDisplayName {
                    display_name: row.display_name,
                });
            }
            return Err(anyhow::Error::new(error)
                .context("inserting the partner row")
                .into());
        }

        for assignment in AssignmentRow::all_of(partner) {
            sqlx::query(
                "INSERT INTO partner_assignments (partner_id, platform, position, target_type, \
                 filter_type, filter_id, group_id, collection_id, scope_tag_target_type, \
                 entra_object_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&row.id)
            .bind(&assignment.platform)
            .bind(assignment.position)
            .bind(&assignment.target_type)
            .bind(&assignment.filter_type)
            .bind(&assignment.filter_id)
            .bind(&assignment.group_id)
            .bind(&assignment.collection_id)
            .bind(&assignment.scope_tag_target_type)
            .bind(&assignment.entra_object_id)
            .execute(&mut *tx)
            .await
            .context("inserting an assignment row")?;
        }

        let outbox_id = write.outbox_id.hyphenated().to_string();
        let client_request_id = write.client_request_id.hyphenated().to_string();
        // The row is born in flight and leased to the creating request, which is about to make
        // attempt 1 inline, so no dispatcher can claim it meanwhile (graph-client-behaviour
        // §3.1). `next_attempt_at` only matters once the row is back with the dispatcher.
        sqlx::query(
            "INSERT INTO outbox (id, tenant_id, partner_id, operation, natural_key, state, \
             attempts, next_attempt_at, lease_owner, lease_expires_at, last_status, \
             last_error_code, last_client_request_id, graph_id, created_at, updated_at, \
             first_attempt_at) \
             VALUES (?, ?, ?, 'create', ?, ?, 1, ?, ?, ?, NULL, NULL, ?, NULL, ?, ?, ?)",
        )
        .bind(&outbox_id)
        .bind(&row.tenant_id)
        .bind(&row.id)
        .bind(&row.name_key)
        .bind(DeliveryState::InFlight.as_str())
        .bind(now)
        .bind(&write.lease_owner)
        .bind(write.lease_expires_at.unix_ticks())
        .bind(&client_request_id)
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("inserting the outbox row")?;

        // Committed before the HTTP call, so a crash during the call leaves evidence of it.
        sqlx::query(
            "INSERT INTO delivery_attempts (outbox_id, attempt, client_request_id, started_at) \
             VALUES (?, 1, ?, ?)",
        )
        .bind(&outbox_id)
        .bind(&client_request_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("inserting the first delivery attempt row")?;

        insert_audit(&mut tx, &write.audit).await?;

        tx.commit().await.context("committing the new partner")?;
        Ok(())
    }

    #[tracing::instrument(name = "sqlite.get_partner", skip_all, fields(partner.id = %id))]
    async fn get_partner(&self, id: PartnerId) -> Result<Option<Partner>, StoreError> {
        // One read transaction, so the partner and its assignments come from one snapshot
        // even when an undo commits between the two statements.
        let mut tx = self.begin_read().await?;
        let partner = read_partner(&mut tx, &id.to_string()).await?;
        tx.commit().await.context("ending the read transaction")?;
        Ok(partner)
    }

    #[tracing::instrument(name = "sqlite.finish_attempt", skip_all, fields(partner.id = %finish.partner_id, outbox.id = %finish.outbox_id, outcome = finish.outcome_label))]
    async fn finish_attempt(&self, finish: &AttemptFinish) -> Result<(), StoreError> {
        let outbox_id = finish.outbox_id.hyphenated().to_string();
        let partner_id = finish.partner_id.to_string();
        let finished_at = finish.finished_at.unix_ticks();
        let status = finish.meta.status.map(i64::from);
        let error_code = finish.meta.error_code.as_deref();
        let mut tx = self.begin_write().await?;

        // The attempt being finished is the latest one of the row, and it must be the one
        // started with this client-request-id: if a dispatcher took the row over after the
        // lease lapsed, this late finish must not overwrite the newer attempt's record nor
        // move the row it now holds.
        let attempt = sqlx::query(
            "UPDATE delivery_attempts SET finished_at = ?, http_status = ?, graph_error_code = ?, \
             graph_request_id = ?, outcome = ? \
             WHERE outbox_id = ? AND client_request_id = ? AND attempt = \
             (SELECT MAX(attempt) FROM delivery_attempts WHERE outbox_id = ?)",
        )
        .bind(finished_at)
        .bind(status)
        .bind(error_code)
        .bind(finish.meta.request_id.as_deref())
        .bind(finish.outcome_label)
        .bind(&outbox_id)
        .bind(finish.client_request_id.hyphenated().to_string())
        .bind(&outbox_id)
        .execute(&mut *tx)
        .await
        .context("recording the end of the delivery attempt")?;

        let moved: Option<String> = match &finish.transition {
            OutboxTransition::Delivered { graph_id } => sqlx::query_scalar(
                "UPDATE outbox SET state = 'delivered', graph_id = ?, lease_owner = NULL, \
                 lease_expires_at = NULL, dead_reason = NULL, last_status = ?, \
                 last_error_code = ?, updated_at = ? WHERE id = ? RETURNING partner_id",
            )
            .bind(graph_id)
            .bind(status)
            .bind(error_code)
            .bind(finished_at)
            .bind(&outbox_id)
            .fetch_optional(&mut *tx)
            .await
            .context("marking the outbox row delivered")?,
            OutboxTransition::Retry {
                state,
                next_attempt_at,
            } => sqlx::query_scalar(
                "UPDATE outbox SET state = ?, next_attempt_at = ?, lease_owner = NULL, \
                 lease_expires_at = NULL, dead_reason = NULL, last_status = ?, \
                 last_error_code = ?, updated_at = ? WHERE id = ? RETURNING partner_id",
            )
            .bind(retry_state(*state)?)
            .bind(next_attempt_at.unix_ticks())
            .bind(status)
            .bind(error_code)
            .bind(finished_at)
            .bind(&outbox_id)
            .fetch_optional(&mut *tx)
            .await
            .context("returning the outbox row to the dispatcher")?,
            // `next_attempt_at` stays as it was: a dead row is never due until an operator
            // re-queues it, which sets it afresh.
            OutboxTransition::Dead { reason } => sqlx::query_scalar(
                "UPDATE outbox SET state = 'dead', dead_reason = ?, lease_owner = NULL, \
                 lease_expires_at = NULL, last_status = ?, last_error_code = ?, updated_at = ? \
                 WHERE id = ? RETURNING partner_id",
            )
            .bind(reason)
            .bind(status)
            .bind(error_code)
            .bind(finished_at)
            .bind(&outbox_id)
            .fetch_optional(&mut *tx)
            .await
            .context("dead-lettering the outbox row")?,
        };
        // Returning early drops `tx`, which rolls the transaction back.
        let Some(row_partner_id) = moved else {
            return Err(anyhow!("outbox row {outbox_id} does not exist").into());
        };
        if row_partner_id != partner_id {
            return Err(anyhow!(
                "outbox row {outbox_id} delivers partner {row_partner_id}, not {partner_id}"
            )
            .into());
        }
        if attempt.rows_affected() != 1 {
            return Err(anyhow!(
                "the latest attempt of outbox row {outbox_id} was not started with \
                 client-request-id {}",
                finish.client_request_id
            )
            .into());
        }

        if let OutboxTransition::Delivered { graph_id } = &finish.transition {
            sqlx::query("UPDATE partners SET graph_id = ?, updated_at = ? WHERE id = ?")
                .bind(graph_id)
                .bind(finished_at)
                .bind(&partner_id)
                .execute(&mut *tx)
                .await
                .context("storing Graph's id on the partner")?;
        }

        tx.commit()
            .await
            .context("committing the end of the delivery attempt")?;
        Ok(())
    }

    #[tracing::instrument(name = "sqlite.undo_rejected_create", skip_all, fields(partner.id = %partner_id, outbox.id = %outbox_id))]
    async fn undo_rejected_create(
        &self,
        partner_id: PartnerId,
        outbox_id: Uuid,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let partner_id = partner_id.to_string();
        let mut tx = self.begin_write().await?;

        // The outbox row first: its foreign key forbids deleting a partner it still delivers.
        // Its attempts go with it (ON DELETE CASCADE). Matching the partner too means a wrong
        // pairing deletes nothing, and the partner delete below then fails on that key.
        sqlx::query("DELETE FROM outbox WHERE id = ? AND partner_id = ?")
            .bind(outbox_id.hyphenated().to_string())
            .bind(&partner_id)
            .execute(&mut *tx)
            .await
            .context("deleting the outbox row")?;
        // The assignments go with the partner (ON DELETE CASCADE).
        sqlx::query("DELETE FROM partners WHERE id = ?")
            .bind(&partner_id)
            .execute(&mut *tx)
            .await
            .context("deleting the partner row")?;
        insert_audit(&mut tx, audit).await?;

        tx.commit().await.context("committing the undone create")?;
        Ok(())
    }
}

/// Reads the partner `id` (its row and assignments) on `conn`, inside the caller's transaction:
/// [`PartnerRepository::get_partner`] on a reader, the dispatcher's claim on the writer.
///
/// # Errors
/// When a statement fails or the stored rows no longer parse into a [`Partner`].
pub(crate) async fn read_partner(
    conn: &mut SqliteConnection,
    id: &str,
) -> anyhow::Result<Option<Partner>> {
    let row: Option<PartnerRow> = sqlx::query_as(
        "SELECT id, tenant_id, display_name, name_key, partner_state, last_heartbeat, \
         mac_os_onboarded, windows_onboarded, android_onboarded, ios_onboarded, \
         linux_onboarded FROM partners WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("reading the partner row")?;
    let Some(row) = row else {
        return Ok(None);
    };

    let assignments: Vec<AssignmentRow> = sqlx::query_as(
        "SELECT platform, position, target_type, filter_type, filter_id, group_id, \
         collection_id, scope_tag_target_type, entra_object_id \
         FROM partner_assignments WHERE partner_id = ? ORDER BY platform, position",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .context("reading the assignment rows")?;

    let partner = row
        .into_domain(assignments)
        .with_context(|| format!("stored partner {id} no longer parses"))?;
    Ok(Some(partner))
}

/// Whether another partner of the row's tenant already has its natural key. Runs inside the
/// failed insert's transaction: SQLite aborts only the failing statement, not the transaction.
async fn name_key_taken(
    tx: &mut Transaction<'static, Sqlite>,
    row: &PartnerRow,
) -> anyhow::Result<bool> {
    let taken: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM partners WHERE tenant_id = ? AND name_key = ?")
            .bind(&row.tenant_id)
            .bind(&row.name_key)
            .fetch_optional(&mut **tx)
            .await
            .context("looking for a partner with the same natural key")?;
    Ok(taken.is_some())
}

/// Appends an entry to the audit log.
async fn insert_audit(
    tx: &mut Transaction<'static, Sqlite>,
    entry: &AuditEntry,
) -> anyhow::Result<()> {
    let row = AuditRow::from_domain(entry);
    sqlx::query(
        "INSERT INTO audit_log (id, partner_id, action, request_id, caller, at, detail) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&row.id)
    .bind(&row.partner_id)
    .bind(row.action)
    .bind(&row.request_id)
    .bind(&row.caller)
    .bind(row.at)
    .bind(&row.detail)
    .execute(&mut **tx)
    .await
    .context("inserting the audit entry")?;
    Ok(())
}

/// The state a retry (or a hand-back) moves a row to: the port allows only `pending` and
/// `unknown`.
pub(crate) fn retry_state(state: DeliveryState) -> anyhow::Result<&'static str> {
    match state {
        DeliveryState::Pending | DeliveryState::Unknown => Ok(state.as_str()),
        DeliveryState::InFlight | DeliveryState::Delivered | DeliveryState::Dead => Err(anyhow!(
            "a retry moves an outbox row to pending or unknown, not {}",
            state.as_str()
        )),
    }
}

#[cfg(test)]
mod tests;
