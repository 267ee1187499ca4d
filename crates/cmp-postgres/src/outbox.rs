//! [`PostgresOutbox`]: the [`Outbox`] port over PostgreSQL, and the enqueueing the partner store
//! does inside its own transactions. The rules are those of the SQLite store
//! (`docs/delivery.md`); what changes is how replicas on one database are kept apart.
//!
//! - **The claim** runs in one transaction that first takes a transaction-level advisory lock
//!   for the tenant, so that the claims of every replica for one tenant run one after the other
//!   (each statement of a later claim sees what the earlier one committed), then selects the due
//!   rows `FOR UPDATE SKIP LOCKED` (a row that another transaction holds, a change folding into
//!   a create say, is skipped rather than waited for) and leases them. The selection is the
//!   SQLite store's: only the oldest live row of a natural key and of a partner, and none whose
//!   key or partner has a row in flight. A partial unique index (one `in_flight` row per
//!   partner) refuses a second delivery for one partner whatever any replica does.
//! - **Leases** are stored as `<replica id>/<owner>` ([`Replica::owner`]); a start of a delivery
//!   checks the stored owner, so a replica never starts a delivery on a row another replica took
//!   over after the lease lapsed. Lapsed leases turn `unknown` in any replica's pass.

use anyhow::{Context, anyhow};
use cmp_application::audit::DISPATCHER_CALLER;
use cmp_application::{
    AuditAction, AuditEntry, ClaimedRow, DeliveryEnd, DeliveryStart, InGraph, LeaseOwner,
    NewPartnerWrite, Operation, Outbox, OutboxCounts, OutboxRecord, OutboxState, PartnerHistory,
    StoreError, Transition, WaitingState,
};
use cmp_domain::{PartnerId, TenantId, Timestamp};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::audit::{insert_audit, read_audit};
use crate::partner_read::{Deleted, read_partner};
use crate::replica::Replica;
use crate::rows::{ClaimRow, DeliveryRow, OutboxRow, PartnerRow};

/// The outbox in PostgreSQL. Made by [`PostgresStore::outbox`](crate::PostgresStore::outbox);
/// cheap to clone.
#[derive(Debug, Clone)]
pub struct PostgresOutbox {
    pool: PgPool,
    replica: Replica,
}

impl PostgresOutbox {
    pub(crate) fn new(pool: PgPool, replica: Replica) -> Self {
        Self { pool, replica }
    }

    async fn begin(&self) -> anyhow::Result<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.context("beginning a transaction")
    }

    /// A read-only transaction over one snapshot, for reads of several statements.
    async fn begin_snapshot(&self) -> anyhow::Result<sqlx::Transaction<'static, Postgres>> {
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .context("making the read consistent")?;
        Ok(tx)
    }
}

/// The columns of [`OutboxRow`], as a literal for `concat!`.
macro_rules! outbox_row_columns {
    () => {
        "id, partner_id, operation, natural_key, state, attempts, next_attempt_at, last_status, \
         last_error_code, last_client_request_id, graph_id, dead_reason, created_at, updated_at, \
         first_attempt_at"
    };
}

// ---- enqueueing, inside the partner store's transactions ----------------------------------

/// Enqueues the create row of a new partner, born in flight and leased to the creating request,
/// with its first delivery started (see the SQLite store).
pub(crate) async fn enqueue_inline_create(
    conn: &mut PgConnection,
    partner: &PartnerRow,
    write: &NewPartnerWrite,
    owner: &str,
) -> anyhow::Result<()> {
    let delivery = &write.delivery;
    let now = write.now.unix_ticks();
    let outbox_id = delivery.outbox_id.hyphenated().to_string();
    let client_request_id = delivery.client_request_id.hyphenated().to_string();
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, partner_id, operation, natural_key, state, \
         attempts, next_attempt_at, lease_owner, lease_expires_at, last_client_request_id, \
         created_at, updated_at, first_attempt_at) \
         VALUES ($1, $2, $3, 'create', $4, 'in_flight', 1, $5, $6, $7, $8, $5, $5, $5)",
    )
    .bind(&outbox_id)
    .bind(&partner.tenant_id)
    .bind(&partner.id)
    .bind(&partner.name_key)
    .bind(now)
    .bind(owner)
    .bind(delivery.lease.expires_at.unix_ticks())
    .bind(&client_request_id)
    .execute(&mut *conn)
    .await
    .context("inserting the outbox row")?;
    sqlx::query(
        "INSERT INTO deliveries (outbox_id, attempt, client_request_id, started_at) \
         VALUES ($1, 1, $2, $3)",
    )
    .bind(&outbox_id)
    .bind(&client_request_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .context("inserting the first delivery row")?;
    Ok(())
}

