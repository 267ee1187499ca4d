//! The [`DeliveryQueue`] port over SQLite, on [`SqlitePartnerRepository`]: lease recovery,
//! the dispatcher's claim, attempt starts, and the operators' views of the outbox
//! (graph-client-behaviour §3.2 to §3.5).
//!
//! As in the repository, every write is one `BEGIN IMMEDIATE` transaction on the single writer
//! connection, and every multi-statement read is one transaction on a reader. The claim in
//! particular relies on this: SQLite has no `SKIP LOCKED`, but its claim selects and updates
//! while holding the database's only write lock, so two claims (two dispatcher tasks, or two
//! processes) run one after the other and the second no longer sees what the first took.

use anyhow::{Context, anyhow};
use cmp_application::{
    AttemptStart, AuditRecord, ClaimedDelivery, DeliveryQueue, DeliveryState, OutboxCounts,
    PartnerHistory, StoreError, SyncState,
};
use cmp_domain::{PartnerId, TenantId, Timestamp};
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use crate::partner_repository::{Deleted, SqlitePartnerRepository, read_partner, retry_state};
use crate::rows::{AttemptRow, ClaimRow, OutboxRow, parse_delivery_state};

/// The columns of [`OutboxRow`], as a literal so that `concat!` can build `&'static str`
/// statements from it (sqlx 0.9 takes no other kind of SQL text without a builder).
macro_rules! outbox_row_columns {
    () => {
        "id, partner_id, operation, natural_key, state, attempts, next_attempt_at, last_status, \
         last_error_code, last_client_request_id, graph_id, dead_reason, created_at, updated_at, \
         first_attempt_at"
    };
}

/// The claim's selection; binds: tenant, now, limit.
///
/// Jobs for one natural key and jobs for one partner run in the order they were written
/// (issue 5: a rename, a delete and a create reusing the freed name must reach Graph in that
/// order). So a row is claimed only when it is the oldest *live* row (`pending`, `unknown` or
/// `in_flight`) of its natural key and of its partner, and is itself waiting and due:
///
/// - Only `pending` and `unknown` rows of the tenant whose time has come; among them the oldest
///   due first (then oldest written, then insertion order, so that the order is total).
/// - Not a row that has an older live row of the same natural key in the tenant, nor of the same
///   partner: a younger row never jumps ahead, even when the older one is not due yet (it waits
///   out its back-off) or is in flight. "Older" is `(created_at, rowid)`: the write time, then
///   the insertion order for rows written at the same instant.
/// - Not a row whose natural key or partner has a row `in_flight` at all, whatever its age: per
///   key and per partner one attempt at a time (§3.2). An inline create is born in flight and
///   may be younger than a waiting row that held its name before.
///
/// Natural keys are unique per tenant only, so a row of another tenant never blocks. `dead` and
/// `delivered` rows block nothing: a dead row waits for an operator, and holding every later
/// change of its partner back until then would hide them all behind one failure.
///
/// Since only the oldest live row of a key can qualify, one claim never holds two rows of one
/// key or of one partner either.
///
/// The `WHERE` walks `outbox_tenant_state_next_attempt_at` (two ranges, one per state); each
/// `NOT EXISTS` probes an index that holds every column it tests
/// (`outbox_tenant_natural_key_state_created_at`, `outbox_partner_id_state_created_at`), so
/// delivered and dead rows, which accumulate, are never read.
const CLAIM_CANDIDATES: &str = "SELECT candidate.id, candidate.partner_id, \
     candidate.natural_key, candidate.state, candidate.attempts, candidate.first_attempt_at, \
     candidate.created_at, candidate.operation, candidate.next_attempt_at, \
     (SELECT graph_id FROM partners WHERE partners.id = candidate.partner_id) \
      AS partner_graph_id, \
     (SELECT deleted_at IS NOT NULL FROM partners WHERE partners.id = candidate.partner_id) \
      AS partner_deleted, \
     (SELECT COUNT(*) FROM delivery_attempts AS made WHERE made.outbox_id = candidate.id \
      AND made.started_at >= COALESCE(candidate.first_attempt_at, candidate.created_at)) \
      AS attempts_in_window \
     FROM outbox AS candidate \
     WHERE candidate.tenant_id = ? AND candidate.state IN ('pending', 'unknown') \
     AND candidate.next_attempt_at <= ? \
     AND NOT EXISTS (\
         SELECT 1 FROM outbox AS ahead_by_key \
         WHERE ahead_by_key.tenant_id = candidate.tenant_id \
         AND ahead_by_key.natural_key = candidate.natural_key \
         AND ahead_by_key.state IN ('pending', 'unknown', 'in_flight') \
         AND (ahead_by_key.state = 'in_flight' \
              OR ahead_by_key.created_at < candidate.created_at \
              OR (ahead_by_key.created_at = candidate.created_at \
                  AND ahead_by_key.rowid < candidate.rowid))\
     ) \
     AND NOT EXISTS (\
         SELECT 1 FROM outbox AS ahead_for_partner \
         WHERE ahead_for_partner.partner_id = candidate.partner_id \
         AND ahead_for_partner.state IN ('pending', 'unknown', 'in_flight') \
         AND (ahead_for_partner.state = 'in_flight' \
              OR ahead_for_partner.created_at < candidate.created_at \
              OR (ahead_for_partner.created_at = candidate.created_at \
                  AND ahead_for_partner.rowid < candidate.rowid))\
     ) \
     ORDER BY candidate.next_attempt_at, candidate.created_at, candidate.rowid \
     LIMIT ?";

