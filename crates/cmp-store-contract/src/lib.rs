//! The contract tests of the store ports ([`PartnerStore`], [`Outbox`]), written once and run
//! against every store: each adapter instantiates them with [`store_contract_tests!`], giving a
//! [`Backend`] that opens a fresh, empty store per test.
//!
//! A test drives the store through its ports ([`Ports`]) and looks at what it wrote with plain
//! SQL on the store's own pool ([`TestStore::query`]): statements are written once, with `?`
//! placeholders and SQLite's `rowid` for insertion order, and rewritten for PostgreSQL (`$n`,
//! the `seq` column its tables carry instead). Both schemas keep the same tables and columns.
//!
//! A backend that is not available here (no PostgreSQL server configured) skips its tests: each
//! passes at once, and the first writes one plain line saying which store was skipped and why,
//! straight to the terminal. `CMP_REQUIRE_POSTGRES=1` (set by `.ci/run`) turns that skip into a
//! failure, so CI never skips.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Once};

use cmp_application::{
    ChangeQueued, ChangeWrite, ChangedPartner, Outbox, PartnerStore, PartnerUpdate, StoreError,
};
use cmp_domain::Partner;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{PgPool, SqlitePool};

pub mod fixtures;
#[allow(missing_docs)]
pub mod outbox;
#[allow(missing_docs)]
pub mod partner_changes;
#[allow(missing_docs)]
pub mod partner_listing;
#[allow(missing_docs)]
pub mod partner_store;
mod suite;

pub use fixtures::*;

/// Both ports over one store, as the tests drive them.
#[derive(Clone)]
pub struct Ports {
    /// The partner store port.
    pub partners: Arc<dyn PartnerStore>,
    /// The outbox port.
    pub outbox: Arc<dyn Outbox>,
}

impl Ports {
    /// Updates the stored partner to `partner`, whatever it holds, as `write` says (its audit
    /// entry included); answers how the change goes to Graph.
    ///
    /// # Errors
    /// What `update_partner` answers.
    pub async fn update_to(
        &self,
        partner: &Partner,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError> {
        let (replacement, audit) = (partner.clone(), write.audit.clone());
        let update = PartnerUpdate {
            tenant_id: write.tenant_id,
            outbox_id: write.outbox_id,
            now: write.now,
            change: Box::new(move |_: &Partner| {
                Ok(ChangedPartner {
                    partner: replacement,
                    audit,
                })
            }),
        };
        self.partners
            .update_partner(partner.id(), update)
            .await
            .map(|updated| updated.queued)
    }
}

/// Something a [`TestStore`] runs later, giving a `T`.
type Opener<T> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = T>>> + Send + Sync>;

/// The pool a test inspects the store's tables through.
#[derive(Debug, Clone)]
pub enum Inspection {
    /// A SQLite store's pool (writes on it wait for the store's writer like any other writer).
    Sqlite(SqlitePool),
    /// A PostgreSQL store's pool.
    Postgres(PgPool),
}

/// A fresh store under test: its ports, a pool to inspect its tables, and whatever must live as
/// long as it (a temporary directory; a database dropped when this goes).
pub struct TestStore {
    ports: Ports,
    another_replica: Opener<Ports>,
    inspection: Inspection,
    lease_prefix: String,
    close: Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>,
    _keep: Box<dyn Send + Sync>,
}

impl TestStore {
    /// A store under test. `another_replica` opens a second store on the same database (as
    /// another replica would); `close` closes the store; `keep` lives as long as the store (its
    /// `Drop` may remove it).
    pub fn new(
        ports: Ports,
        another_replica: impl Fn() -> Pin<Box<dyn Future<Output = Ports>>> + Send + Sync + 'static,
        inspection: Inspection,
        close: impl Fn() -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync + 'static,
        keep: impl Send + Sync + 'static,
    ) -> Self {
        Self {
            ports,
            another_replica: Box::new(another_replica),
            inspection,
            lease_prefix: String::new(),
            close: Box::new(close),
            _keep: Box::new(keep),
        }
    }

    /// The store writes lease owners with `prefix` before them (PostgreSQL: the replica id).
    #[must_use]
    pub fn with_lease_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.lease_prefix);
        self
    }

    /// A lease owner as the store writes it.
    pub fn stored_owner(&self, owner: &str) -> String {
        format!("{}{owner}", self.lease_prefix)
    }

    /// Both ports.
    pub fn ports(&self) -> Ports {
        self.ports.clone()
    }

    /// The ports of a second store on the same database, as another replica (or process)
    /// opens it.
    pub async fn another_replica(&self) -> Ports {
        (self.another_replica)().await
    }

    /// Closes the store.
    pub async fn close(&self) {
        (self.close)().await;
    }

    /// A statement on the store's tables, written for SQLite (`?`, `rowid`).
    pub fn query(&self, sql: &str) -> Query<'_> {
        let sql = match self.inspection {
            Inspection::Sqlite(_) => sql.to_owned(),
            Inspection::Postgres(_) => for_postgres(sql),
        };
        Query {
            inspection: &self.inspection,
            sql,
            binds: Vec::new(),
        }
    }
}

/// `sql` with PostgreSQL's numbered placeholders and its insertion-order column.
fn for_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut number = 0;
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                number += 1;
                out.push_str(&format!("${number}"));
            }
            _ => out.push(c),
        }
    }
    out.replace("rowid", "seq")
}