/// Folds an update of `partner` into its waiting (`pending`) create, if it has one; returns
/// whether it folded. A create that a claim holds locked is waited for, and then no longer
/// `pending`, so the update is enqueued behind it instead.
pub(crate) async fn fold_into_waiting_create(
    conn: &mut PgConnection,
    partner: &PartnerRow,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let folded = sqlx::query(
        "UPDATE outbox SET natural_key = $1, updated_at = $2 \
         WHERE partner_id = $3 AND operation = 'create' AND state = 'pending'",
    )
    .bind(&partner.name_key)
    .bind(now.unix_ticks())
    .bind(&partner.id)
    .execute(conn)
    .await
    .context("folding the update into the waiting create")?
    .rows_affected();
    Ok(folded > 0)
}

/// Enqueues an `operation` row for the dispatcher: `pending`, due at once, no delivery made.
pub(crate) async fn enqueue_change(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    outbox_id: Uuid,
    now: Timestamp,
    partner_id: &str,
    name_key: Option<&str>,
    operation: Operation,
) -> anyhow::Result<()> {
    let now = now.unix_ticks();
    let name_key =
        name_key.with_context(|| format!("live partner {partner_id} has no name key"))?;
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, partner_id, operation, natural_key, state, attempts, \
         next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)",
    )
    .bind(outbox_id.hyphenated().to_string())
    .bind(tenant_id.to_string())
    .bind(partner_id)
    .bind(operation.as_str())
    .bind(name_key)
    .bind(now)
    .execute(conn)
    .await
    .with_context(|| format!("enqueueing the {operation} row"))?;
    Ok(())
}

/// Locks every outbox row of the partner until the transaction ends (waiting for a claim that
/// holds one), so that what the caller reads of them next stays true until it commits.
pub(crate) async fn lock_rows_of(conn: &mut PgConnection, partner_id: &str) -> anyhow::Result<()> {
    sqlx::query("SELECT id FROM outbox WHERE partner_id = $1 FOR UPDATE")
        .bind(partner_id)
        .execute(conn)
        .await
        .context("locking the partner's outbox rows")?;
    Ok(())
}

/// Whether every outbox row of the partner is `pending`: none may have reached Graph.
pub(crate) async fn all_rows_pending(
    conn: &mut PgConnection,
    partner_id: &str,
) -> anyhow::Result<bool> {
    let other: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM outbox WHERE partner_id = $1 AND state <> 'pending' LIMIT 1",
    )
    .bind(partner_id)
    .fetch_optional(conn)
    .await
    .context("reading the partner's outbox rows")?;
    Ok(other.is_none())
}

/// Removes every outbox row of the partner (their deliveries go by cascade).
pub(crate) async fn remove_rows_of(
    conn: &mut PgConnection,
    partner_id: &str,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE partner_id = $1")
        .bind(partner_id)
        .execute(conn)
        .await
        .context("deleting the partner's outbox rows")?;
    Ok(())
}

// ---- the port -----------------------------------------------------------------------------

