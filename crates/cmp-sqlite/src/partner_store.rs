//! [`SqlitePartnerStore`]: the [`PartnerStore`] port over SQLite: the partners, their
//! assignments, natural keys and Graph ids.
//!
//! Every write runs through the store's writer (`writer.rs`), inside a savepoint of a group
//! commit: the partner, its assignments, its outbox row (enqueued through [`crate::outbox`]) and
//! its audit entry change together or not at all. An update reads, changes and writes the
//! partner inside that one write, so concurrent updates of one partner run one after the other.
//! Reads run on a reader connection: a single partner in one statement (one snapshot by
//! itself), a page of the listing in a plain (deferred) transaction, which gives its statements
//! one consistent WAL snapshot.
//!
//! How a change is owed to Graph (the outbox rules, `docs/delivery.md`):
//! - An update of a partner whose `create` row is `pending` (never sent, or sent and certainly
//!   not applied) folds into it: the dispatcher renders the payload from the partner row when it
//!   delivers, so Graph receives the updated partner in the one POST. Not so for an `unknown`
//!   create: Graph may hold the old version under the old name, which reconciliation matches and
//!   adopts without a PATCH. Then, and in every other case, an `update` row is enqueued; the
//!   claim runs it after every older row of its partner and of its name.
//! - A delete of a partner that never reached Graph (no Graph id, and every one of its rows
//!   `pending`) removes the partner and its rows outright: Graph never hears of it. Otherwise the
//!   partner becomes a tombstone (`deleted_at`), gone for readers but keeping its name reserved,
//!   and a `delete` row is enqueued; the outbox releases the name when Graph confirms.

use anyhow::Context;
use cmp_application::query::{Filter, ListQuery, PartnerPage};
use cmp_application::{
    ChangeQueued, ChangeWrite, NewPartnerWrite, Operation, PartnerStore, PartnerUpdate, StoreError,
    UpdatedPartner,
};
use cmp_domain::{Partner, PartnerId, TenantId};
use sqlx::SqliteConnection;

use crate::audit::{insert_audit, push_audit};
use crate::connections::Connections;
use crate::outbox;
use crate::partner_read::{Deleted, read_partner};
use crate::rows::{AssignmentRow, PartnerRow};
use crate::statements::{Statements, Value};
use crate::writer::{OneTrip, Writer, boxed};

/// Partners in SQLite. Made by [`SqliteStore::partner_store`](crate::SqliteStore::partner_store);
/// cheap to clone, since it only holds the store's pools.
#[derive(Debug, Clone)]
pub struct SqlitePartnerStore {
    pub(crate) connections: Connections,
}

impl SqlitePartnerStore {
    pub(crate) fn new(connections: Connections) -> Self {
        Self { connections }
    }
}

