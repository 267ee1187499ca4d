//! The service binary's library: configuration, telemetry and the wiring of the adapters.
//!
//! It is the only crate that knows every other one, and the only one that reads files and
//! environment variables (`config`) or installs the log subscriber (`tracing-subscriber`).
//! It holds no business logic: [`Application::build`] connects the store (SQLite or PostgreSQL), the Graph
//! gateway and the HTTP API around the application's use cases.
//!
//! # Layout
//! - [`cli`]: the command line (`serve`, `check-graph`, `mint-token`, `outbox`, `config check`,
//!   `backup`).
//! - [`config`]: [`Settings`]: built-in defaults, `config/` overlays, `CMP__*` variables.
//! - [`check`]: the operator's Graph check.
//! - [`telemetry`]: the tracing subscriber.
//! - [`startup`]: [`Application`]: build, bind, serve, shut down.
//! - [`migrate_store`]: copying a SQLite database into PostgreSQL.
//! - [`prometheus`]: the metrics recorder, `/metrics` on its own listener, the gauges task.
//! - [`readiness`]: what `/readyz` checks, and the dispatcher's heartbeat.
//! - [`runtime`]: the tokio runtime, its workers below the store's writer in priority.
//! - [`store`]: [`store::Store`], the SQLite or PostgreSQL store as `store.kind` says.
//! - [`system`]: the clock, id source and sleeper the use cases run on.

pub mod check;
pub mod cli;
pub mod config;
pub mod migrate_store;
pub mod prometheus;
pub mod readiness;
pub mod runtime;
pub mod startup;
pub mod store;
pub mod system;
pub mod telemetry;

pub use config::{Environment, Settings};
pub use startup::{Application, shutdown_signal};
