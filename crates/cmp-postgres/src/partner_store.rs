//! [`PostgresPartnerStore`]: the [`PartnerStore`] port over PostgreSQL, with the behaviour of
//! the SQLite store (the outbox rules are in `docs/delivery.md`; the contract tests run against
//! both).
//!
//! Every write is one transaction: the partner, its assignments, its outbox row (enqueued
//! through [`crate::outbox`]) and its audit entry change together or not at all. Where SQLite
//! relies on its single writer, this store locks: an update or delete reads its partner `FOR
//! UPDATE`, so concurrent changes of one partner (from any replica) run one after the other, each
//! over the result of the one before; the natural key is the table's `UNIQUE` constraint, which
//! PostgreSQL checks across concurrent transactions.

use anyhow::Context;
use cmp_application::query::{Filter, ListQuery, PartnerPage};
use cmp_application::{
    ChangeQueued, ChangeWrite, NewPartnerWrite, Operation, PartnerStore, PartnerUpdate, StoreError,
    UpdatedPartner,
};
use cmp_domain::{Partner, PartnerId, TenantId};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use crate::audit::insert_audit;
use crate::outbox;
use crate::partner_read::{Deleted, read_partner};
use crate::replica::Replica;
use crate::rows::{AssignmentRow, PartnerRow};

/// The name of the natural key's constraint in the migration; a violation of it is the caller's
/// duplicate, any other is ours.
const NATURAL_KEY_CONSTRAINT: &str = "partners_natural_key";

/// Partners in PostgreSQL. Made by
/// [`PostgresStore::partner_store`](crate::PostgresStore::partner_store); cheap to clone.
#[derive(Debug, Clone)]
pub struct PostgresPartnerStore {
    pub(crate) pool: PgPool,
    replica: Replica,
}

impl PostgresPartnerStore {
    pub(crate) fn new(pool: PgPool, replica: Replica) -> Self {
        Self { pool, replica }
    }

    async fn begin(&self) -> anyhow::Result<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.context("beginning a transaction")
    }
}

#[async_trait::async_trait]
impl PartnerStore for PostgresPartnerStore {
    #[tracing::instrument(name = "postgres.insert_partner", skip_all, fields(partner.id = %partner.id(), outbox.id = %write.delivery.outbox_id))]
    async fn insert_partner(
        &self,
        partner: &Partner,
        write: &NewPartnerWrite,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let owner = self.replica.owner(&write.delivery.lease.owner);
        insert(&mut tx, partner, write, &owner).await?;
        tx.commit().await.context("committing the new partner")?;
        Ok(())
    }

    #[tracing::instrument(name = "postgres.get_partner", skip_all, fields(partner.id = %id))]
    async fn get_partner(&self, id: PartnerId) -> Result<Option<Partner>, StoreError> {
        // REPEATABLE READ: the partner and its assignments come from one snapshot.
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .context("making the read consistent")?;
        let partner = read_partner(&mut tx, &id.to_string(), Deleted::Hidden, false).await?;
        tx.commit().await.context("ending the read transaction")?;
        Ok(partner)
    }

    #[tracing::instrument(name = "postgres.list_partners", skip_all, fields(tenant.id = %tenant_id, page_size = query.page_size))]
    async fn list_partners(
        &self,
        tenant_id: TenantId,
        query: &ListQuery,
    ) -> Result<PartnerPage, StoreError> {
        self.list(tenant_id, query).await
    }

    #[tracing::instrument(name = "postgres.count_partners", skip_all, fields(tenant.id = %tenant_id))]
    async fn count_partners(
        &self,
        tenant_id: TenantId,
        filter: Option<Filter>,
    ) -> Result<u64, StoreError> {
        self.count(tenant_id, filter.as_ref()).await
    }

    #[tracing::instrument(name = "postgres.update_partner", skip_all, fields(partner.id = %id, outbox.id = %update.outbox_id))]
    async fn update_partner(
        &self,
        id: PartnerId,
        update: PartnerUpdate,
    ) -> Result<UpdatedPartner, StoreError> {
        let mut tx = self.begin().await?;
        let updated = apply_update(&mut tx, id, update).await?;
        tx.commit().await.context("committing the update")?;
        Ok(updated)
    }

