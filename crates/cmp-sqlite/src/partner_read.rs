//! [`read_partner`]: one partner with its assignments in one statement, for the partner store
//! and for the outbox's claim.

use anyhow::Context;
use cmp_domain::Partner;
use sqlx::SqliteConnection;

use crate::rows::{PartnerJoinedRow, partner_row_columns};

/// Whether a read sees partners that callers deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// Callers' view: a deleted partner is gone.
    Hidden,
    /// The dispatcher's view: a `delete` row still renders from its partner.
    Included,
}

/// Reads the partner `id` (its row and assignments) on `conn`, in one statement:
/// [`PartnerStore::get_partner`] on a reader, where a deleted partner is `None`
/// ([`Deleted::Hidden`]); an update and the dispatcher's claim on the writer, which still reads
/// a deleted one ([`Deleted::Included`]) for its `delete` row.
///
/// One statement is one snapshot, so the partner and its assignments agree even when an undo
/// commits meanwhile, without a read transaction around them; and it is one trip to the
/// connection's thread instead of four (begin, two selects, commit).
///
/// # Errors
/// When the statement fails or the stored rows no longer parse into a [`Partner`].
pub(crate) async fn read_partner(
    conn: &mut SqliteConnection,
    id: &str,
    deleted: Deleted,
) -> anyhow::Result<Option<Partner>> {
    let rows: Vec<PartnerJoinedRow> = sqlx::query_as(read_partner_statement(deleted))
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .context("reading the partner and its assignments")?;
    PartnerJoinedRow::into_domain(rows)
}

/// The statement of [`read_partner`]: the partner `?` left-joined with its assignments, which
/// the assignments' primary key finds in order.
fn read_partner_statement(deleted: Deleted) -> &'static str {
    macro_rules! joined {
        ($condition:literal) => {
            concat!(
                "SELECT ",
                partner_row_columns!(),
                ", platform, position, target_type, filter_type, filter_id, group_id, \
                 collection_id, scope_tag_target_type, entra_object_id \
                 FROM partners LEFT JOIN partner_assignments ON partner_id = id \
                 WHERE id = ?",
                $condition
            )
        };
    }
    match deleted {
        Deleted::Hidden => joined!(" AND deleted_at IS NULL"),
        Deleted::Included => joined!(""),
    }
}
