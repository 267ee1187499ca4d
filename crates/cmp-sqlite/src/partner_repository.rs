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
use cmp_application::query::{Filter, ListQuery, PartnerPage};
use cmp_application::{
    AttemptFinish, AuditAction, AuditEntry, ChangeQueued, ChangeWrite, DeliveryState,
    NewPartnerWrite, Operation, OutboxTransition, PartnerRepository, StoreError,
};
use cmp_domain::{Partner, PartnerId, TenantId};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Transaction};
use uuid::Uuid;

use crate::rows::{AssignmentRow, AuditRow, PartnerRow, parse_operation, partner_row_columns};

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

/// Whether a read sees partners that callers deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// Callers' view: a deleted partner is gone.
    Hidden,
    /// The dispatcher's view: a `delete` row still renders from its partner.
    Included,
}

#[async_trait::async_trait]
impl PartnerRepository for SqlitePartnerRepository {
    // The four methods of issue 5 are implemented in `partner_listing.rs` and
    // `partner_changes.rs`.

    #[tracing::instrument(name = "sqlite.list_partners", skip_all, fields(tenant.id = %tenant_id, page_size = query.page_size))]
    async fn list_partners(
        &self,
        tenant_id: TenantId,
        query: &ListQuery,
    ) -> Result<PartnerPage, StoreError> {
        self.list(tenant_id, query).await
    }

    #[tracing::instrument(name = "sqlite.count_partners", skip_all, fields(tenant.id = %tenant_id))]
    async fn count_partners(
        &self,
        tenant_id: TenantId,
        filter: Option<Filter>,
    ) -> Result<u64, StoreError> {
        self.count(tenant_id, filter.as_ref()).await
    }

