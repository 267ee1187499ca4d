//! The SQLite adapter: durable storage of partners, their delivery outbox and the audit log.
//!
//! In the hexagon this is a driven (outbound) adapter. It implements the application's
//! [`PartnerRepository`](cmp_application::PartnerRepository) and
//! [`DeliveryQueue`](cmp_application::DeliveryQueue) ports with sqlx over one SQLite file. It
//! depends on `cmp-application` and `cmp-domain`, on `sqlx` (SQLite, migrations), `serde` (only
//! for [`SqliteSettings`]), `anyhow` and `tracing`; never on the HTTP or Graph adapters, axum,
//! reqwest or the configuration loader. SQL and row shapes stay in here: no sqlx type crosses
//! a port.
//!
//! The store follows graph-client-behaviour §3.1: WAL journal, `synchronous=FULL`, foreign
//! keys on, a configurable busy timeout; the partner and its outbox row are written in one
//! `BEGIN IMMEDIATE` transaction on a single writer connection, and reads use a separate pool.
//!
//! # Layout
//! - [`SqliteSettings`], [`SqliteStore`] (`store.rs`): opening the file, pragmas, the writer
//!   and reader pools, and the embedded [`MIGRATOR`] run at every open.
//! - [`SqlitePartnerRepository`] (`partner_repository.rs`): the repository port, one
//!   transaction per method: creating, reading, finishing attempts, undoing a refused create.
//! - `partner_listing.rs`: listing and counting, the typed query translated into SQL with bound
//!   values and keyset pages.
//! - `partner_changes.rs`: updates and deletes, and whether each folds into the partner's
//!   waiting create or queues an outbox row.
//! - `delivery_queue.rs`: the delivery-queue port on the same type and the same pools: lease
//!   recovery, the dispatcher's claim, attempt starts, and the operators' views of the outbox.
//! - `rows.rs` (private): the `*Row` types and their conversions to and from the domain.
//! - `test_support.rs` (tests only): fixtures shared by the tests of both ports.
//! - `migrations/` at the workspace root: the schema, with the reasons for its choices.

mod delivery_queue;
mod partner_changes;
mod partner_listing;
mod partner_repository;
mod rows;
mod store;
#[cfg(test)]
mod test_support;

pub use partner_repository::SqlitePartnerRepository;
pub use store::{SqliteSettings, SqliteStore};

/// The schema migrations in the workspace's `migrations/` folder, embedded at compile time.
/// [`SqliteStore::open`] runs them; already applied ones are skipped, so reopening is safe.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
