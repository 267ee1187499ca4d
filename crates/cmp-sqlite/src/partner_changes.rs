//! Updating and deleting partners, and how each change is owed to Graph.
//!
//! Both run in one `BEGIN IMMEDIATE` transaction on the writer (see `partner_repository.rs`):
//! the partner, its assignments, the outbox and the audit entry change together or not at all.
//!
//! The outbox rules (issue 5, item 7):
//! - An update of a partner whose `create` row is `pending` (never sent, or sent and certainly
//!   not applied) folds into it: the dispatcher renders the payload from the partner row when it
//!   delivers, so Graph receives the updated partner in the one POST. The create row takes the
//!   new natural key, the name the POST will carry. Not so for an `unknown` create: Graph may
//!   hold the old version under the old name, which reconciliation matches and adopts without a
//!   PATCH. Then, and in every other case, an `update` row is queued; the claim runs it after
//!   every older row of its partner and of its name.
//! - A delete of a partner that never reached Graph (no Graph id, and every one of its rows
//!   `pending`: never sent, or sent and certainly not applied) removes the partner and its rows
//!   outright: Graph never hears of it. Otherwise the partner becomes a tombstone (`deleted_at`),
//!   gone for readers but keeping its name reserved, and a `delete` row is queued;
//!   `finish_attempt` releases the name when Graph confirms.

use anyhow::Context;
use cmp_application::{ChangeQueued, ChangeWrite, DeliveryState, Operation, StoreError};
use cmp_domain::{Partner, PartnerId};
use sqlx::{Sqlite, Transaction};

use crate::SqlitePartnerRepository;
use crate::partner_repository::{Deleted, read_partner};
use crate::partner_repository::{insert_assignments, insert_audit, name_key_taken};
use crate::rows::PartnerRow;