/// The claim's selection (the SQLite store's, with `seq` for its rowid); binds: tenant, now,
/// limit. Runs after the tenant's claim lock is taken; locks what it selects, skipping rows other
/// transactions hold.
const CLAIM_CANDIDATES: &str = "SELECT candidate.id, candidate.partner_id, \
     candidate.natural_key, candidate.state, candidate.attempts, candidate.first_attempt_at, \
     candidate.created_at, candidate.operation, candidate.next_attempt_at, \
     (SELECT graph_id FROM partners WHERE partners.id = candidate.partner_id) \
      AS partner_graph_id, \
     (SELECT deleted_at IS NOT NULL FROM partners WHERE partners.id = candidate.partner_id) \
      AS partner_deleted, \
     EXISTS (SELECT 1 FROM outbox AS created WHERE created.partner_id = candidate.partner_id \
      AND created.state = 'delivered' AND created.operation = 'create' \
      AND created.graph_id IS NULL) AS created_nothing_in_graph, \
     (SELECT COUNT(*) FROM deliveries AS made WHERE made.outbox_id = candidate.id \
      AND made.started_at >= COALESCE(candidate.first_attempt_at, candidate.created_at)) \
      AS attempts_in_window \
     FROM outbox AS candidate \
     WHERE candidate.tenant_id = $1 AND candidate.state IN ('pending', 'unknown') \
     AND candidate.next_attempt_at <= $2 \
     AND NOT EXISTS (\
         SELECT 1 FROM outbox AS ahead_by_key \
         WHERE ahead_by_key.tenant_id = candidate.tenant_id \
         AND ahead_by_key.natural_key = candidate.natural_key \
         AND ahead_by_key.state IN ('pending', 'unknown', 'in_flight') \
         AND (ahead_by_key.state = 'in_flight' \
              OR ahead_by_key.created_at < candidate.created_at \
              OR (ahead_by_key.created_at = candidate.created_at \
                  AND ahead_by_key.seq < candidate.seq))\
     ) \
     AND NOT EXISTS (\
         SELECT 1 FROM outbox AS ahead_for_partner \
         WHERE ahead_for_partner.partner_id = candidate.partner_id \
         AND ahead_for_partner.state IN ('pending', 'unknown', 'in_flight') \
         AND (ahead_for_partner.state = 'in_flight' \
              OR ahead_for_partner.created_at < candidate.created_at \
              OR (ahead_for_partner.created_at = candidate.created_at \
                  AND ahead_for_partner.seq < candidate.seq))\
     ) \
     ORDER BY candidate.next_attempt_at, candidate.created_at, candidate.seq \
     LIMIT $3 \
     FOR UPDATE OF candidate SKIP LOCKED";