#[async_trait::async_trait]
impl DeliveryQueue for SqlitePartnerRepository {
    #[tracing::instrument(name = "sqlite.recover_expired_leases", skip_all)]
    async fn recover_expired_leases(&self, now: Timestamp) -> Result<u64, StoreError> {
        let now = now.unix_ticks();
        let mut tx = self.begin_write().await?;

        // `unknown`, never `pending`: the holder may have sent the POST before it died, so the
        // next attempt must reconcile with Graph first (§3.2, §3.5).
        let recovered = sqlx::query(
            "UPDATE outbox SET state = 'unknown', next_attempt_at = ?, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = ? \
             WHERE state = 'in_flight' AND lease_expires_at <= ?",
        )
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("turning lapsed leases unknown")?
        .rows_affected();

        tx.commit()
            .await
            .context("committing the recovered leases")?;
        Ok(recovered)
    }

    #[tracing::instrument(name = "sqlite.claim_due", skip_all, fields(tenant.id = %tenant, limit = limit))]
    async fn claim_due(
        &self,
        tenant: TenantId,
        now: Timestamp,
        owner: &str,
        lease_expires_at: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now.unix_ticks();
        // The select and the updates share one write transaction: no other writer can claim
        // (or finish) a row between them. See the module documentation. §3.2 sketches the claim
        // as one `UPDATE ... RETURNING`, but RETURNING shows the row after the update, and the
        // dispatcher needs the state before it (send, or reconcile first); under the write lock
        // two statements are just as atomic.
        let mut tx = self.begin_write().await?;

        let candidates: Vec<ClaimRow> = sqlx::query_as(CLAIM_CANDIDATES)
            .bind(tenant.to_string())
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .context("selecting the outbox rows due")?;

        let mut claimed = Vec::with_capacity(candidates.len());
        for row in candidates {
            // The state guard cannot fail under the write lock; it keeps the statement right
            // on its own, should it ever run outside this transaction.
            let leased = sqlx::query(
                "UPDATE outbox SET state = 'in_flight', lease_owner = ?, lease_expires_at = ?, \
                 updated_at = ? WHERE id = ? AND state IN ('pending', 'unknown')",
            )
            .bind(owner)
            .bind(lease_expires_at.unix_ticks())
            .bind(now)
            .bind(&row.id)
            .execute(&mut *tx)
            .await
            .context("leasing an outbox row")?;
            if leased.rows_affected() != 1 {
                return Err(anyhow!("outbox row {} changed while being claimed", row.id).into());
            }

            // The partner as stored now, not as it was when the row was written: a later
            // change folds into this delivery. Returning early drops `tx`, which rolls the
            // whole claim back, so no row stays leased to a dispatcher that never saw it.
            // A deleted partner too: its `delete` row renders from it.
            let partner = read_partner(&mut tx, &row.partner_id, Deleted::Included)
                .await
                .with_context(|| format!("reading the partner of outbox row {}", row.id))?
                .ok_or_else(|| {
                    anyhow!(
                        "outbox row {} delivers partner {}, which does not exist",
                        row.id,
                        row.partner_id
                    )
                })?;
            claimed.push(row.into_claimed(partner)?);
        }

        tx.commit().await.context("committing the claim")?;
        Ok(claimed)
    }

