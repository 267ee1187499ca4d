//! [`SqliteOutbox`]: the [`Outbox`] port over SQLite, and the enqueueing the partner store does
//! inside its own transactions. Every statement about the `outbox` and `deliveries` tables lives
//! here (the rules are `docs/delivery.md`).
//!
//! As in the partner store, every write runs through the store's writer (`writer.rs`), inside a
//! savepoint of a group commit, and every multi-statement read is one transaction on a reader.
//! The claim in particular relies on this: SQLite has no `SKIP LOCKED`, but its claim selects
//! and updates while holding the database's only write lock, so two claims (two dispatcher
//! tasks, or two processes) run one after the other and the second no longer sees what the
//! first took.

use anyhow::{Context, anyhow};
use cmp_application::audit::DISPATCHER_CALLER;
use cmp_application::{
    AuditAction, AuditEntry, ClaimedRow, DeliveryEnd, DeliveryStart, InGraph, LeaseOwner,
    NewPartnerWrite, Operation, Outbox, OutboxCounts, OutboxRecord, OutboxState, PartnerHistory,
    StoreError, Transition, WaitingState,
};
use cmp_domain::{PartnerId, TenantId, Timestamp};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;

use crate::audit::{insert_audit, read_audit};
use crate::connections::Connections;
use crate::partner_read::{Deleted, read_partner};
use crate::rows::{AuditRow, ClaimRow, DeliveryRow, OutboxRow, PartnerRow};
use crate::statements::Statements;
use crate::writer::{OneTrip, Writer, boxed};

/// The outbox in SQLite. Made by [`SqliteStore::outbox`](crate::SqliteStore::outbox); cheap to
/// clone, since it only holds the store's pools.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    connections: Connections,
}

impl SqliteOutbox {
    pub(crate) fn new(connections: Connections) -> Self {
        Self { connections }
    }
}

/// The columns of [`OutboxRow`], as a literal so that `concat!` can build `&'static str`
/// statements from it (sqlx 0.9 takes no other kind of SQL text without a builder).
macro_rules! outbox_row_columns {
    () => {
        "id, partner_id, operation, natural_key, state, attempts, next_attempt_at, last_status, \
         last_error_code, last_client_request_id, graph_id, dead_reason, created_at, updated_at, \
         first_attempt_at"
    };
}

// ---- enqueueing, inside the partner store's transactions ----------------------------------

/// Appends to `statements` the create row of a new partner, born in flight and leased to the
/// creating request (which is about to make delivery 1 inline, so no dispatcher can claim it
/// meanwhile), with its first delivery started: committed before the HTTP call, so a crash
/// during the call leaves evidence of it. `next_attempt_at` only matters once the row is back
/// with the dispatcher.
pub(crate) fn push_inline_create(
    statements: &mut Statements,
    partner: &PartnerRow,
    write: &NewPartnerWrite,
) {
    let delivery = &write.delivery;
    let now = write.now.unix_ticks();
    let outbox_id = delivery.outbox_id.hyphenated().to_string();
    let client_request_id = delivery.client_request_id.hyphenated().to_string();
    statements.push(
        "INSERT INTO outbox (id, tenant_id, partner_id, operation, natural_key, state, \
         attempts, next_attempt_at, lease_owner, lease_expires_at, last_status, \
         last_error_code, last_client_request_id, graph_id, created_at, updated_at, \
         first_attempt_at) VALUES (",
    );
    statements
        .push_bind(outbox_id.clone())
        .push(", ")
        .push_bind(partner.tenant_id.clone())
        .push(", ")
        .push_bind(partner.id.clone())
        .push(", 'create', ")
        .push_bind(partner.name_key.clone())
        .push(", 'in_flight', 1, ")
        .push_bind(now)
        .push(", ")
        .push_bind(delivery.lease.owner.as_str().to_owned())
        .push(", ")
        .push_bind(delivery.lease.expires_at.unix_ticks())
        .push(", NULL, NULL, ")
        .push_bind(client_request_id.clone())
        .push(", NULL, ")
        .push_bind(now)
        .push(", ")
        .push_bind(now)
        .push(", ")
        .push_bind(now)
        .push("); ");
    statements
        .push("INSERT INTO deliveries (outbox_id, attempt, client_request_id, started_at) VALUES (")
        .push_bind(outbox_id)
        .push(", 1, ")
        .push_bind(client_request_id)
        .push(", ")
        .push_bind(now)
        .push("); ");
}