    #[tracing::instrument(name = "sqlite.update_partner", skip_all, fields(partner.id = %partner.id(), outbox.id = %write.outbox_id))]
    async fn update_partner(
        &self,
        partner: &Partner,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError> {
        self.update(partner, write).await
    }

    #[tracing::instrument(name = "sqlite.delete_partner", skip_all, fields(partner.id = %id, outbox.id = %write.outbox_id))]
    async fn delete_partner(
        &self,
        id: PartnerId,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError> {
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
            if unique && name_key_taken(&mut tx, &row, None).await? {
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

        insert_assignments(&mut tx, partner).await?;

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
        let partner = read_partner(&mut tx, &id.to_string(), Deleted::Hidden).await?;
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

        let moved: Option<(String, String)> = match &finish.transition {
            OutboxTransition::Delivered { graph_id } => sqlx::query_as(
                "UPDATE outbox SET state = 'delivered', graph_id = ?, lease_owner = NULL, \
                 lease_expires_at = NULL, dead_reason = NULL, last_status = ?, \
                 last_error_code = ?, updated_at = ? WHERE id = ? RETURNING partner_id, operation",
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
            } => sqlx::query_as(
                "UPDATE outbox SET state = ?, next_attempt_at = ?, lease_owner = NULL, \
                 lease_expires_at = NULL, dead_reason = NULL, last_status = ?, \
                 last_error_code = ?, updated_at = ? WHERE id = ? RETURNING partner_id, operation",
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
            OutboxTransition::Dead { reason } => sqlx::query_as(
                "UPDATE outbox SET state = 'dead', dead_reason = ?, lease_owner = NULL, \
                 lease_expires_at = NULL, last_status = ?, last_error_code = ?, updated_at = ? \
                 WHERE id = ? RETURNING partner_id, operation",
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
        let Some((row_partner_id, operation)) = moved else {
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
            match parse_operation(&operation)? {
                Operation::Create | Operation::Update => {
                    sqlx::query("UPDATE partners SET graph_id = ?, updated_at = ? WHERE id = ?")
                        .bind(graph_id)
                        .bind(finished_at)
                        .bind(&partner_id)
                        .execute(&mut *tx)
                        .await
                        .context("storing Graph's id on the partner")?;
                }
                // Graph confirmed the delete: the display name is free again. The tombstone
                // keeps the Graph id it had: a delete of an object Graph never held is reported
                // with a placeholder id, which must not overwrite anything.
                Operation::Delete => release_name(&mut tx, finish).await?,
            }
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
        let undone = sqlx::query("DELETE FROM outbox WHERE id = ? AND partner_id = ?")
            .bind(outbox_id.hyphenated().to_string())
            .bind(&partner_id)
            .execute(&mut *tx)
            .await
            .context("deleting the outbox row")?
            .rows_affected();
        if undone == 1 {
            // An update or delete that arrived while the create was in flight queued a row
            // behind it. The claim never runs a partner's younger row before its create, so
            // those rows never reached Graph, and with the create refused they have nothing
            // left to change there.
            sqlx::query("DELETE FROM outbox WHERE partner_id = ? AND operation <> 'create'")
                .bind(&partner_id)
                .execute(&mut *tx)
                .await
                .context("deleting the rows queued behind the refused create")?;
        }
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
/// [`PartnerRepository::get_partner`] on a reader, where a deleted partner is `None`
/// ([`Deleted::Hidden`]); the dispatcher's claim on the writer, which still reads it
/// ([`Deleted::Included`]).
///
/// # Errors
/// When a statement fails or the stored rows no longer parse into a [`Partner`].
pub(crate) async fn read_partner(
    conn: &mut SqliteConnection,
    id: &str,
    deleted: Deleted,
) -> anyhow::Result<Option<Partner>> {
    let statement = match deleted {
        Deleted::Hidden => concat!(
            "SELECT ",
            partner_row_columns!(),
            " FROM partners WHERE id = ? AND deleted_at IS NULL"
        ),
        Deleted::Included => concat!(
            "SELECT ",
            partner_row_columns!(),
            " FROM partners WHERE id = ?"
        ),
    };
    let row: Option<PartnerRow> = sqlx::query_as(statement)
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

/// Whether a partner of the row's tenant other than `except` (the row's own partner, on an
/// update) already has its natural key. Runs inside the failed statement's transaction: SQLite
/// aborts only the failing statement, not the transaction. Deleted partners count: their name
/// stays reserved until Graph confirms the delete.
pub(crate) async fn name_key_taken(
    tx: &mut Transaction<'static, Sqlite>,
    row: &PartnerRow,
    except: Option<&str>,
) -> anyhow::Result<bool> {
    let taken: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM partners WHERE tenant_id = ? AND name_key = ? AND id IS NOT ?",
    )
    .bind(&row.tenant_id)
    .bind(&row.name_key)
    .bind(except)
    .fetch_optional(&mut **tx)
    .await
    .context("looking for a partner with the same natural key")?;
    Ok(taken.is_some())
}

/// How many assignment rows one multi-row `INSERT` carries: 10 bound values each, so a batch
/// stays far below SQLite's limit of 32,766 variables per statement.
const ASSIGNMENTS_PER_INSERT: usize = 500;

/// Inserts the assignment rows of `partner`, each platform's list numbered from 0, in a few
/// multi-row statements rather than one per assignment.
pub(crate) async fn insert_assignments(
    tx: &mut Transaction<'static, Sqlite>,
    partner: &Partner,
) -> anyhow::Result<()> {
    let partner_id = partner.id().to_string();
    let rows = AssignmentRow::all_of(partner);
    for batch in rows.chunks(ASSIGNMENTS_PER_INSERT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO partner_assignments (partner_id, platform, position, target_type, \
             filter_type, filter_id, group_id, collection_id, scope_tag_target_type, \
             entra_object_id) ",
        );
        insert.push_values(batch, |mut values, assignment| {
            values
                .push_bind(partner_id.clone())
                .push_bind(assignment.platform.clone())
                .push_bind(assignment.position)
                .push_bind(assignment.target_type.clone())
                .push_bind(assignment.filter_type.clone())
                .push_bind(assignment.filter_id.clone())
                .push_bind(assignment.group_id.clone())
                .push_bind(assignment.collection_id.clone())
                .push_bind(assignment.scope_tag_target_type.clone())
                .push_bind(assignment.entra_object_id.clone());
        });
        insert
            .build()
            .execute(&mut **tx)
            .await
            .context("inserting assignment rows")?;
    }
    Ok(())
}

/// Releases the display name of the partner whose `delete` row `finish` delivered, and records
/// Graph's confirmation in the audit log, inside `finish_attempt`'s transaction.
///
/// The entry's id is the delete row's own id: a row is delivered once, so the id is unique, and
/// it ties the entry to the row's attempts. The store serves no request of its own, hence the
/// empty request id and the `dispatcher` caller.
async fn release_name(
    tx: &mut Transaction<'static, Sqlite>,
    finish: &AttemptFinish,
) -> anyhow::Result<()> {
    let partner_id = finish.partner_id.to_string();
    let released: Option<String> = sqlx::query_scalar(
        "UPDATE partners SET name_key = NULL, updated_at = ? \
         WHERE id = ? AND deleted_at IS NOT NULL RETURNING display_name",
    )
    .bind(finish.finished_at.unix_ticks())
    .bind(&partner_id)
    .fetch_optional(&mut **tx)
    .await
    .context("releasing the display name of the deleted partner")?;
    let Some(display_name) = released else {
        return Err(anyhow!(
            "outbox row {} deletes partner {partner_id}, which is not deleted",
            finish.outbox_id
        ));
    };
    let entry = AuditEntry {
        id: finish.outbox_id,
        partner_id: finish.partner_id,
        action: AuditAction::DeletedInGraph,
        request_id: String::new(),
        caller: "dispatcher".to_owned(),
        at: finish.finished_at,
        detail: format!(
            "Microsoft Graph confirmed the delete ({}; graph request-id {}, client-request-id {}); \
             the display name '{display_name}' is free again",
            finish.outcome_label,
            finish.meta.request_id.as_deref().unwrap_or("none"),
            finish.client_request_id,
        ),
    };
    insert_audit(tx, &entry).await
}

/// Appends an entry to the audit log.
pub(crate) async fn insert_audit(
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
