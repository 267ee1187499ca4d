//! [`read_partner`]: one partner with its assignments in one statement, for the partner store
//! and for the outbox's claim.

use anyhow::Context;
use cmp_domain::Partner;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::rows::{PartnerJoinedRow, partner_row_columns};

/// Whether a read sees partners that callers deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// Callers' view: a deleted partner is gone.
    Hidden,
    /// The dispatcher's view: a `delete` row still renders from its partner.
    Included,
}

/// Reads the partner `id` (its row and assignments) inside the caller's transaction; with
/// `lock`, the partner row stays locked until the transaction ends.
///
/// # Errors
/// When a statement fails or the stored rows no longer parse into a [`Partner`].
pub(crate) async fn read_partner(
    conn: &mut PgConnection,
    id: &str,
    deleted: Deleted,
    lock: bool,
) -> anyhow::Result<Option<Partner>> {
    // One statement, as in the SQLite store: the partner left-joined with its assignments
    // (one row with NULL assignment columns when it has none).
    let mut select = QueryBuilder::<Postgres>::new(concat!(
        "SELECT ",
        partner_row_columns!(),
        ", platform, position, target_type, filter_type, filter_id, group_id, \
         collection_id, scope_tag_target_type, entra_object_id \
         FROM partners LEFT JOIN partner_assignments ON partner_id = id WHERE id = "
    ));
    select.push_bind(id.to_owned());
    if deleted == Deleted::Hidden {
        select.push(" AND deleted_at IS NULL");
    }
    select.push(" ORDER BY platform, position");
    if lock {
        // Only the partner's row: the assignments are on the nullable side of the join.
        select.push(" FOR UPDATE OF partners");
    }
    let rows: Vec<PartnerJoinedRow> = select
        .build_query_as()
        .fetch_all(&mut *conn)
        .await
        .context("reading the partner with its assignments")?;
    PartnerJoinedRow::into_domain(rows)
}