#[async_trait::async_trait]
impl PartnerStore for SqlitePartnerStore {
    #[tracing::instrument(level = "debug", name = "sqlite.insert_partner", skip_all, fields(partner.id = %partner.id(), outbox.id = %write.delivery.outbox_id))]
    async fn insert_partner(
        &self,
        partner: &Partner,
        write: &NewPartnerWrite,
    ) -> Result<(), StoreError> {
        insert(&self.connections.writer, partner, write).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.get_partner", skip_all, fields(partner.id = %id))]
    async fn get_partner(&self, id: PartnerId) -> Result<Option<Partner>, StoreError> {
        let cache = &self.connections.partners;
        if let Some(partner) = cache.get(id) {
            return Ok(Some(partner));
        }
        // One statement on a reader: one snapshot, one trip to the connection's thread.
        let ticket = cache.ticket();
        let mut conn = self.connections.read().await?;
        let partner = read_partner(&mut conn, &id.to_string(), Deleted::Hidden).await?;
        if let Some(partner) = &partner {
            cache.fill(ticket, partner);
        }
        Ok(partner)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.list_partners", skip_all, fields(tenant.id = %tenant_id, page_size = query.page_size))]
    async fn list_partners(
        &self,
        tenant_id: TenantId,
        query: &ListQuery,
    ) -> Result<PartnerPage, StoreError> {
        self.list(tenant_id, query).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.count_partners", skip_all, fields(tenant.id = %tenant_id))]
    async fn count_partners(
        &self,
        tenant_id: TenantId,
        filter: Option<Filter>,
    ) -> Result<u64, StoreError> {
        self.count(tenant_id, filter.as_ref()).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.update_partner", skip_all, fields(partner.id = %id, outbox.id = %update.outbox_id))]
    async fn update_partner(
        &self,
        id: PartnerId,
        update: PartnerUpdate,
    ) -> Result<UpdatedPartner, StoreError> {
        self.connections
            .write_partner(id, move |conn| {
                boxed(async move { apply_update(conn, id, update).await })
            })
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.delete_partner", skip_all, fields(partner.id = %id, outbox.id = %write.outbox_id))]
    async fn delete_partner(
        &self,
        id: PartnerId,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError> {
        let write = write.clone();
        self.connections
            .write_partner(id, move |conn| {
                boxed(async move { delete(conn, id, &write).await })
            })
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.graph_id_held_by_another", skip_all)]
    async fn graph_id_held_by_another(
        &self,
        graph_id: &str,
        except: PartnerId,
    ) -> Result<bool, StoreError> {
        let held: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM partners WHERE graph_id = ? AND id <> ? LIMIT 1")
                .bind(graph_id)
                .bind(except.to_string())
                .fetch_optional(&self.connections.reader)
                .await
                .context("looking up who holds a Graph object")?;
        Ok(held.is_some())
    }
}

// ---- the writes, run by the writer inside a savepoint of its batch ---------------------------

/// [`PartnerStore::insert_partner`]: the partner, its assignments, its create row with the
/// first delivery started, and the audit entry, in one trip (`Writer::write_one_trip`).
async fn insert(
    writer: &Writer,
    partner: &Partner,
    write: &NewPartnerWrite,
) -> Result<(), StoreError> {
    let row = PartnerRow::from_domain(partner, write.tenant_id);
    let now = write.now.unix_ticks();
    let mut insert = OneTrip::new();
    let statements = insert.statements();
    statements
        .push(
            "INSERT INTO partners (id, tenant_id, display_name, name_key, partner_state, \
             last_heartbeat, mac_os_onboarded, windows_onboarded, android_onboarded, \
             ios_onboarded, linux_onboarded, graph_id, created_at, updated_at) VALUES (",
        )
        .push_binds([
            row.id.clone().into(),
            row.tenant_id.clone().into(),
            row.display_name.clone().into(),
            row.name_key.clone().into(),
            row.partner_state.clone().into(),
            row.last_heartbeat.into(),
            row.mac_os_onboarded.into(),
            row.windows_onboarded.into(),
            row.android_onboarded.into(),
            row.ios_onboarded.into(),
            row.linux_onboarded.into(),
        ])
        .push(", NULL, ")
        .push_binds([now.into(), now.into()])
        .push("); ");
    push_assignments(statements, partner);
    outbox::push_inline_create(statements, &row, write);
    push_audit(statements, &write.audit);
    writer
        .write_one_trip(
            insert,
            |_conn, _rows| boxed(async { Ok(()) }),
            move |conn, error| {
                Box::pin(async move {
                    // The partner's own row may be in and a later statement have failed: the
                    // lookup looks past it. Whatever went in is undone with the write's savepoint.
                    refused_write(conn, error, &row, Some(&row.id), "inserting the partner").await
                })
            },
        )
        .await
}

/// [`PartnerStore::update_partner`]: the change applied to the partner as stored now, the result
/// stored with its audit entry, and the change folded into the waiting create or enqueued.
async fn apply_update(
    conn: &mut SqliteConnection,
    id: PartnerId,
    update: PartnerUpdate,
) -> Result<UpdatedPartner, StoreError> {
    let partner_id = id.to_string();
    // Under the writer, nothing changes the partner between this read and the write below.
    let stored: Option<(String,)> =
        sqlx::query_as("SELECT tenant_id FROM partners WHERE id = ? AND deleted_at IS NULL")
            .bind(&partner_id)
            .fetch_optional(&mut *conn)
            .await
            .context("reading the partner's tenant")?;
    if stored.is_none_or(|(tenant,)| tenant != update.tenant_id.to_string()) {
        return Err(StoreError::NotFound);
    }
    let current = read_partner(conn, &partner_id, Deleted::Hidden)
        .await?
        .ok_or(StoreError::NotFound)?;
    let changed = (update.change)(&current).map_err(StoreError::Invalid)?;
    let partner = changed.partner;
    let row = PartnerRow::from_domain(&partner, update.tenant_id);
    let now = update.now.unix_ticks();

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
    .execute(&mut *conn)
    .await;
    if let Err(error) = updated {
        return Err(
            refused_write(conn, error, &row, Some(&row.id), "updating the partner row").await,
        );
    }

    // A collection present in the PATCH replaces the stored one: the partner carries the
    // result, so its assignments are written afresh, in order. Unchanged assignments are left
    // alone, so a PATCH of the name alone writes no assignment page.
    if partner.platforms() != current.platforms() {
        sqlx::query("DELETE FROM partner_assignments WHERE partner_id = ?")
            .bind(&row.id)
            .execute(&mut *conn)
            .await
            .context("deleting the old assignment rows")?;
        insert_assignments(conn, &partner).await?;
    }

    let queued = if outbox::fold_into_waiting_create(conn, &row, update.now).await? {
        ChangeQueued::Folded
    } else {
        outbox::enqueue_change(
            conn,
            update.tenant_id,
            update.outbox_id,
            update.now,
            &row.id,
            row.name_key.as_deref(),
            Operation::Update,
        )
        .await?;
        ChangeQueued::Queued
    };
    insert_audit(conn, &changed.audit).await?;
    Ok(UpdatedPartner { partner, queued })
}

/// [`PartnerStore::delete_partner`]: gone outright when it never reached Graph, otherwise a
/// tombstone with a delete row enqueued.
async fn delete(
    conn: &mut SqliteConnection,
    id: PartnerId,
    write: &ChangeWrite,
) -> Result<ChangeQueued, StoreError> {
    let partner_id = id.to_string();
    let now = write.now.unix_ticks();
    let found: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT graph_id, name_key FROM partners \
         WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL",
    )
    .bind(&partner_id)
    .bind(write.tenant_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .context("reading the partner to delete")?;
    let Some((graph_id, name_key)) = found else {
        return Err(StoreError::NotFound);
    };

    let never_reached_graph =
        graph_id.is_none() && outbox::all_rows_pending(conn, &partner_id).await?;
    let queued = if never_reached_graph {
        // The rows first: their foreign key forbids deleting a partner they deliver. Their
        // deliveries, and the partner's assignments, go by cascade.
        outbox::remove_rows_of(conn, &partner_id).await?;
        sqlx::query("DELETE FROM partners WHERE id = ?")
            .bind(&partner_id)
            .execute(&mut *conn)
            .await
            .context("deleting the partner row")?;
        ChangeQueued::Folded
    } else {
        sqlx::query("UPDATE partners SET deleted_at = ?, updated_at = ? WHERE id = ?")
            .bind(now)
            .bind(now)
            .bind(&partner_id)
            .execute(&mut *conn)
            .await
            .context("marking the partner deleted")?;
        outbox::enqueue_change(
            conn,
            write.tenant_id,
            write.outbox_id,
            write.now,
            &partner_id,
            name_key.as_deref(),
            Operation::Delete,
        )
        .await?;
        ChangeQueued::Queued
    };
    insert_audit(conn, &write.audit).await?;
    Ok(queued)
}

/// The error of a partner write the database refused: a taken natural key is the caller's
/// duplicate; anything else (an id collision included) is ours.
///
/// Two unique constraints guard the table, the primary key and the natural key, and
/// `is_unique_violation()` cannot say which fired (SQLite reports no constraint name to sqlx),
/// so look. The lookup runs inside the failed statement's savepoint: SQLite aborts only the
/// statement, not the transaction.
async fn refused_write(
    conn: &mut SqliteConnection,
    error: sqlx::Error,
    row: &PartnerRow,
    except: Option<&str>,
    doing: &'static str,
) -> StoreError {
    let unique = matches!(&error, sqlx::Error::Database(db) if db.is_unique_violation());
    if unique {
        match name_key_taken(conn, row, except).await {
            Ok(true) => {
                return StoreError::DuplicateDisplayName {
                    display_name: row.display_name.clone(),
                };
            }
            Ok(false) => {}
            Err(lookup) => return StoreError::Unexpected(lookup),
        }
    }
    StoreError::Unexpected(anyhow::Error::new(error).context(doing))
}

/// Whether a partner of the row's tenant other than `except` (the row's own partner, on an
/// update) already has its natural key. Deleted partners count: their name stays reserved until
/// Graph confirms the delete.
pub(crate) async fn name_key_taken(
    conn: &mut SqliteConnection,
    row: &PartnerRow,
    except: Option<&str>,
) -> anyhow::Result<bool> {
    let taken: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM partners WHERE tenant_id = ? AND name_key = ? AND id IS NOT ?",
    )
    .bind(&row.tenant_id)
    .bind(&row.name_key)
    .bind(except)
    .fetch_optional(conn)
    .await
    .context("looking for a partner with the same natural key")?;
    Ok(taken.is_some())
}

/// How many assignment rows one multi-row `INSERT` carries: 10 bound values each, so a batch
/// stays far below SQLite's limit of 32,766 variables per statement.
const ASSIGNMENTS_PER_INSERT: usize = 500;

/// Inserts the assignment rows of `partner`, each platform's list numbered from 0, in a few
/// multi-row statements rather than one per assignment.
async fn insert_assignments(conn: &mut SqliteConnection, partner: &Partner) -> anyhow::Result<()> {
    let mut insert = Statements::default();
    push_assignments(&mut insert, partner);
    insert
        .execute(&mut *conn)
        .await
        .context("inserting assignment rows")?;
    Ok(())
}

/// Appends to `statements` the multi-row inserts of the assignment rows of `partner` (none when
/// it has no assignments).
fn push_assignments(statements: &mut Statements, partner: &Partner) {
    let partner_id = Value::from(partner.id().to_string());
    let rows = AssignmentRow::all_of(partner);
    for batch in rows.chunks(ASSIGNMENTS_PER_INSERT) {
        statements.push(
            "INSERT INTO partner_assignments (partner_id, platform, position, target_type, \
             filter_type, filter_id, group_id, collection_id, scope_tag_target_type, \
             entra_object_id) VALUES ",
        );
        for (index, assignment) in batch.iter().enumerate() {
            statements
                .push(if index == 0 { "(" } else { ", (" })
                .push_binds([
                    partner_id.clone(),
                    assignment.platform.clone().into(),
                    assignment.position.into(),
                    assignment.target_type.clone().into(),
                    assignment.filter_type.clone().into(),
                    assignment.filter_id.clone().into(),
                    assignment.group_id.clone().into(),
                    assignment.collection_id.clone().into(),
                    assignment.scope_tag_target_type.clone().into(),
                    assignment.entra_object_id.clone().into(),
                ])
                .push(")");
        }
        statements.push("; ");
    }
}

#[cfg(test)]
mod tests;