    #[tracing::instrument(name = "sqlite.release", skip_all, fields(outbox.id = %outbox_id, state = state.as_str()))]
    async fn release(
        &self,
        outbox_id: Uuid,
        state: DeliveryState,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        let outbox_id = outbox_id.hyphenated().to_string();
        let state = retry_state(state)?;
        let mut tx = self.begin_write().await?;

        // `updated_at` stays: the port passes no "now", and no attempt happened.
        let released = sqlx::query(
            "UPDATE outbox SET state = ?, next_attempt_at = ?, lease_owner = NULL, \
             lease_expires_at = NULL WHERE id = ? AND state = 'in_flight'",
        )
        .bind(state)
        .bind(next_attempt_at.unix_ticks())
        .bind(&outbox_id)
        .execute(&mut *tx)
        .await
        .context("handing the outbox row back")?;
        if released.rows_affected() != 1 {
            return Err(anyhow!("outbox row {outbox_id} is not in flight").into());
        }

        tx.commit()
            .await
            .context("committing the handed-back row")?;
        Ok(())
    }

    #[tracing::instrument(name = "sqlite.start_attempt", skip_all, fields(outbox.id = %start.outbox_id, attempt = start.attempt))]
    async fn start_attempt(&self, start: &AttemptStart) -> Result<(), StoreError> {
        let outbox_id = start.outbox_id.hyphenated().to_string();
        let client_request_id = start.client_request_id.hyphenated().to_string();
        let started_at = start.started_at.unix_ticks();
        let mut tx = self.begin_write().await?;

        // Only a row leased to the caller: a row whose lease lapsed while it waited in a batch
        // may have been claimed by another worker, and two attempts at once could POST twice.
        // The lease is renewed to cover the call.
        let counted = sqlx::query(
            "UPDATE outbox SET attempts = ?, last_client_request_id = ?, \
             first_attempt_at = COALESCE(first_attempt_at, ?), updated_at = ?, \
             lease_expires_at = ? \
             WHERE id = ? AND state = 'in_flight' AND lease_owner = ?",
        )
        .bind(i64::from(start.attempt))
        .bind(&client_request_id)
        .bind(started_at)
        .bind(started_at)
        .bind(start.lease_expires_at.unix_ticks())
        .bind(&outbox_id)
        .bind(&start.lease_owner)
        .execute(&mut *tx)
        .await
        .context("counting the attempt on the outbox row")?;
        if counted.rows_affected() != 1 {
            tx.rollback()
                .await
                .context("rolling back after a lost lease")?;
            return Err(StoreError::LeaseLost);
        }

        // The primary key (outbox_id, attempt) refuses a number used before.
        sqlx::query(
            "INSERT INTO delivery_attempts (outbox_id, attempt, client_request_id, started_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(&outbox_id)
        .bind(i64::from(start.attempt))
        .bind(&client_request_id)
        .bind(started_at)
        .execute(&mut *tx)
        .await
        .context("inserting the delivery attempt row")?;

        // Committed before the HTTP call, so a crash during the call leaves evidence of it.
        tx.commit()
            .await
            .context("committing the start of the attempt")?;
        Ok(())
    }

    #[tracing::instrument(name = "sqlite.sync_state", skip_all, fields(partner.id = %partner_id))]
    async fn sync_state(&self, partner_id: PartnerId) -> Result<Option<SyncState>, StoreError> {
        // One snapshot for the row and its attempts.
        let mut tx = self.begin_read().await?;

        // The latest row by creation; insertion order breaks a tie.
        let row: Option<OutboxRow> = sqlx::query_as(concat!(
            "SELECT ",
            outbox_row_columns!(),
            " FROM outbox WHERE partner_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1"
        ))
        .bind(partner_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .context("reading the partner's latest outbox row")?;
        let Some(row) = row else {
            return Ok(None);
        };

        let history = read_attempts(&mut tx, &row.id).await?;

        tx.commit().await.context("ending the read transaction")?;
        Ok(Some(row.into_sync_state(history)?))
    }

    #[tracing::instrument(name = "sqlite.graph_id_held_by_another", skip_all)]
    async fn graph_id_held_by_another(
        &self,
        graph_id: &str,
        except: PartnerId,
    ) -> Result<bool, StoreError> {
        let held: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM partners WHERE graph_id = ? AND id <> ? LIMIT 1")
                .bind(graph_id)
                .bind(except.to_string())
                .fetch_optional(self.reader())
                .await
                .context("looking up who holds a Graph object")?;
        Ok(held.is_some())
    }

    #[tracing::instrument(name = "sqlite.history", skip_all, fields(partner.id = %partner_id))]
    async fn history(&self, partner_id: PartnerId) -> Result<PartnerHistory, StoreError> {
        // One snapshot for the audit log, the rows and their attempts.
        let mut tx = self.begin_read().await?;
        let audit: Vec<(String, String, String, i64, String)> = sqlx::query_as(
            "SELECT action, request_id, caller, at, detail FROM audit_log \
             WHERE partner_id = ? ORDER BY at, rowid",
        )
        .bind(partner_id.to_string())
        .fetch_all(&mut *tx)
        .await
        .context("reading the partner's audit entries")?;
        let rows: Vec<OutboxRow> = sqlx::query_as(concat!(
            "SELECT ",
            outbox_row_columns!(),
            " FROM outbox WHERE partner_id = ? ORDER BY created_at, rowid"
        ))
        .bind(partner_id.to_string())
        .fetch_all(&mut *tx)
        .await
        .context("reading the partner's outbox rows")?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            let attempts = read_attempts(&mut tx, &row.id).await?;
            deliveries.push(row.into_sync_state(attempts)?);
        }
        tx.commit().await.context("ending the read transaction")?;
        let audit = audit
            .into_iter()
            .map(|(action, request_id, caller, at, detail)| {
                let at = Timestamp::from_unix_ticks(at)
                    .map_err(|_| anyhow::anyhow!("stored audit time {at} is out of range"))?;
                Ok(AuditRecord {
                    action,
                    request_id,
                    caller,
                    at,
                    detail,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(PartnerHistory { audit, deliveries })
    }

    #[tracing::instrument(name = "sqlite.list_rows", skip_all, fields(state = state.as_ref().map(DeliveryState::as_str), limit = limit))]
    async fn list_rows(
        &self,
        state: Option<DeliveryState>,
        limit: u32,
    ) -> Result<Vec<SyncState>, StoreError> {
        let mut query =
            QueryBuilder::<Sqlite>::new(concat!("SELECT ", outbox_row_columns!(), " FROM outbox"));
        if let Some(state) = state {
            query.push(" WHERE state = ").push_bind(state.as_str());
        }
        query
            .push(" ORDER BY created_at, rowid LIMIT ")
            .push_bind(i64::from(limit));

        let rows: Vec<OutboxRow> = query
            .build_query_as()
            .fetch_all(self.reader())
            .await
            .context("listing outbox rows")?;
        let listed = rows
            .into_iter()
            .map(|row| row.into_sync_state(Vec::new()))
            .collect::<anyhow::Result<_>>()?;
        Ok(listed)
    }

    #[tracing::instrument(name = "sqlite.count_rows", skip_all)]
    async fn count_rows(&self) -> Result<OutboxCounts, StoreError> {
        let per_state: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM outbox GROUP BY state")
                .fetch_all(self.reader())
                .await
                .context("counting outbox rows per state")?;

        let mut counts = OutboxCounts::default();
        for (state, count) in per_state {
            // COUNT(*) is never negative.
            let count = u64::try_from(count).context("a negative row count")?;
            let slot = match parse_delivery_state(&state)? {
                DeliveryState::Pending => &mut counts.pending,
                DeliveryState::InFlight => &mut counts.in_flight,
                DeliveryState::Delivered => &mut counts.delivered,
                DeliveryState::Unknown => &mut counts.unknown,
                DeliveryState::Dead => &mut counts.dead,
            };
            *slot = count;
        }
        Ok(counts)
    }

    #[tracing::instrument(name = "sqlite.requeue_dead", skip_all, fields(outbox.id = %outbox_id))]
    async fn requeue_dead(&self, outbox_id: Uuid, now: Timestamp) -> Result<bool, StoreError> {
        let now = now.unix_ticks();
        let mut tx = self.begin_write().await?;

        // The attempt log stays: it is the row's history. The row goes to `unknown`, not
        // `pending`: it may have died after an attempt whose outcome nobody knows, so Graph is
        // asked before anything is sent again. A fresh `first_attempt_at` opens a new window
        // for the give-up limits, which count only the attempts made inside it.
        let requeued = sqlx::query(
            "UPDATE outbox SET state = 'unknown', next_attempt_at = ?, dead_reason = NULL, \
             first_attempt_at = ?, updated_at = ? WHERE id = ? AND state = 'dead'",
        )
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(outbox_id.hyphenated().to_string())
        .execute(&mut *tx)
        .await
        .context("re-queueing the dead outbox row")?
        .rows_affected();

        tx.commit().await.context("committing the re-queue")?;
        Ok(requeued == 1)
    }
}

/// The attempts of one outbox row, oldest first.
async fn read_attempts(
    conn: &mut sqlx::SqliteConnection,
    outbox_id: &str,
) -> anyhow::Result<Vec<AttemptRow>> {
    sqlx::query_as(
        "SELECT attempt, client_request_id, started_at, finished_at, http_status, \
         graph_error_code, graph_request_id, outcome FROM delivery_attempts \
         WHERE outbox_id = ? ORDER BY attempt",
    )
    .bind(outbox_id)
    .fetch_all(conn)
    .await
    .context("reading the delivery attempts")
}

#[cfg(test)]
mod tests;
