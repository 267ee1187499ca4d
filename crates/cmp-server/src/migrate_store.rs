//! `cmp-server migrate-store --from sqlite:PATH --to postgres:URL`: copies a SQLite database
//! into PostgreSQL, for moving one box to several replicas.
//!
//! Every table is copied in the order its foreign keys need, oldest row first (so PostgreSQL's
//! insertion order, the tie-breaker of rows written at the same instant, is SQLite's), in
//! batches, each row `ON CONFLICT DO NOTHING`: a second run copies nothing twice, and a run cut
//! short is finished by the next. At the end every table's rows are counted on both sides; the
//! copy fails when PostgreSQL holds fewer than SQLite. Run it while the service is stopped.

use std::path::Path;

use anyhow::{Context, ensure};
use cmp_postgres::{PostgresSettings, PostgresStore};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};

/// How a column is read from SQLite and written to PostgreSQL.
#[derive(Debug, Clone, Copy)]
enum Column {
    Text(&'static str),
    Integer(&'static str),
    /// SQLite's 0/1, PostgreSQL's boolean.
    Flag(&'static str),
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Self::Text(name) | Self::Integer(name) | Self::Flag(name) => name,
        }
    }
}

use Column::{Flag, Integer, Text};

/// The tables, parents first, each with the order its rows are read in (the oldest first where
/// PostgreSQL numbers them with an identity `seq`; the key where SQLite keeps no rowid) and the
/// columns both schemas share (PostgreSQL's generated `partner_state_order` and identity `seq`
/// fill themselves).
const TABLES: [(&str, &str, &[Column]); 5] = [
    (
        "partners",
        "created_at, id",
        &[
            Text("id"),
            Text("tenant_id"),
            Text("display_name"),
            Text("name_key"),
            Text("partner_state"),
            Integer("last_heartbeat"),
            Flag("mac_os_onboarded"),
            Flag("windows_onboarded"),
            Flag("android_onboarded"),
            Flag("ios_onboarded"),
            Flag("linux_onboarded"),
            Text("graph_id"),
            Integer("created_at"),
            Integer("updated_at"),
            Integer("deleted_at"),
        ],
    ),
    (
        "partner_assignments",
        "partner_id, platform, position",
        &[
            Text("partner_id"),
            Text("platform"),
            Integer("position"),
            Text("target_type"),
            Text("filter_type"),
            Text("filter_id"),
            Text("group_id"),
            Text("collection_id"),
            Text("scope_tag_target_type"),
            Text("entra_object_id"),
        ],
    ),
    (
        "outbox",
        "rowid",
        &[
            Text("id"),
            Text("tenant_id"),
            Text("partner_id"),
            Text("operation"),
            Text("natural_key"),
            Text("state"),
            Integer("attempts"),
            Integer("next_attempt_at"),
            Text("lease_owner"),
            Integer("lease_expires_at"),
            Integer("last_status"),
            Text("last_error_code"),
            Text("last_client_request_id"),
            Text("graph_id"),
            Integer("created_at"),
            Integer("updated_at"),
            Integer("first_attempt_at"),
            Text("dead_reason"),
        ],
    ),
    (
        "deliveries",
        "outbox_id, attempt",
        &[
            Text("outbox_id"),
            Integer("attempt"),
            Text("client_request_id"),
            Integer("started_at"),
            Integer("finished_at"),
            Integer("http_status"),
            Text("graph_error_code"),
            Text("graph_request_id"),
            Text("outcome"),
        ],
    ),
    (
        "audit_log",
        "rowid",
        &[
            Text("id"),
            Text("partner_id"),
            Text("action"),
            Text("request_id"),
            Text("caller"),
            Integer("at"),
            Text("detail"),
        ],
    ),
];

/// Rows per `INSERT`: at most 18 columns each, far below PostgreSQL's 65,535 parameters.
const ROWS_PER_BATCH: usize = 500;

/// What was copied from one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    /// The table.
    pub table: &'static str,
    /// Rows in SQLite.
    pub source_rows: u64,
    /// Rows written to PostgreSQL by this run (the rest were there already).
    pub copied: u64,
    /// Rows in PostgreSQL at the end.
    pub target_rows: u64,
}

/// Copies the SQLite database at `source` into the PostgreSQL database `target` (migrated
/// first), then checks the row counts.
///
/// # Errors
/// When either database cannot be opened, a row cannot be copied, or PostgreSQL holds fewer
/// rows of a table than SQLite at the end.
pub async fn migrate_store(source: &Path, target: &str) -> anyhow::Result<Vec<TableCopy>> {
    ensure!(
        source.is_file(),
        "there is no SQLite database at {}",
        source.display()
    );
    // Read only: the copy never changes the source.
    let sqlite = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(source).read_only(true))
        .await
        .with_context(|| format!("opening the SQLite database {}", source.display()))?;
    let postgres = PostgresStore::open(&PostgresSettings {
        url: target.to_owned(),
        pool_size: 2,
        connect_timeout: std::time::Duration::from_secs(30),
        statement_timeout: std::time::Duration::from_secs(300),
        replica_id: "migrate-store".to_owned(),
    })
    .await?;

    let mut report = Vec::with_capacity(TABLES.len());
    for (table, order, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|column| column.name()).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {table} ORDER BY {order}",
            names.join(", ")
        )))
        .fetch_all(&sqlite)
        .await
        .with_context(|| format!("reading {table} from SQLite"))?;
        let mut copied = 0;
        for batch in rows.chunks(ROWS_PER_BATCH) {
            let mut insert = QueryBuilder::<Postgres>::new(format!(
                "INSERT INTO {table} ({}) ",
                names.join(", ")
            ));
            let mut failed = None;
            insert.push_values(batch, |mut values, row| {
                for (index, column) in columns.iter().enumerate() {
                    let bound = match column {
                        Text(_) => row.try_get::<Option<String>, _>(index).map(|text| {
                            values.push_bind(text);
                        }),
                        Integer(_) => row.try_get::<Option<i64>, _>(index).map(|number| {
                            values.push_bind(number);
                        }),
                        Flag(_) => row.try_get::<Option<i64>, _>(index).map(|flag| {
                            values.push_bind(flag.map(|flag| flag != 0));
                        }),
                    };
                    if let Err(error) = bound {
                        failed.get_or_insert(error);
                    }
                }
            });
            if let Some(error) = failed {
                return Err(error).with_context(|| format!("reading a row of {table}"));
            }
            insert.push(" ON CONFLICT DO NOTHING");
            copied += insert
                .build()
                .execute(postgres.pool())
                .await
                .with_context(|| format!("writing {table} to PostgreSQL"))?
                .rows_affected();
        }
        let target_rows: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(postgres.pool())
                .await
                .with_context(|| format!("counting {table} in PostgreSQL"))?;
        report.push(TableCopy {
            table,
            source_rows: u64::try_from(rows.len()).unwrap_or(u64::MAX),
            copied,
            target_rows: u64::try_from(target_rows).unwrap_or(0),
        });
    }
    sqlite.close().await;
    postgres.close().await;
    for table in &report {
        ensure!(
            table.target_rows >= table.source_rows,
            "{}: SQLite holds {} rows but PostgreSQL only {}",
            table.table,
            table.source_rows,
            table.target_rows
        );
    }
    Ok(report)
}
