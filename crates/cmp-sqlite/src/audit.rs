//! The audit log in SQLite: entries written inside the transaction of the change they record,
//! and read back for a partner's history.

use anyhow::Context;
use cmp_application::AuditEntry;
use sqlx::SqliteConnection;

use crate::rows::AuditRow;
use crate::statements::Statements;

/// Appends `entry` to the audit log, on the caller's transaction.
pub(crate) async fn insert_audit(
    conn: &mut SqliteConnection,
    entry: &AuditEntry,
) -> anyhow::Result<()> {
    let mut insert = Statements::default();
    push_audit(&mut insert, entry);
    insert
        .execute(conn)
        .await
        .context("inserting the audit entry")?;
    Ok(())
}

/// Appends the statement that inserts `entry` to `statements`, for a write that sends its
/// statements in one trip (`statements.rs`).
pub(crate) fn push_audit(statements: &mut Statements, entry: &AuditEntry) {
    let row = AuditRow::from_domain(entry);
    statements
        .push(
            "INSERT INTO audit_log (id, partner_id, action, request_id, caller, at, detail) \
             VALUES (",
        )
        .push_binds([
            row.id.into(),
            row.partner_id.into(),
            row.action.into(),
            row.request_id.into(),
            row.caller.into(),
            row.at.into(),
            row.detail.into(),
        ])
        .push("); ");
}

/// The audit entries of `partner_id`, oldest first.
pub(crate) async fn read_audit(
    conn: &mut SqliteConnection,
    partner_id: &str,
) -> anyhow::Result<Vec<AuditEntry>> {
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT id, partner_id, action, request_id, caller, at, detail FROM audit_log \
         WHERE partner_id = ? ORDER BY at, rowid",
    )
    .bind(partner_id)
    .fetch_all(conn)
    .await
    .context("reading the partner's audit entries")?;
    rows.into_iter().map(AuditRow::into_domain).collect()
}