/// A value bound to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A text.
    Text(String),
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}
impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}
impl From<&String> for SqlValue {
    fn from(value: &String) -> Self {
        Self::Text(value.clone())
    }
}
impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

/// A statement with its bound values, run on the store's pool.
pub struct Query<'a> {
    inspection: &'a Inspection,
    sql: String,
    binds: Vec<SqlValue>,
}

macro_rules! bound {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for value in $binds {
            query = match value {
                SqlValue::Null => query.bind(None::<i64>),
                SqlValue::Int(number) => query.bind(number),
                SqlValue::Text(text) => query.bind(text),
            };
        }
        query
    }};
}

impl Query<'_> {
    /// Binds the next value.
    pub fn bind(mut self, value: impl Into<SqlValue>) -> Self {
        self.binds.push(value.into());
        self
    }

    /// Runs the statement; how many rows it changed, or the database's refusal.
    ///
    /// # Errors
    /// When the database refuses the statement.
    pub async fn execute(self) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(self.sql);
        match self.inspection {
            Inspection::Sqlite(pool) => bound!(sqlx::query(sql), self.binds)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            Inspection::Postgres(pool) => bound!(sqlx::query(sql), self.binds)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
        }
    }

    /// Every row, as `T`.
    ///
    /// # Errors
    /// When the statement fails.
    pub async fn fetch_all<T>(self) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let sql = sqlx::AssertSqlSafe(self.sql);
        match self.inspection {
            Inspection::Sqlite(pool) => {
                bound!(sqlx::query_as(sql), self.binds)
                    .fetch_all(pool)
                    .await
            }
            Inspection::Postgres(pool) => {
                bound!(sqlx::query_as(sql), self.binds)
                    .fetch_all(pool)
                    .await
            }
        }
    }

    /// The first row, as `T`.
    ///
    /// # Errors
    /// When the statement fails or finds no row.
    pub async fn fetch_one<T>(self) -> Result<T, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        self.fetch_all()
            .await?
            .into_iter()
            .next()
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// The first column of every row.
    ///
    /// # Errors
    /// When the statement fails.
    pub async fn fetch_scalars<T>(self) -> Result<Vec<T>, sqlx::Error>
    where
        (T,): for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow>,
        T: Send + Unpin,
    {
        Ok(self
            .fetch_all::<(T,)>()
            .await?
            .into_iter()
            .map(|(value,)| value)
            .collect())
    }

    /// The first column of the first row.
    ///
    /// # Errors
    /// When the statement fails or finds no row.
    pub async fn fetch_scalar<T>(self) -> Result<T, sqlx::Error>
    where
        (T,): for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow>,
        T: Send + Unpin,
    {
        self.fetch_scalars()
            .await?
            .into_iter()
            .next()
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// Row counts of the five tables, in the order partners, partner_assignments, outbox,
/// deliveries, audit_log.
pub async fn row_counts(store: &TestStore) -> [i64; 5] {
    let mut counts = [0; 5];
    for (slot, table) in counts.iter_mut().zip([
        "partners",
        "partner_assignments",
        "outbox",
        "deliveries",
        "audit_log",
    ]) {
        *slot = store
            .query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_scalar()
            .await
            .expect("count rows");
    }
    counts
}

/// A fresh, empty store of the backend the tests run against.
pub async fn open_store() -> ((), TestStore) {
    let backend = BACKEND.get().expect("the contract tests run through run()");
    ((), (backend.open)().await)
}

/// A fresh store holding `partner`, created by its [`write_for`] write (seed 100) in
/// [`tenant`]; answers a placeholder, the store, its ports and the write.
pub async fn store_with(
    partner: &Partner,
) -> ((), TestStore, Ports, cmp_application::NewPartnerWrite) {
    let ((), store) = open_store().await;
    let ports = store.ports();
    let write = write_for(partner, tenant(), 100);
    ports
        .partners
        .insert_partner(partner, &write)
        .await
        .expect("insert");
    ((), store, ports, write)
}

/// A store the contract tests run against.
pub struct Backend {
    /// Its name, for the skip message.
    pub name: &'static str,
    /// Why its tests cannot run here (`None`: they can).
    pub unavailable: fn() -> Option<String>,
    /// Opens a fresh, empty store.
    pub open: fn() -> Pin<Box<dyn Future<Output = TestStore>>>,
}

static BACKEND: std::sync::OnceLock<Backend> = std::sync::OnceLock::new();
static SKIP_NOTICE: Once = Once::new();

/// Runs one contract test against `backend` on a runtime of its own (several worker threads,
/// for the tests of concurrent writers); skips it when the backend is unavailable, unless
/// `CMP_REQUIRE_POSTGRES=1`.
///
/// # Panics
/// When the test fails, or the backend is unavailable and required.
pub fn run<F: Future<Output = ()>>(backend: fn() -> Backend, test: fn() -> F) {
    let backend = BACKEND.get_or_init(backend);
    if let Some(reason) = (backend.unavailable)() {
        let required = std::env::var("CMP_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
        assert!(
            !required,
            "CMP_REQUIRE_POSTGRES=1 but the {} store is unavailable: {reason}",
            backend.name
        );
        SKIP_NOTICE.call_once(|| {
            // Straight to the terminal: the test harness captures print!, and a skip must show.
            let _ = writeln!(
                std::io::stderr(),
                "\nskipped: no PostgreSQL: the {} contract tests pass without running ({reason})",
                backend.name
            );
        });
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a test runtime")
        .block_on(test());
}