    #[tracing::instrument(name = "postgres.delete_partner", skip_all, fields(partner.id = %id, outbox.id = %write.outbox_id))]
    async fn delete_partner(
        &self,
        id: PartnerId,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError> {
        let mut tx = self.begin().await?;
        let queued = delete(&mut tx, id, write).await?;
        tx.commit().await.context("committing the delete")?;
        Ok(queued)
    }

    #[tracing::instrument(name = "postgres.graph_id_held_by_another", skip_all)]
    async fn graph_id_held_by_another(
        &self,
        graph_id: &str,
        except: PartnerId,
    ) -> Result<bool, StoreError> {
        let held: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM partners WHERE graph_id = $1 AND id <> $2 LIMIT 1")
                .bind(graph_id)
                .bind(except.to_string())
                .fetch_optional(&self.pool)
                .await
                .context("looking up who holds a Graph object")?;
        Ok(held.is_some())
    }
}

// ---- the writes, each inside the caller's transaction ----------------------------------------

/// [`PartnerStore::insert_partner`]: the partner, its assignments, its create row with the
/// first delivery started, and the audit entry.
async fn insert(
    conn: &mut PgConnection,
    partner: &Partner,
    write: &NewPartnerWrite,
    owner: &str,
) -> Result<(), StoreError> {
    let row = PartnerRow::from_domain(partner, write.tenant_id);
    let now = write.now.unix_ticks();
    let inserted = sqlx::query(
        "INSERT INTO partners (id, tenant_id, display_name, name_key, partner_state, \
         last_heartbeat, mac_os_onboarded, windows_onboarded, android_onboarded, \
         ios_onboarded, linux_onboarded, graph_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $13)",
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
    .execute(&mut *conn)
    .await;
    if let Err(error) = inserted {
        return Err(refused_write(error, &row, "inserting the partner row"));
    }
    insert_assignments(conn, partner).await?;
    outbox::enqueue_inline_create(conn, &row, write, owner).await?;
    insert_audit(conn, &write.audit).await?;
    Ok(())
}

/// [`PartnerStore::update_partner`]: the change applied to the partner as stored now (locked
/// until the commit), the result stored with its audit entry, and the change folded into the
/// waiting create or enqueued.
async fn apply_update(
    conn: &mut PgConnection,
    id: PartnerId,
    update: PartnerUpdate,
) -> Result<UpdatedPartner, StoreError> {
    let partner_id = id.to_string();
    let current = read_partner(conn, &partner_id, Deleted::Hidden, true)
        .await?
        .ok_or(StoreError::NotFound)?;
    let stored_tenant: String = sqlx::query_scalar("SELECT tenant_id FROM partners WHERE id = $1")
        .bind(&partner_id)
        .fetch_one(&mut *conn)
        .await
        .context("reading the partner's tenant")?;
    if stored_tenant != update.tenant_id.to_string() {
        return Err(StoreError::NotFound);
    }
    let changed = (update.change)(&current).map_err(StoreError::Invalid)?;
    let partner = changed.partner;
    let row = PartnerRow::from_domain(&partner, update.tenant_id);
    let now = update.now.unix_ticks();

    let updated = sqlx::query(
        "UPDATE partners SET display_name = $1, name_key = $2, partner_state = $3, \
         last_heartbeat = $4, mac_os_onboarded = $5, windows_onboarded = $6, \
         android_onboarded = $7, ios_onboarded = $8, linux_onboarded = $9, updated_at = $10 \
         WHERE id = $11 AND tenant_id = $12 AND deleted_at IS NULL",
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
        return Err(refused_write(error, &row, "updating the partner row"));
    }

    // A collection present in the PATCH replaces the stored one; unchanged assignments are left
    // alone, so a PATCH of the name alone writes no assignment.
    if partner.platforms() != current.platforms() {
        sqlx::query("DELETE FROM partner_assignments WHERE partner_id = $1")
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
/// tombstone with a delete row enqueued. The partner and its outbox rows are locked first, so a
/// dispatcher of another replica cannot claim its create between the check and the removal.
async fn delete(
    conn: &mut PgConnection,
    id: PartnerId,
    write: &ChangeWrite,
) -> Result<ChangeQueued, StoreError> {
    let partner_id = id.to_string();
    let now = write.now.unix_ticks();
    let found: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT graph_id, name_key FROM partners \
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(&partner_id)
    .bind(write.tenant_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .context("reading the partner to delete")?;
    let Some((graph_id, name_key)) = found else {
        return Err(StoreError::NotFound);
    };

    outbox::lock_rows_of(conn, &partner_id).await?;
    let never_reached_graph =
        graph_id.is_none() && outbox::all_rows_pending(conn, &partner_id).await?;
    let queued = if never_reached_graph {
        outbox::remove_rows_of(conn, &partner_id).await?;
        sqlx::query("DELETE FROM partners WHERE id = $1")
            .bind(&partner_id)
            .execute(&mut *conn)
            .await
            .context("deleting the partner row")?;
        ChangeQueued::Folded
    } else {
        sqlx::query("UPDATE partners SET deleted_at = $1, updated_at = $2 WHERE id = $3")
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

/// The error of a partner write the database refused: a violation of the natural key's
/// constraint is the caller's duplicate; anything else (an id collision included) is ours.
fn refused_write(error: sqlx::Error, row: &PartnerRow, doing: &'static str) -> StoreError {
    let duplicate_name = matches!(
        &error,
        sqlx::Error::Database(db)
            if db.is_unique_violation() && db.constraint() == Some(NATURAL_KEY_CONSTRAINT)
    );
    if duplicate_name {
        return StoreError::DuplicateDisplayName {
            display_name: row.display_name.clone(),
        };
    }
    StoreError::Unexpected(anyhow::Error::new(error).context(doing))
}

/// How many assignment rows one multi-row `INSERT` carries: 10 bound values each, far below
/// PostgreSQL's limit of 65,535 parameters per statement.
const ASSIGNMENTS_PER_INSERT: usize = 500;

/// Inserts the assignment rows of `partner`, each platform's list numbered from 0.
pub(crate) async fn insert_assignments(
    conn: &mut PgConnection,
    partner: &Partner,
) -> anyhow::Result<()> {
    let partner_id = partner.id().to_string();
    let rows = AssignmentRow::all_of(partner);
    for batch in rows.chunks(ASSIGNMENTS_PER_INSERT) {
        let mut insert = QueryBuilder::<Postgres>::new(
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
            .execute(&mut *conn)
            .await
            .context("inserting assignment rows")?;
    }
    Ok(())
}
