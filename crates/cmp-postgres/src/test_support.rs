//! Test support: the PostgreSQL backend of the store contract tests (`cmp-store-contract`).
//!
//! Each test gets a database of its own, created on the server `CMP_TEST_POSTGRES_URL` names
//! (`.ci/run` starts one) and dropped when the test's store goes, passed or failed. Without the
//! variable the tests are skipped with a printed notice, unless `CMP_REQUIRE_POSTGRES=1`.

use std::sync::Arc;
use std::time::Duration;

use cmp_store_contract::{Backend, Inspection, Ports, TestStore};
use sqlx::{Connection, PgConnection};

use crate::{PostgresSettings, PostgresStore};

/// The variable naming the server the tests create their databases on.
pub(crate) const URL_VARIABLE: &str = "CMP_TEST_POSTGRES_URL";

/// The PostgreSQL store, for the contract tests: available when [`URL_VARIABLE`] is set.
pub(crate) fn backend() -> Backend {
    Backend {
        name: "PostgreSQL",
        unavailable: || {
            std::env::var(URL_VARIABLE)
                .is_err()
                .then(|| format!("{URL_VARIABLE} is not set"))
        },
        open: || Box::pin(open_contract_store()),
    }
}

/// Whether the PostgreSQL tests can run here. Without [`URL_VARIABLE`] it writes one line
/// saying that `what` was skipped and answers `false`, unless `CMP_REQUIRE_POSTGRES=1`, which
/// makes the missing server a failure.
///
/// # Panics
/// When the server is required and not configured.
pub(crate) fn postgres_available(what: &str) -> bool {
    if std::env::var(URL_VARIABLE).is_ok() {
        return true;
    }
    let required = std::env::var("CMP_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
    assert!(
        !required,
        "CMP_REQUIRE_POSTGRES=1 but {URL_VARIABLE} is not set"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\nskipped: no PostgreSQL: {what} is not tested ({URL_VARIABLE} is not set)"
    );
    false
}

/// A database created for one test, dropped (with its connections) when this goes.
pub(crate) struct TestDatabase {
    server_url: String,
    name: String,
    /// The URL of the database itself.
    pub(crate) url: String,
}

impl TestDatabase {
    /// Creates an empty database with a fresh name on the test server.
    pub(crate) async fn create() -> Self {
        let server_url = std::env::var(URL_VARIABLE).expect("the test server's URL");
        let name = format!("cmp_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server_url)
            .await
            .expect("connecting to the test server");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("creating the test database");
        let _ = admin.close().await;
        let mut url: url::Url = server_url.parse().expect("a URL");
        url.set_path(&name);
        Self {
            url: url.to_string(),
            server_url,
            name,
        }
    }

    /// Settings of a store on this database, as replica `replica`.
    pub(crate) fn settings(&self, replica: &str) -> PostgresSettings {
        PostgresSettings {
            url: self.url.clone(),
            pool_size: 5,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            replica_id: replica.to_owned(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // On a thread and runtime of its own: Drop cannot await, and it also runs while a failed
        // test unwinds.
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(async move {
                    let mut admin = PgConnection::connect(&server_url).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await?;
                    admin.close().await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "could not drop the test database {}: {dropped:?}",
                self.name
            );
        }
    }
}

/// Both ports over `store`.
pub(crate) fn ports_of(store: &PostgresStore) -> Ports {
    Ports {
        partners: Arc::new(store.partner_store()),
        outbox: Arc::new(store.outbox()),
    }
}

async fn open_contract_store() -> TestStore {
    let database = TestDatabase::create().await;
    let store = PostgresStore::open(&database.settings("replica-a"))
        .await
        .expect("open the store");
    let second = database.settings("replica-b");
    let closing = store.clone();
    TestStore::new(
        ports_of(&store),
        move || {
            let settings = second.clone();
            Box::pin(
                async move { ports_of(&PostgresStore::open(&settings).await.expect("open again")) },
            )
        },
        Inspection::Postgres(store.pool.clone()),
        move || {
            let store = closing.clone();
            Box::pin(async move { store.close().await })
        },
        database,
    )
    .with_lease_prefix("replica-a/")
}

cmp_store_contract::store_contract_tests!(crate::test_support::backend);