#[async_trait::async_trait]
impl Outbox for PostgresOutbox {
    #[tracing::instrument(name = "postgres.recover_expired_leases", skip_all)]
    async fn recover_expired_leases(&self, now: Timestamp) -> Result<u64, StoreError> {
        let now = now.unix_ticks();
        // `unknown`, never `pending`: the holder (of any replica) may have sent the POST before
        // it died, so the next attempt reconciles with Graph first.
        let recovered = sqlx::query(
            "UPDATE outbox SET state = 'unknown', next_attempt_at = $1, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = $1 \
             WHERE state = 'in_flight' AND lease_expires_at <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await
        .context("turning lapsed leases unknown")?
        .rows_affected();
        Ok(recovered)
    }

    #[tracing::instrument(name = "postgres.claim_due", skip_all, fields(tenant.id = %tenant, limit = limit))]
    async fn claim_due(
        &self,
        tenant: TenantId,
        now: Timestamp,
        owner: &LeaseOwner,
        lease_expires_at: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedRow>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now.unix_ticks();
        let owner = self.replica.owner(owner);
        let tenant = tenant.to_string();
        let mut tx = self.begin().await?;
        // The tenant's claims run one at a time across replicas: each starts after the one
        // before committed, and its statements see the rows that one leased.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("cmp-claim:{tenant}"))
            .execute(&mut *tx)
            .await
            .context("taking the tenant's claim lock")?;
        let candidates: Vec<ClaimRow> = sqlx::query_as(CLAIM_CANDIDATES)
            .bind(&tenant)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .context("selecting the outbox rows due")?;

        let mut claimed = Vec::with_capacity(candidates.len());
        for row in candidates {
            let leased = sqlx::query(
                "UPDATE outbox SET state = 'in_flight', lease_owner = $1, lease_expires_at = $2, \
                 updated_at = $3 WHERE id = $4 AND state IN ('pending', 'unknown')",
            )
            .bind(&owner)
            .bind(lease_expires_at.unix_ticks())
            .bind(now)
            .bind(&row.id)
            .execute(&mut *tx)
            .await
            .context("leasing an outbox row")?;
            if leased.rows_affected() != 1 {
                return Err(anyhow!("outbox row {} changed while being claimed", row.id).into());
            }
            // The partner as stored now: a later change folds into this delivery. Returning
            // early drops `tx`, which rolls the whole claim back.
            let partner = read_partner(&mut tx, &row.partner_id, Deleted::Included, false)
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

    #[tracing::instrument(name = "postgres.release", skip_all, fields(outbox.id = %outbox_id, state = state.as_str()))]
    async fn release(
        &self,
        outbox_id: Uuid,
        state: WaitingState,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        let outbox_id = outbox_id.hyphenated().to_string();
        let released = sqlx::query(
            "UPDATE outbox SET state = $1, next_attempt_at = $2, lease_owner = NULL, \
             lease_expires_at = NULL WHERE id = $3 AND state = 'in_flight'",
        )
        .bind(state.as_str())
        .bind(next_attempt_at.unix_ticks())
        .bind(&outbox_id)
        .execute(&self.pool)
        .await
        .context("handing the outbox row back")?;
        if released.rows_affected() != 1 {
            return Err(anyhow!("outbox row {outbox_id} is not in flight").into());
        }
        Ok(())
    }

    #[tracing::instrument(name = "postgres.start_delivery", skip_all, fields(outbox.id = %start.outbox_id, attempt = start.attempt))]
    async fn start_delivery(&self, start: &DeliveryStart) -> Result<(), StoreError> {
        let outbox_id = start.outbox_id.hyphenated().to_string();
        let client_request_id = start.client_request_id.hyphenated().to_string();
        let started_at = start.started_at.unix_ticks();
        let mut tx = self.begin().await?;
        // Only a row leased to the caller, in this replica: a row whose lease lapsed may have
        // been taken over by another worker or replica, and two deliveries at once could POST
        // twice.
        let counted = sqlx::query(
            "UPDATE outbox SET attempts = $1, last_client_request_id = $2, \
             first_attempt_at = COALESCE(first_attempt_at, $3), updated_at = $3, \
             lease_expires_at = $4 \
             WHERE id = $5 AND state = 'in_flight' AND lease_owner = $6",
        )
        .bind(i64::from(start.attempt))
        .bind(&client_request_id)
        .bind(started_at)
        .bind(start.lease.expires_at.unix_ticks())
        .bind(&outbox_id)
        .bind(self.replica.owner(&start.lease.owner))
        .execute(&mut *tx)
        .await
        .context("counting the delivery on the outbox row")?;
        if counted.rows_affected() != 1 {
            return Err(StoreError::LeaseLost);
        }
        sqlx::query(
            "INSERT INTO deliveries (outbox_id, attempt, client_request_id, started_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&outbox_id)
        .bind(i64::from(start.attempt))
        .bind(&client_request_id)
        .bind(started_at)
        .execute(&mut *tx)
        .await
        .context("inserting the delivery row")?;
        // Committed before the HTTP call, so a crash during the call leaves evidence of it.
        tx.commit().await.context("committing the delivery start")?;
        Ok(())
    }

    #[tracing::instrument(name = "postgres.sync_state", skip_all, fields(partner.id = %partner_id))]
    async fn sync_state(&self, partner_id: PartnerId) -> Result<Option<OutboxRecord>, StoreError> {
        let mut tx = self.begin_snapshot().await?;
        let row: Option<OutboxRow> = sqlx::query_as(concat!(
            "SELECT ",
            outbox_row_columns!(),
            " FROM outbox WHERE partner_id = $1 ORDER BY created_at DESC, seq DESC LIMIT 1"
        ))
        .bind(partner_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .context("reading the partner's latest outbox row")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let deliveries = read_deliveries(&mut tx, &row.id).await?;
        tx.commit().await.context("ending the read transaction")?;
        Ok(Some(row.into_record(deliveries)?))
    }

    #[tracing::instrument(name = "postgres.history", skip_all, fields(partner.id = %partner_id))]
    async fn history(&self, partner_id: PartnerId) -> Result<PartnerHistory, StoreError> {
        let partner_id = partner_id.to_string();
        let mut tx = self.begin_snapshot().await?;
        let audit = read_audit(&mut tx, &partner_id).await?;
        let stored: Vec<OutboxRow> = sqlx::query_as(concat!(
            "SELECT ",
            outbox_row_columns!(),
            " FROM outbox WHERE partner_id = $1 ORDER BY created_at, seq"
        ))
        .bind(&partner_id)
        .fetch_all(&mut *tx)
        .await
        .context("reading the partner's outbox rows")?;
        let mut rows = Vec::with_capacity(stored.len());
        for row in stored {
            let deliveries = read_deliveries(&mut tx, &row.id).await?;
            rows.push(row.into_record(deliveries)?);
        }
        tx.commit().await.context("ending the read transaction")?;
        Ok(PartnerHistory { audit, rows })
    }

    #[tracing::instrument(name = "postgres.list_rows", skip_all, fields(state = state.as_ref().map(OutboxState::as_str), limit = limit))]
    async fn list_rows(
        &self,
        state: Option<OutboxState>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            outbox_row_columns!(),
            " FROM outbox"
        ));
        if let Some(state) = state {
            query.push(" WHERE state = ").push_bind(state.as_str());
        }
        query
            .push(" ORDER BY created_at, seq LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<OutboxRow> = query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .context("listing outbox rows")?;
        let listed = rows
            .into_iter()
            .map(|row| row.into_record(Vec::new()))
            .collect::<anyhow::Result<_>>()?;
        Ok(listed)
    }

    #[tracing::instrument(name = "postgres.count_rows", skip_all)]
    async fn count_rows(&self) -> Result<OutboxCounts, StoreError> {
        let per_state: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM outbox GROUP BY state")
                .fetch_all(&self.pool)
                .await
                .context("counting outbox rows per state")?;
        let mut counts = OutboxCounts::default();
        for (state, count) in per_state {
            let count = u64::try_from(count).context("a negative row count")?;
            let state: OutboxState = state.parse().context("a stored outbox state")?;
            *counts.of_mut(state) = count;
        }
        Ok(counts)
    }

    #[tracing::instrument(name = "postgres.oldest_waiting_created_at", skip_all)]
    async fn oldest_waiting_created_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(created_at) FROM outbox WHERE state IN ('pending', 'unknown')",
        )
        .fetch_one(&self.pool)
        .await
        .context("reading the oldest waiting outbox row")?;
        let oldest = oldest
            .map(Timestamp::from_unix_ticks)
            .transpose()
            .context("a stored creation time")?;
        Ok(oldest)
    }

    #[tracing::instrument(name = "postgres.requeue_dead", skip_all, fields(outbox.id = %outbox_id))]
    async fn requeue_dead(&self, outbox_id: Uuid, now: Timestamp) -> Result<bool, StoreError> {
        // `unknown`, not `pending`, and a new give-up window: see the SQLite store.
        let requeued = sqlx::query(
            "UPDATE outbox SET state = 'unknown', next_attempt_at = $1, dead_reason = NULL, \
             first_attempt_at = $1, updated_at = $1 WHERE id = $2 AND state = 'dead'",
        )
        .bind(now.unix_ticks())
        .bind(outbox_id.hyphenated().to_string())
        .execute(&self.pool)
        .await
        .context("re-queueing the dead outbox row")?
        .rows_affected();
        Ok(requeued == 1)
    }

    #[tracing::instrument(name = "postgres.finish_delivery", skip_all, fields(partner.id = %finish.partner_id, outbox.id = %finish.outbox_id, outcome = %finish.outcome))]
    async fn finish_delivery(&self, finish: &DeliveryEnd) -> Result<(), StoreError> {
        let outbox_id = finish.outbox_id.hyphenated().to_string();
        let partner_id = finish.partner_id.to_string();
        let finished_at = finish.finished_at.unix_ticks();
        let status = finish.meta.status.map(i64::from);
        let error_code = finish.meta.error_code.as_deref();
        let mut tx = self.begin().await?;
        // Only the row's latest delivery, started with this client-request-id: a late end of a
        // delivery whose row was taken over changes nothing (the transaction rolls back).
        let attempt = sqlx::query(
            "UPDATE deliveries SET finished_at = $1, http_status = $2, graph_error_code = $3, \
             graph_request_id = $4, outcome = $5 \
             WHERE outbox_id = $6 AND client_request_id = $7 AND attempt = \
             (SELECT MAX(attempt) FROM deliveries WHERE outbox_id = $6)",
        )
        .bind(finished_at)
        .bind(status)
        .bind(error_code)
        .bind(finish.meta.request_id.as_deref())
        .bind(finish.outcome.as_str())
        .bind(&outbox_id)
        .bind(finish.client_request_id.hyphenated().to_string())
        .execute(&mut *tx)
        .await
        .context("recording the end of the delivery")?;

        let moved: Option<(String, String)> = match &finish.transition {
            Transition::Delivered { in_graph } => sqlx::query_as(
                "UPDATE outbox SET state = 'delivered', graph_id = $1, lease_owner = NULL, \
                 lease_expires_at = NULL, dead_reason = NULL, last_status = $2, \
                 last_error_code = $3, updated_at = $4 WHERE id = $5 \
                 RETURNING partner_id, operation",
            )
            .bind(in_graph.graph_id())
            .bind(status)
            .bind(error_code)
            .bind(finished_at)
            .bind(&outbox_id)
            .fetch_optional(&mut *tx)
            .await
            .context("marking the outbox row delivered")?,
            Transition::Retry {
                state,
                next_attempt_at,
            } => sqlx::query_as(
                "UPDATE outbox SET state = $1, next_attempt_at = $2, lease_owner = NULL, \
                 lease_expires_at = NULL, dead_reason = NULL, last_status = $3, \
                 last_error_code = $4, updated_at = $5 WHERE id = $6 \
                 RETURNING partner_id, operation",
            )
            .bind(state.as_str())
            .bind(next_attempt_at.unix_ticks())
            .bind(status)
            .bind(error_code)
            .bind(finished_at)
            .bind(&outbox_id)
            .fetch_optional(&mut *tx)
            .await
            .context("returning the outbox row to the dispatcher")?,
            Transition::Dead { reason } => sqlx::query_as(
                "UPDATE outbox SET state = 'dead', dead_reason = $1, lease_owner = NULL, \
                 lease_expires_at = NULL, last_status = $2, last_error_code = $3, \
                 updated_at = $4 WHERE id = $5 RETURNING partner_id, operation",
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
                "the latest delivery of outbox row {outbox_id} was not started with \
                 client-request-id {}",
                finish.client_request_id
            )
            .into());
        }

        if let Transition::Delivered { in_graph } = &finish.transition {
            let operation: Operation = operation.parse().context("a stored outbox operation")?;
            match (operation, in_graph) {
                (Operation::Create | Operation::Update, InGraph::Object(graph_id)) => {
                    sqlx::query("UPDATE partners SET graph_id = $1, updated_at = $2 WHERE id = $3")
                        .bind(graph_id)
                        .bind(finished_at)
                        .bind(&partner_id)
                        .execute(&mut *tx)
                        .await
                        .context("storing Graph's id on the partner")?;
                }
                (Operation::Create | Operation::Update, InGraph::Nothing) => {}
                (Operation::Delete, _) => release_name(&mut tx, finish).await?,
            }
        }
        tx.commit().await.context("committing the delivery end")?;
        Ok(())
    }

    #[tracing::instrument(name = "postgres.undo_rejected_create", skip_all, fields(partner.id = %partner_id, outbox.id = %outbox_id))]
    async fn undo_rejected_create(
        &self,
        partner_id: PartnerId,
        outbox_id: Uuid,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let partner_id = partner_id.to_string();
        let mut tx = self.begin().await?;
        let undone = sqlx::query("DELETE FROM outbox WHERE id = $1 AND partner_id = $2")
            .bind(outbox_id.hyphenated().to_string())
            .bind(&partner_id)
            .execute(&mut *tx)
            .await
            .context("deleting the outbox row")?
            .rows_affected();
        if undone == 1 {
            // Rows queued behind the refused create never reached Graph (see the SQLite store).
            sqlx::query("DELETE FROM outbox WHERE partner_id = $1 AND operation <> 'create'")
                .bind(&partner_id)
                .execute(&mut *tx)
                .await
                .context("deleting the rows queued behind the refused create")?;
        }
        sqlx::query("DELETE FROM partners WHERE id = $1")
            .bind(&partner_id)
            .execute(&mut *tx)
            .await
            .context("deleting the partner row")?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.context("committing the undo")?;
        Ok(())
    }
}

/// The deliveries of one outbox row, oldest first.
async fn read_deliveries(
    conn: &mut PgConnection,
    outbox_id: &str,
) -> anyhow::Result<Vec<DeliveryRow>> {
    sqlx::query_as(
        "SELECT attempt, client_request_id, started_at, finished_at, http_status, \
         graph_error_code, graph_request_id, outcome FROM deliveries \
         WHERE outbox_id = $1 ORDER BY attempt",
    )
    .bind(outbox_id)
    .fetch_all(conn)
    .await
    .context("reading the deliveries")
}

/// Releases the display name of the partner whose `delete` row `finish` delivered, and records
/// Graph's confirmation in the audit log, inside `finish_delivery`'s transaction.
async fn release_name(conn: &mut PgConnection, finish: &DeliveryEnd) -> anyhow::Result<()> {
    let partner_id = finish.partner_id.to_string();
    let released: Option<String> = sqlx::query_scalar(
        "UPDATE partners SET name_key = NULL, updated_at = $1 \
         WHERE id = $2 AND deleted_at IS NOT NULL RETURNING display_name",
    )
    .bind(finish.finished_at.unix_ticks())
    .bind(&partner_id)
    .fetch_optional(&mut *conn)
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
        caller: DISPATCHER_CALLER.to_owned(),
        at: finish.finished_at,
        detail: format!(
            "Microsoft Graph confirmed the delete ({}; graph request-id {}, client-request-id {}); \
             the display name '{display_name}' is free again",
            finish.outcome,
            finish.meta.request_id.as_deref().unwrap_or("none"),
            finish.client_request_id,
        ),
    };
    insert_audit(conn, &entry).await
}
