//! The SQLite adapter: durable storage of partners, their outbox and the audit log.
//!
//! In the hexagon this is a driven (outbound) adapter. It implements the application's
//! [`PartnerStore`](cmp_application::PartnerStore), [`Outbox`](cmp_application::Outbox) and
//! [`Pacer`](cmp_application::Pacer) ports with sqlx over one SQLite file. It depends on
//! `cmp-application` and `cmp-domain`, on `sqlx` (SQLite, migrations), `serde` (only for
//! [`SqliteSettings`]), `anyhow` and `tracing`; never on the HTTP or Graph adapters, axum, reqwest or the configuration loader. SQL and row
//! shapes stay in here: no sqlx type crosses a port.
//!
//! The store keeps every acknowledged partner (see `docs/delivery.md`): WAL journal, every
//! commit on disk before its caller hears of it, foreign keys on, a configurable busy timeout; a
//! partner and its outbox row are written in one transaction by a single writer, which commits
//! the writes waiting together, and reads use a separate pool.
//!
//! # Layout
//! - [`SqliteSettings`], [`SqliteStore`] (`store.rs`): opening the file, pragmas, the writer
//!   and reader pools, and the embedded [`MIGRATOR`] run at every open.
//! - [`SqlitePartnerStore`] (`partner_store.rs`): the partner store port: creating, reading,
//!   updating and deleting partners, each write with its outbox row and audit entry.
//! - `partner_listing.rs`: listing and counting, the typed query translated into SQL with bound
//!   values and keyset pages.
//! - [`SqliteOutbox`] (`outbox.rs`): every statement about the outbox and its deliveries: the
//!   enqueueing the partner store calls inside its transactions, lease recovery, the
//!   dispatcher's claim, delivery starts and ends, undo, re-queue, and the operators' views.
//! - [`SqlitePacer`] (`pacer_state.rs`): the tenant's pacer for one process, in memory, each
//!   `Retry-After` pause it records also kept in the file, so that a restart starts inside it.
//! - `writer.rs`: the one task every write goes through, committing waiting writes together
//!   (group commit), each in a savepoint of its own.
//! - `wal_sync.rs`: the thread that syncs the WAL after the writer's commits, then answers
//!   their callers.
//! - `checkpointer.rs`: WAL checkpoints off the request path, the WAL kept bounded.
//! - `partner_cache.rs`: the partners lately read by id, in memory, forgotten by the writes
//!   that change them.
//! - `read_slots.rs`: the request path's reader connections, without a pool's extra command
//!   per read.
//! - `audit.rs`: the audit log's writes and reads.
//! - `statements.rs`: several statements of one write sent to SQLite in one trip.
//! - `readiness.rs`: [`SqliteStore::check_ready`], the store's part of the readiness probe.
//! - `rows.rs` (private): the `*Row` types and their conversions to and from the domain.
//! - `test_support.rs` (tests only): fixtures shared by the tests of both ports.
//! - `migrations/sqlite/` at the workspace root: the schema, with the reasons for its choices.

mod audit;
mod checkpointer;
mod connections;
mod outbox;
mod pacer_state;
mod partner_cache;
mod partner_listing;
mod partner_read;
mod partner_store;
mod read_slots;
mod readiness;
mod rows;
mod statements;
mod store;
#[cfg(test)]
mod test_support;
mod wal_sync;
mod writer;

pub use outbox::SqliteOutbox;
pub use pacer_state::SqlitePacer;
pub use partner_store::SqlitePartnerStore;
pub use readiness::StoreReadiness;
pub use store::{SqliteSettings, SqliteStore, WRITER_THREAD_NAME};

/// The schema migrations in the workspace's `migrations/sqlite/` folder, embedded at compile
/// time. [`SqliteStore::open`] runs them; already applied ones are skipped, so reopening is
/// safe.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