/// Folds an update of `partner` into its waiting create, if it has one (`pending`: never sent,
/// or sent and certainly not applied). The create renders the partner when it is delivered;
/// it only needs the name it will be reconciled by. Returns whether it folded.
pub(crate) async fn fold_into_waiting_create(
    conn: &mut SqliteConnection,
    partner: &PartnerRow,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let folded = sqlx::query(
        "UPDATE outbox SET natural_key = ?, updated_at = ? \
         WHERE partner_id = ? AND operation = 'create' AND state = 'pending'",
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

/// Enqueues an `operation` row for the dispatcher: `pending`, due at once, no delivery made,
/// with id `outbox_id` and the partner's current natural key.
pub(crate) async fn enqueue_change(
    conn: &mut SqliteConnection,
    tenant_id: TenantId,
    outbox_id: Uuid,
    now: Timestamp,
    partner_id: &str,
    name_key: Option<&str>,
    operation: Operation,
) -> anyhow::Result<()> {
    let now = now.unix_ticks();
    // A live partner always has its name key (the schema's CHECK); only a tombstone whose
    // delete Graph confirmed has released it, and no change is enqueued for one.
    let name_key =
        name_key.with_context(|| format!("live partner {partner_id} has no name key"))?;
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, partner_id, operation, natural_key, state, attempts, \
         next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
    )
    .bind(outbox_id.hyphenated().to_string())
    .bind(tenant_id.to_string())
    .bind(partner_id)
    .bind(operation.as_str())
    .bind(name_key)
    .bind(now)
    .bind(now)
    .bind(now)
    .execute(conn)
    .await
    .with_context(|| format!("enqueueing the {operation} row"))?;
    Ok(())
}

/// Whether every outbox row of the partner is `pending`: none may have reached Graph. (`pending`
/// means "not sent, or sent and certainly not applied": a 429, a connection that never opened,
/// refused credentials; `unknown`, `in_flight`, `delivered` and `dead` may all have.)
pub(crate) async fn all_rows_pending(
    conn: &mut SqliteConnection,
    partner_id: &str,
) -> anyhow::Result<bool> {
    let other: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM outbox WHERE partner_id = ? AND state <> 'pending'")
            .bind(partner_id)
            .fetch_optional(conn)
            .await
            .context("reading the partner's outbox rows")?;
    Ok(other.is_none())
}

/// Removes every outbox row of the partner (their deliveries go by cascade).
pub(crate) async fn remove_rows_of(
    conn: &mut SqliteConnection,
    partner_id: &str,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE partner_id = ?")
        .bind(partner_id)
        .execute(conn)
        .await
        .context("deleting the partner's outbox rows")?;
    Ok(())
}

// ---- the port -----------------------------------------------------------------------------

/// The claim's selection; binds: tenant, now, limit.
///
/// Rows of one natural key and rows of one partner run in the order they were written (a
/// rename, a delete and a create reusing the freed name must reach Graph in that order). So a row is claimed only when it is the oldest *live* row (`pending`, `unknown` or
/// `in_flight`) of its natural key and of its partner, and is itself waiting and due:
///
/// - Only `pending` and `unknown` rows of the tenant whose time has come; among them the oldest
///   due first (then oldest written, then insertion order, so that the order is total).
/// - Not a row that has an older live row of the same natural key in the tenant, nor of the same
///   partner: a younger row never jumps ahead, even when the older one is not due yet (it waits
///   out its back-off) or is in flight. "Older" is `(created_at, rowid)`: the write time, then
///   the insertion order for rows written at the same instant.
/// - Not a row whose natural key or partner has a row `in_flight` at all, whatever its age: per
///   key and per partner one delivery at a time. An inline create is born in flight and
///   may be younger than a waiting row that held its name before.
///
/// Natural keys are unique per tenant only, so a row of another tenant never blocks. `dead` and
/// `delivered` rows block nothing: a dead row waits for an operator, and holding every later
/// change of its partner back until then would hide them all behind one failure.
///
/// Since only the oldest live row of a key can qualify, one claim never holds two rows of one
/// key or of one partner either.
///
/// The `WHERE` walks `outbox_tenant_state_next_attempt_at` (two ranges, one per state), which
/// holds only waiting rows. The key probe answers from `outbox_tenant_natural_key_state_created_at`
/// alone, which holds only live rows; the partner probe reads the partner's few rows through
/// `outbox_partner_id_created_at`. The `IN` lists are written exactly as those partial indexes'
/// conditions, which is how SQLite knows they serve the query.
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
impl Outbox for SqliteOutbox {
    #[tracing::instrument(level = "debug", name = "sqlite.recover_expired_leases", skip_all)]
    async fn recover_expired_leases(&self, now: Timestamp) -> Result<u64, StoreError> {
        let now = now.unix_ticks();
        self.connections
            .writer
            .write(move |conn| {
                boxed(async move {
                    // `unknown`, never `pending`: the holder may have sent the POST before it died, so the
                    // next attempt must reconcile with Graph first.
                    let recovered = sqlx::query(
                    "UPDATE outbox SET state = 'unknown', next_attempt_at = ?, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = ? \
                     WHERE state = 'in_flight' AND lease_expires_at <= ?",
                )
                .bind(now)
                .bind(now)
                .bind(now)
                .execute(&mut *conn)
                .await
                .context("turning lapsed leases unknown")?
                .rows_affected();
                    Ok(recovered)
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.claim_due", skip_all, fields(tenant.id = %tenant, limit = limit))]
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
        // The select and the updates share one write transaction: no other writer can claim
        // (or finish) a row between them. See the module documentation. One
        // `UPDATE ... RETURNING` would not do: RETURNING shows the row after the update, and the
        // dispatcher needs the state before it (send, or reconcile first); under the write lock
        // two statements are just as atomic.
        let owner = owner.clone();
        self.connections
            .writer
            .write(move |conn| {
                boxed(async move {

                let candidates: Vec<ClaimRow> = sqlx::query_as(CLAIM_CANDIDATES)
                    .bind(tenant.to_string())
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
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
                    .bind(owner.as_str())
                    .bind(lease_expires_at.unix_ticks())
                    .bind(now)
                    .bind(&row.id)
                    .execute(&mut *conn)
                    .await
                    .context("leasing an outbox row")?;
                    if leased.rows_affected() != 1 {
                        return Err(anyhow!("outbox row {} changed while being claimed", row.id).into());
                    }

                    // The partner as stored now, not as it was when the row was written: a later
                    // change folds into this delivery. Returning early drops `tx`, which rolls the
                    // whole claim back, so no row stays leased to a dispatcher that never saw it.
                    // A deleted partner too: its `delete` row renders from it.
                    let partner = read_partner(conn, &row.partner_id, Deleted::Included)
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
                Ok(claimed)
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.release", skip_all, fields(outbox.id = %outbox_id, state = state.as_str()))]
    async fn release(
        &self,
        outbox_id: Uuid,
        state: WaitingState,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        let outbox_id = outbox_id.hyphenated().to_string();
        self.connections
            .writer
            .write(move |conn| {
                boxed(async move {
                    // `updated_at` stays: the port passes no "now", and no attempt happened.
                    let released = sqlx::query(
                        "UPDATE outbox SET state = ?, next_attempt_at = ?, lease_owner = NULL, \
                     lease_expires_at = NULL WHERE id = ? AND state = 'in_flight'",
                    )
                    .bind(state.as_str())
                    .bind(next_attempt_at.unix_ticks())
                    .bind(&outbox_id)
                    .execute(&mut *conn)
                    .await
                    .context("handing the outbox row back")?;
                    if released.rows_affected() != 1 {
                        return Err(anyhow!("outbox row {outbox_id} is not in flight").into());
                    }
                    Ok(())
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.start_delivery", skip_all, fields(outbox.id = %start.outbox_id, attempt = start.attempt))]
    async fn start_delivery(&self, start: &DeliveryStart) -> Result<(), StoreError> {
        let outbox_id = start.outbox_id.hyphenated().to_string();
        let client_request_id = start.client_request_id.hyphenated().to_string();
        let started_at = start.started_at.unix_ticks();
        let start = start.clone();
        self.connections
            .writer
            .write(move |conn| {
                boxed(async move {
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
                    .bind(start.lease.expires_at.unix_ticks())
                    .bind(&outbox_id)
                    .bind(start.lease.owner.as_str())
                    .execute(&mut *conn)
                    .await
                    .context("counting the delivery on the outbox row")?;
                    if counted.rows_affected() != 1 {
                        return Err(StoreError::LeaseLost);
                    }

                    // The primary key (outbox_id, attempt) refuses a number used before.
                    sqlx::query(
                    "INSERT INTO deliveries (outbox_id, attempt, client_request_id, started_at) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(&outbox_id)
                .bind(i64::from(start.attempt))
                .bind(&client_request_id)
                .bind(started_at)
                .execute(&mut *conn)
                .await
                .context("inserting the delivery row")?;

                    // Committed before the HTTP call, so a crash during the call leaves evidence of it.
                    Ok(())
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.sync_state", skip_all, fields(partner.id = %partner_id))]
    async fn sync_state(&self, partner_id: PartnerId) -> Result<Option<OutboxRecord>, StoreError> {
        // One snapshot for the row and its attempts.
        let mut tx = self.connections.begin_read().await?;

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

        let deliveries = read_deliveries(&mut tx, &row.id).await?;

        tx.commit().await.context("ending the read transaction")?;
        Ok(Some(row.into_record(deliveries)?))
    }

    #[tracing::instrument(level = "debug", name = "sqlite.history", skip_all, fields(partner.id = %partner_id))]
    async fn history(&self, partner_id: PartnerId) -> Result<PartnerHistory, StoreError> {
        // One snapshot for the audit log, the rows and their deliveries.
        let partner_id = partner_id.to_string();
        let mut tx = self.connections.begin_read().await?;
        let audit = read_audit(&mut tx, &partner_id).await?;
        let stored: Vec<OutboxRow> = sqlx::query_as(concat!(
            "SELECT ",
            outbox_row_columns!(),
            " FROM outbox WHERE partner_id = ? ORDER BY created_at, rowid"
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

    #[tracing::instrument(level = "debug", name = "sqlite.list_rows", skip_all, fields(state = state.as_ref().map(OutboxState::as_str), limit = limit))]
    async fn list_rows(
        &self,
        state: Option<OutboxState>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
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
            .fetch_all(&self.connections.reader)
            .await
            .context("listing outbox rows")?;
        let listed = rows
            .into_iter()
            .map(|row| row.into_record(Vec::new()))
            .collect::<anyhow::Result<_>>()?;
        Ok(listed)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.count_rows", skip_all)]
    async fn count_rows(&self) -> Result<OutboxCounts, StoreError> {
        let per_state: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM outbox GROUP BY state")
                .fetch_all(&self.connections.reader)
                .await
                .context("counting outbox rows per state")?;

        let mut counts = OutboxCounts::default();
        for (state, count) in per_state {
            // COUNT(*) is never negative.
            let count = u64::try_from(count).context("a negative row count")?;
            let state: OutboxState = state.parse().context("a stored outbox state")?;
            *counts.of_mut(state) = count;
        }
        Ok(counts)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.oldest_waiting_created_at", skip_all)]
    async fn oldest_waiting_created_at(&self) -> Result<Option<Timestamp>, StoreError> {
        // Reads only the waiting rows' entries of the (state, created_at) index, never the table.
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(created_at) FROM outbox WHERE state IN ('pending', 'unknown')",
        )
        .fetch_one(&self.connections.reader)
        .await
        .context("reading the oldest waiting outbox row")?;
        let oldest = oldest
            .map(Timestamp::from_unix_ticks)
            .transpose()
            .context("a stored creation time")?;
        Ok(oldest)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.requeue_dead", skip_all, fields(outbox.id = %outbox_id))]
    async fn requeue_dead(&self, outbox_id: Uuid, now: Timestamp) -> Result<bool, StoreError> {
        let now = now.unix_ticks();
        self.connections
            .writer
            .write(move |conn| {
                boxed(async move {
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
                .execute(&mut *conn)
                .await
                .context("re-queueing the dead outbox row")?
                .rows_affected();
                    Ok(requeued == 1)
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.finish_delivery", skip_all, fields(partner.id = %finish.partner_id, outbox.id = %finish.outbox_id, outcome = %finish.outcome))]
    async fn finish_delivery(&self, finish: &DeliveryEnd) -> Result<(), StoreError> {
        finish_delivery(&self.connections.writer, finish).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.undo_rejected_create", skip_all, fields(partner.id = %partner_id, outbox.id = %outbox_id))]
    async fn undo_rejected_create(
        &self,
        partner_id: PartnerId,
        outbox_id: Uuid,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let id = partner_id;
        let partner_id = partner_id.to_string();
        let audit = audit.clone();
        self.connections
            .write_partner(id, move |conn| {
                boxed(async move {
                    // The outbox row first: its foreign key forbids deleting a partner it still delivers.
                    // Its attempts go with it (ON DELETE CASCADE). Matching the partner too means a wrong
                    // pairing deletes nothing, and the partner delete below then fails on that key.
                    let undone = sqlx::query("DELETE FROM outbox WHERE id = ? AND partner_id = ?")
                        .bind(outbox_id.hyphenated().to_string())
                        .bind(&partner_id)
                        .execute(&mut *conn)
                        .await
                        .context("deleting the outbox row")?
                        .rows_affected();
                    if undone == 1 {
                        // An update or delete that arrived while the create was in flight queued a row
                        // behind it. The claim never runs a partner's younger row before its create, so
                        // those rows never reached Graph, and with the create refused they have nothing
                        // left to change there.
                        sqlx::query(
                            "DELETE FROM outbox WHERE partner_id = ? AND operation <> 'create'",
                        )
                        .bind(&partner_id)
                        .execute(&mut *conn)
                        .await
                        .context("deleting the rows queued behind the refused create")?;
                    }
                    // The assignments go with the partner (ON DELETE CASCADE).
                    sqlx::query("DELETE FROM partners WHERE id = ?")
                        .bind(&partner_id)
                        .execute(&mut *conn)
                        .await
                        .context("deleting the partner row")?;
                    insert_audit(conn, &audit).await?;
                    Ok(())
                })
            })
            .await
    }
}

/// [`Outbox::finish_delivery`]: the delivery's record, the row's move and what it changes on
/// the partner (its Graph id; for a confirmed delete, its name released and the confirmation
/// audited), in one trip (`Writer::write_one_trip`).
///
/// Every statement applies only under one condition, so that they apply all or none: the row
/// exists, delivers this partner, its latest delivery was started with this client-request-id
/// (if a dispatcher took the row over after the lease lapsed, this late finish must not
/// overwrite the newer delivery's record nor move the row it now holds), and a confirmed delete
/// is of a deleted partner. The row's move returns a row only when the condition held; when it
/// did not, nothing changed, and a read says why.
async fn finish_delivery(writer: &Writer, finish: &DeliveryEnd) -> Result<(), StoreError> {
    let outbox_id = finish.outbox_id.hyphenated().to_string();
    let partner_id = finish.partner_id.to_string();
    let client_request_id = finish.client_request_id.hyphenated().to_string();
    let finished_at = finish.finished_at.unix_ticks();
    let status = finish.meta.status.map(i64::from);
    let error_code = finish.meta.error_code.clone();
    let delivered = matches!(finish.transition, Transition::Delivered { .. });
    let ids = (
        outbox_id.clone(),
        partner_id.clone(),
        client_request_id.clone(),
    );
    // The condition, pushed before each statement's end.
    let condition = |statements: &mut Statements| {
        statements
            .push(
                " AND EXISTS (SELECT 1 FROM outbox AS guarded \
                 JOIN partners AS owner ON owner.id = guarded.partner_id \
                 WHERE guarded.id = ",
            )
            .push_bind(ids.0.clone())
            .push(" AND guarded.partner_id = ")
            .push_bind(ids.1.clone())
            .push(
                " AND (SELECT client_request_id FROM deliveries \
                 WHERE outbox_id = guarded.id ORDER BY attempt DESC LIMIT 1) = ",
            )
            .push_bind(ids.2.clone());
        if delivered {
            statements.push(" AND (guarded.operation <> 'delete' OR owner.deleted_at IS NOT NULL)");
        }
        statements.push(")");
    };
    let of_operation = |statements: &mut Statements, operation: &'static str| {
        statements
            .push(" AND EXISTS (SELECT 1 FROM outbox WHERE id = ")
            .push_bind(ids.0.clone())
            .push(" AND operation ")
            .push(operation)
            .push(")");
    };

    let mut write = OneTrip::new();
    let statements = write.statements();
    statements
        .push("UPDATE deliveries SET finished_at = ")
        .push_bind(finished_at)
        .push(", http_status = ")
        .push_bind(status)
        .push(", graph_error_code = ")
        .push_bind(error_code.clone())
        .push(", graph_request_id = ")
        .push_bind(finish.meta.request_id.clone())
        .push(", outcome = ")
        .push_bind(finish.outcome.as_str())
        .push(" WHERE outbox_id = ")
        .push_bind(outbox_id.clone())
        .push(" AND attempt = (SELECT MAX(attempt) FROM deliveries WHERE outbox_id = ")
        .push_bind(outbox_id.clone())
        .push(")");
    condition(statements);
    statements.push("; UPDATE outbox SET ");
    match &finish.transition {
        Transition::Delivered { in_graph } => {
            statements
                .push("state = 'delivered', graph_id = ")
                .push_bind(in_graph.graph_id().map(str::to_owned))
                .push(", dead_reason = NULL");
        }
        Transition::Retry {
            state,
            next_attempt_at,
        } => {
            statements
                .push("state = ")
                .push_bind(state.as_str())
                .push(", next_attempt_at = ")
                .push_bind(next_attempt_at.unix_ticks())
                .push(", dead_reason = NULL");
        }
        // `next_attempt_at` stays as it was: a dead row is never due until an operator
        // re-queues it, which sets it afresh.
        Transition::Dead { reason } => {
            statements
                .push("state = 'dead', dead_reason = ")
                .push_bind(reason.clone());
        }
    }
    statements
        .push(", lease_owner = NULL, lease_expires_at = NULL, last_status = ")
        .push_bind(status)
        .push(", last_error_code = ")
        .push_bind(error_code)
        .push(", updated_at = ")
        .push_bind(finished_at)
        .push(" WHERE id = ")
        .push_bind(outbox_id.clone());
    condition(statements);
    statements.push(" RETURNING operation; ");
    if let Transition::Delivered { in_graph } = &finish.transition {
        // A create or update that Graph holds as an object gives the partner its Graph id.
        // (Graph rightly holding nothing leaves it unknown, NULL, and the delivered row says
        // why.)
        if let InGraph::Object(graph_id) = in_graph {
            statements
                .push("UPDATE partners SET graph_id = ")
                .push_bind(graph_id.clone())
                .push(", updated_at = ")
                .push_bind(finished_at)
                .push(" WHERE id = ")
                .push_bind(partner_id.clone());
            condition(statements);
            of_operation(statements, "<> 'delete'");
            statements.push("; ");
        }
        // Graph confirmed a delete: the display name is free again (the tombstone keeps the
        // Graph id it had), and the audit log says so. The entry's id is the delete row's own
        // id: a row is delivered once, so the id is unique, and it ties the entry to the row's
        // attempts. The store serves no request of its own, hence the empty request id and the
        // `dispatcher` caller.
        let entry = AuditRow::from_domain(&AuditEntry {
            id: finish.outbox_id,
            partner_id: finish.partner_id,
            action: AuditAction::DeletedInGraph,
            request_id: String::new(),
            caller: DISPATCHER_CALLER.to_owned(),
            at: finish.finished_at,
            detail: String::new(),
        });
        statements
            .push(
                "INSERT INTO audit_log (id, partner_id, action, request_id, caller, at, detail) \
                 SELECT ",
            )
            .push_bind(entry.id)
            .push(", ")
            .push_bind(entry.partner_id)
            .push(", ")
            .push_bind(entry.action)
            .push(", ")
            .push_bind(entry.request_id)
            .push(", ")
            .push_bind(entry.caller)
            .push(", ")
            .push_bind(entry.at)
            .push(", ")
            .push_bind(format!(
                "Microsoft Graph confirmed the delete ({}; graph request-id {}, \
                 client-request-id {}); the display name '",
                finish.outcome,
                finish.meta.request_id.as_deref().unwrap_or("none"),
                finish.client_request_id,
            ))
            .push(" || display_name || ")
            .push_bind("' is free again".to_owned())
            .push(" FROM partners WHERE id = ")
            .push_bind(partner_id.clone());
        condition(statements);
        of_operation(statements, "= 'delete'");
        statements
            .push("; UPDATE partners SET name_key = NULL, updated_at = ")
            .push_bind(finished_at)
            .push(" WHERE id = ")
            .push_bind(partner_id.clone());
        condition(statements);
        of_operation(statements, "= 'delete'");
        statements.push("; ");
    }
    let finish = finish.clone();
    writer
        .write_one_trip(
            write,
            move |conn, moved| {
                boxed(async move {
                    if moved.is_empty() {
                        Err(why_not_finished(conn, &finish).await.into())
                    } else {
                        Ok(())
                    }
                })
            },
            |_conn, error| {
                Box::pin(async move {
                    StoreError::Unexpected(
                        anyhow::Error::new(error).context("recording the end of the delivery"),
                    )
                })
            },
        )
        .await
}

/// Why the end of a delivery found nothing to finish ([`finish_delivery`]'s condition did not
/// hold).
async fn why_not_finished(conn: &mut SqliteConnection, finish: &DeliveryEnd) -> anyhow::Error {
    let outbox_id = finish.outbox_id.hyphenated().to_string();
    let partner_id = finish.partner_id.to_string();
    // The row's partner, operation, latest client-request-id, and its partner's deletion.
    type Found = (String, String, Option<String>, Option<i64>);
    let found: Result<Option<Found>, _> = sqlx::query_as(
        "SELECT outbox.partner_id, outbox.operation, (SELECT client_request_id FROM deliveries \
         WHERE outbox_id = outbox.id ORDER BY attempt DESC LIMIT 1), partners.deleted_at \
         FROM outbox LEFT JOIN partners ON partners.id = outbox.partner_id WHERE outbox.id = ?",
    )
    .bind(&outbox_id)
    .fetch_optional(&mut *conn)
    .await;
    match found {
        Err(error) => anyhow::Error::new(error).context("reading why a delivery could not end"),
        Ok(None) => anyhow!("outbox row {outbox_id} does not exist"),
        Ok(Some((row_partner_id, _, _, _))) if row_partner_id != partner_id => {
            anyhow!("outbox row {outbox_id} delivers partner {row_partner_id}, not {partner_id}")
        }
        Ok(Some((_, _, latest, _)))
            if latest.as_deref()
                != Some(finish.client_request_id.hyphenated().to_string().as_str()) =>
        {
            anyhow!(
                "the latest delivery of outbox row {outbox_id} was not started with \
                 client-request-id {}",
                finish.client_request_id
            )
        }
        Ok(Some((_, operation, _, deleted_at)))
            if operation == "delete" && deleted_at.is_none() =>
        {
            anyhow!("outbox row {outbox_id} deletes partner {partner_id}, which is not deleted")
        }
        Ok(Some(_)) => anyhow!("outbox row {outbox_id} could not be finished"),
    }
}

/// The deliveries of one outbox row, oldest first.
async fn read_deliveries(
    conn: &mut SqliteConnection,
    outbox_id: &str,
) -> anyhow::Result<Vec<DeliveryRow>> {
    sqlx::query_as(
        "SELECT attempt, client_request_id, started_at, finished_at, http_status, \
         graph_error_code, graph_request_id, outcome FROM deliveries \
         WHERE outbox_id = ? ORDER BY attempt",
    )
    .bind(outbox_id)
    .fetch_all(conn)
    .await
    .context("reading the deliveries")
}

#[cfg(test)]
mod tests;
