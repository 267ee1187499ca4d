//! Test support: the SQLite backend of the store contract tests (`cmp-store-contract`), which
//! run here once per contract test against a fresh database file, and what the SQLite-only
//! tests (query plans, the writer, durability across a reopen) open their stores with.

use std::sync::Arc;

use cmp_store_contract::{Backend, Inspection, Ports, TestStore};
use tempfile::TempDir;

use crate::{SqliteSettings, SqliteStore};

/// The settings of a store on `cmp.db` in `dir`.
pub(crate) fn settings(dir: &TempDir) -> SqliteSettings {
    SqliteSettings {
        path: dir.path().join("cmp.db"),
        busy_timeout_ms: 5000,
        max_read_connections: 4,
    }
}

/// A fresh store on a new file, and the directory that must outlive it.
pub(crate) async fn open_sqlite_store() -> (TempDir, SqliteStore) {
    let dir = TempDir::new().expect("temp dir");
    let store = SqliteStore::open(&settings(&dir))
        .await
        .expect("open store");
    (dir, store)
}

/// Both ports over `store`, as the contract tests drive them.
pub(crate) fn ports_of(store: &SqliteStore) -> Ports {
    Ports {
        partners: Arc::new(store.partner_store()),
        outbox: Arc::new(store.outbox()),
    }
}

/// The SQLite store, for the contract tests: always available.
pub(crate) fn backend() -> Backend {
    Backend {
        name: "SQLite",
        unavailable: || None,
        open: || Box::pin(open_contract_store()),
    }
}

async fn open_contract_store() -> TestStore {
    let (dir, store) = open_sqlite_store().await;
    let settings = store.settings.clone();
    // A pool of its own that may write: the store's readers are `query_only`, and the tests
    // write rows the ports never would (a corrupt value, a row of another shape).
    let inspection = sqlx::SqlitePool::connect_with(settings.connect_options())
        .await
        .expect("an inspection pool");
    let closing = store.clone();
    TestStore::new(
        ports_of(&store),
        move || {
            let settings = settings.clone();
            Box::pin(async move {
                let another = SqliteStore::open(&settings).await.expect("open again");
                ports_of(&another)
            })
        },
        Inspection::Sqlite(inspection),
        move || {
            let store = closing.clone();
            Box::pin(async move { store.close().await })
        },
        dir,
    )
}

cmp_store_contract::store_contract_tests!(crate::test_support::backend);

/// A connection of its own to `store`'s file, for tests that write what the ports never would.
/// It takes SQLite's write lock like any other writer.
pub(crate) async fn side_connection(store: &SqliteStore) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    store
        .settings
        .connect_options()
        .connect()
        .await
        .expect("a side connection")
}
