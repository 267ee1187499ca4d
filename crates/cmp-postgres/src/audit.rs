//! The audit log in PostgreSQL: entries written inside the transaction of the change they
//! record, and read back for a partner's history.

use anyhow::Context;
use cmp_application::AuditEntry;
use sqlx::PgConnection;

use crate::rows::AuditRow;

/// Appends `entry` to the audit log, on the caller's transaction.
pub(crate) async fn insert_audit(
    conn: &mut PgConnection,
    entry: &AuditEntry,
) -> anyhow::Result<()> {
    let row = AuditRow::from_domain(entry);
    sqlx::query(
        "INSERT INTO audit_log (id, partner_id, action, request_id, caller, at, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.id)
    .bind(&row.partner_id)
    .bind(&row.action)
    .bind(&row.request_id)
    .bind(&row.caller)
    .bind(row.at)
    .bind(&row.detail)
    .execute(conn)
    .await
    .context("inserting the audit entry")?;
    Ok(())
}

/// The audit entries of `partner_id`, oldest first (insertion order breaks a tie).
pub(crate) async fn read_audit(
    conn: &mut PgConnection,
    partner_id: &str,
) -> anyhow::Result<Vec<AuditEntry>> {
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT id, partner_id, action, request_id, caller, at, detail FROM audit_log \
         WHERE partner_id = $1 ORDER BY at, seq",
    )
    .bind(partner_id)
    .fetch_all(conn)
    .await
    .context("reading the partner's audit entries")?;
    rows.into_iter().map(AuditRow::into_domain).collect()
}
