//! The bare server the service is measured against: the same stack (axum, sqlx, SQLite in WAL
//! mode with `synchronous=FULL`) doing the least a create can do, one `INSERT` of the raw body
//! in its own transaction, and one `SELECT` for a GET. No validation, auth, logging or outbox.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The path both servers are loaded on.
const COLLECTION: &str = "/beta/deviceManagement/complianceManagementPartners";

/// Serves the bare server on `127.0.0.1:port` over the database file `database`.
///
/// # Errors
/// When the database cannot be opened or the port bound.
pub fn serve(port: u16, database: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("a runtime")?;
    runtime.block_on(async {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .context("sqlite options")?
            .filename(database)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .context("opening the database")?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS partners (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
        )
        .execute(&pool)
        .await
        .context("creating the table")?;
        let app = Router::new()
            .route(COLLECTION, post(create))
            .route(&format!("{COLLECTION}/{{id}}"), get(read))
            .with_state(pool);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .context("binding")?;
        axum::serve(listener, app).await.context("serving")
    })
}

async fn create(State(pool): State<SqlitePool>, body: Bytes) -> (StatusCode, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let text = String::from_utf8_lossy(&body).into_owned();
    match sqlx::query("INSERT INTO partners (id, body) VALUES (?, ?)")
        .bind(&id)
        .bind(&text)
        .execute(&pool)
        .await
    {
        Ok(_) => (StatusCode::CREATED, format!(r#"{{"id":"{id}"}}"#)),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

async fn read(
    State(pool): State<SqlitePool>,
    UrlPath(id): UrlPath<String>,
) -> (StatusCode, String) {
    match sqlx::query_scalar::<_, String>("SELECT body FROM partners WHERE id = ?")
        .bind(&id)
        .fetch_optional(&pool)
        .await
    {
        Ok(Some(body)) => (StatusCode::OK, body),
        Ok(None) => (StatusCode::NOT_FOUND, String::new()),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}
