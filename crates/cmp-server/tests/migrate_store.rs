//! `cmp-server migrate-store`: a SQLite database copied into a fresh PostgreSQL database, every
//! row once, also when run twice. Needs the PostgreSQL server of `CMP_TEST_POSTGRES_URL`
//! (`.ci/run` starts one); skipped with a printed notice without it, unless
//! `CMP_REQUIRE_POSTGRES=1`.

use std::io::Write;
use std::process::Command;

use cmp_application::PartnerStore;
use cmp_sqlite::{SqliteSettings, SqliteStore};
use cmp_store_contract::{now, plain_partner, rich_partner, tenant, write_for};
use sqlx::{Connection, PgConnection};

/// The test server's URL, or `None` (with the notice) when the test cannot run here.
fn test_server() -> Option<String> {
    match std::env::var("CMP_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            let required = std::env::var("CMP_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
            assert!(
                !required,
                "CMP_REQUIRE_POSTGRES=1 but CMP_TEST_POSTGRES_URL is not set"
            );
            let _ = writeln!(
                std::io::stderr(),
                "\nskipped: no PostgreSQL: migrate-store is not tested (CMP_TEST_POSTGRES_URL is not set)"
            );
            None
        }
    }
}

fn migrate(source: &std::path::Path, target: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cmp-server"))
        .arg("migrate-store")
        .arg(format!("--from=sqlite:{}", source.display()))
        .arg(format!("--to=postgres:{target}"))
        .env_remove("CMP_ENV")
        .output()
        .expect("run migrate-store");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test]
async fn a_sqlite_database_is_copied_once_and_a_rerun_copies_nothing() {
    let Some(server) = test_server() else {
        return;
    };
    let dir = tempfile::TempDir::new().expect("temp dir");
    let settings = SqliteSettings {
        path: dir.path().join("partners.db"),
        busy_timeout_ms: 5000,
        max_read_connections: 1,
    };
    let store = SqliteStore::open(&settings).await.expect("open SQLite");
    let partners = [rich_partner(1), plain_partner(2, "Second", now())];
    for (seed, partner) in (1_u128..).zip(&partners) {
        store
            .partner_store()
            .insert_partner(partner, &write_for(partner, tenant(), seed * 100))
            .await
            .expect("insert");
    }
    store.close().await;

    let name = format!("cmp_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let mut target: url::Url = server.parse().expect("a URL");
    target.set_path(&name);

    let first = migrate(&settings.path, target.as_str());
    let second = migrate(&settings.path, target.as_str());
    let copied = PostgresCopy::read(target.as_str()).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop database");

    assert!(first.0, "{}", first.1);
    assert!(
        first
            .1
            .contains("partners: 2 rows in SQLite, 2 copied, 2 in PostgreSQL"),
        "{}",
        first.1
    );
    assert!(
        first
            .1
            .contains("partner_assignments: 23 rows in SQLite, 23 copied"),
        "{}",
        first.1
    );
    assert!(second.0, "{}", second.1);
    assert!(
        second
            .1
            .contains("partners: 2 rows in SQLite, 0 copied, 2 in PostgreSQL"),
        "{}",
        second.1
    );
    assert!(
        second
            .1
            .contains("audit_log: 2 rows in SQLite, 0 copied, 2 in PostgreSQL"),
        "{}",
        second.1
    );
    assert_eq!(copied.names, ["contoso ünïcode partner", "second"]);
    assert_eq!(copied.in_flight_outbox_rows, 2);
}

/// What the copy holds, read back from PostgreSQL.
struct PostgresCopy {
    names: Vec<String>,
    in_flight_outbox_rows: i64,
}

impl PostgresCopy {
    async fn read(url: &str) -> Self {
        let mut conn = PgConnection::connect(url)
            .await
            .expect("connect to the copy");
        let names = sqlx::query_scalar("SELECT name_key FROM partners ORDER BY name_key")
            .fetch_all(&mut conn)
            .await
            .expect("names");
        let in_flight_outbox_rows =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'in_flight'")
                .fetch_one(&mut conn)
                .await
                .expect("outbox rows");
        conn.close().await.expect("close");
        Self {
            names,
            in_flight_outbox_rows,
        }
    }
}