impl SqlitePartnerRepository {
    /// [`PartnerRepository::update_partner`](cmp_application::PartnerRepository::update_partner).
    pub(crate) async fn update(
        &self,
        partner: &Partner,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError> {
        let row = PartnerRow::from_domain(partner, write.tenant_id);
        let now = write.now.unix_ticks();
        let mut tx = self.begin_write().await?;

        // Optimistic concurrency: the change was computed from `expected`; under the write lock
        // the stored partner either still is that, or another update won and this one must be
        // merged again over its result.
        if let Some(expected) = &write.expected {
            let stored = read_partner(&mut tx, &row.id, Deleted::Hidden).await?;
            if stored.as_ref().is_some_and(|stored| stored != expected) {
                tx.rollback().await.context("rolling back a stale update")?;
                return Err(StoreError::Changed);
            }
        }

        let updated = sqlx::query(
            "UPDATE partners SET display_name = ?, name_key = ?, partner_state = ?, \
             last_heartbeat = ?, mac_os_onboarded = ?, windows_onboarded = ?, \
             android_onboarded = ?, ios_onboarded = ?, linux_onboarded = ?, updated_at = ? \
             WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL",
        )
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
        .bind(&row.id)
        .bind(&row.tenant_id)
        .execute(&mut *tx)
        .await;
        match updated {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => {
                tx.rollback()
                    .await
                    .context("rolling back the update of a missing partner")?;
                return Err(StoreError::NotFound);
            }
            Err(error) => {
                // The same detection as the insert: only the natural key can collide here (the
                // id is not written), but look rather than assume.
                let unique =
                    matches!(&error, sqlx::Error::Database(db) if db.is_unique_violation());
                if unique && name_key_taken(&mut tx, &row, Some(&row.id)).await? {
                    tx.rollback()
                        .await
                        .context("rolling back after a duplicate display name")?;
                    return Err(StoreError::DuplicateDisplayName {
                        display_name: row.display_name,
                    });
                }
                return Err(anyhow::Error::new(error)
                    .context("updating the partner row")
                    .into());
            }
        }

        // A collection present in the PATCH replaces the stored one: the partner carries the
        // result, so its assignments are written afresh, in order.
        sqlx::query("DELETE FROM partner_assignments WHERE partner_id = ?")
            .bind(&row.id)
            .execute(&mut *tx)
            .await
            .context("deleting the old assignment rows")?;
        insert_assignments(&mut tx, partner).await?;

        // A create never applied renders this partner when it is delivered; it only needs the
        // name it will be reconciled by. (See the module documentation for `unknown`.)
        let folded = sqlx::query(
            "UPDATE outbox SET natural_key = ?, updated_at = ? \
             WHERE partner_id = ? AND operation = 'create' AND state = 'pending'",
        )
        .bind(&row.name_key)
        .bind(now)
        .bind(&row.id)
        .execute(&mut *tx)
        .await
        .context("folding the update into the waiting create")?
        .rows_affected();
        let queued = if folded > 0 {
            ChangeQueued::Folded
        } else {
            queue(
                &mut tx,
                write,
                &row.id,
                row.name_key.as_deref(),
                Operation::Update,
            )
            .await?;
            ChangeQueued::Queued
        };

        insert_audit(&mut tx, &write.audit).await?;
        tx.commit().await.context("committing the update")?;
        Ok(queued)
    }

    /// [`PartnerRepository::delete_partner`](cmp_application::PartnerRepository::delete_partner).
    pub(crate) async fn delete(
        &self,
        id: PartnerId,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError> {
        let partner_id = id.to_string();
        let now = write.now.unix_ticks();
        let mut tx = self.begin_write().await?;

        let found: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT graph_id, name_key FROM partners \
             WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL",
        )
        .bind(&partner_id)
        .bind(write.tenant_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .context("reading the partner to delete")?;
        let Some((graph_id, name_key)) = found else {
            tx.rollback()
                .await
                .context("rolling back the delete of a missing partner")?;
            return Err(StoreError::NotFound);
        };

        let states: Vec<String> =
            sqlx::query_scalar("SELECT state FROM outbox WHERE partner_id = ?")
                .bind(&partner_id)
                .fetch_all(&mut *tx)
                .await
                .context("reading the partner's outbox rows")?;
        // `pending` means "not sent, or sent and certainly not applied" (a 429, a connection that
        // never opened, refused credentials); `unknown`, `in_flight`, `delivered` and `dead` may
        // all have reached Graph.
        let never_reached_graph = graph_id.is_none()
            && states
                .iter()
                .all(|state| state == DeliveryState::Pending.as_str());

        let queued = if never_reached_graph {
            // The rows first: their foreign key forbids deleting a partner they deliver. Their
            // attempts, and the partner's assignments, go by cascade.
            sqlx::query("DELETE FROM outbox WHERE partner_id = ?")
                .bind(&partner_id)
                .execute(&mut *tx)
                .await
                .context("deleting the partner's outbox rows")?;
            sqlx::query("DELETE FROM partners WHERE id = ?")
                .bind(&partner_id)
                .execute(&mut *tx)
                .await
                .context("deleting the partner row")?;
            ChangeQueued::Folded
        } else {
            sqlx::query("UPDATE partners SET deleted_at = ?, updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(now)
                .bind(&partner_id)
                .execute(&mut *tx)
                .await
                .context("marking the partner deleted")?;
            queue(
                &mut tx,
                write,
                &partner_id,
                name_key.as_deref(),
                Operation::Delete,
            )
            .await?;
            ChangeQueued::Queued
        };

        insert_audit(&mut tx, &write.audit).await?;
        tx.commit().await.context("committing the delete")?;
        Ok(queued)
    }
}

/// Queues an `operation` row for the dispatcher: `pending`, due at once, no attempt made, with
/// id `write.outbox_id` and the partner's current natural key.
async fn queue(
    tx: &mut Transaction<'static, Sqlite>,
    write: &ChangeWrite,
    partner_id: &str,
    name_key: Option<&str>,
    operation: Operation,
) -> anyhow::Result<()> {
    let now = write.now.unix_ticks();
    // A live partner always has its name key (the schema's CHECK); only a tombstone whose
    // delete Graph confirmed has released it, and no change is queued for one.
    let name_key =
        name_key.with_context(|| format!("live partner {partner_id} has no name key"))?;
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, partner_id, operation, natural_key, state, attempts, \
         next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
    )
    .bind(write.outbox_id.hyphenated().to_string())
    .bind(write.tenant_id.to_string())
    .bind(partner_id)
    .bind(operation.as_str())
    .bind(name_key)
    .bind(now)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await
    .with_context(|| format!("queueing the {} row", operation.as_str()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
