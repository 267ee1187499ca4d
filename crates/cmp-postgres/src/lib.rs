//! The PostgreSQL adapter: partners, their outbox and the audit log in one PostgreSQL database
//! that several replicas of the service share.
//!
//! In the hexagon this is a driven (outbound) adapter beside `cmp-sqlite`, implementing the same
//! ports ([`PartnerStore`](cmp_application::PartnerStore), [`Outbox`](cmp_application::Outbox))
//! with the same behaviour; the port contract tests (`cmp-store-contract`) run against both.
//! What differs is how several writers are kept apart:
//!
//! - every write is one PostgreSQL transaction on a pooled connection; an update or a delete
//!   locks its partner row (`FOR UPDATE`) so that concurrent changes of one partner, from any
//!   replica, run one after the other;
//! - the dispatcher's claim selects with `FOR UPDATE SKIP LOCKED` under a per-tenant
//!   transaction lock, so claims of several replicas never lease one row twice nor two rows of
//!   one partner or name, and a partial unique index refuses a second delivery in flight for a
//!   partner whatever the code does;
//! - the tenant's Graph budget and `Retry-After` pause (the pacer) live in one row per tenant,
//!   changed under its row lock, so the replicas together keep one tenant's budget;
//! - leases are written as `<replica id>/<owner>`, so an operator sees which replica holds a
//!   row, and a lease that lapses (its replica died) is taken over by any replica;
//! - the migrations in `migrations/postgres/` run at every start under a session advisory lock:
//!   replicas starting together apply them once, one after the other.
//!
//! # Layout
//! - [`PostgresSettings`], [`PostgresStore`] (`store.rs`): the pool, timeouts, migrations,
//!   readiness.
//! - [`PostgresPartnerStore`] (`partner_store.rs`), `partner_listing.rs`: the partner store
//!   port.
//! - [`PostgresOutbox`] (`outbox.rs`): the outbox port and the enqueueing of the partner writes.
//! - [`PostgresPacer`] (`pacer.rs`): the pacer port, one row per tenant, so that the replicas
//!   share one Graph budget and one `Retry-After` pause.
//! - `audit.rs`: the audit log. The row types and their conversions to the domain are those of
//!   the SQLite adapter (`cmp-sqlite/src/rows.rs`, compiled into this crate too): both stores
//!   keep the same columns, so one file says how a row becomes a partner.

mod audit;
mod outbox;
mod pacer;
mod partner_listing;
mod partner_read;
mod partner_store;
mod replica;
#[path = "../../cmp-sqlite/src/rows.rs"]
mod rows;
mod store;
#[cfg(test)]
mod test_support;

pub use outbox::PostgresOutbox;
pub use pacer::PostgresPacer;
pub use partner_store::PostgresPartnerStore;
pub use store::{PostgresSettings, PostgresStore, StoreReadiness};

/// The schema migrations in the workspace's `migrations/postgres/` folder, embedded at compile
/// time. [`PostgresStore::open`] runs them under an advisory lock.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
