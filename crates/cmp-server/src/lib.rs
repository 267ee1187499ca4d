//! The service binary's library: configuration, telemetry and the wiring of the adapters.
//!
//! It is the only crate that knows every other one, and the only one that reads files and
//! environment variables (`config`) or installs the log subscriber (`tracing-subscriber`).
//! It holds no business logic: [`Application::build`] connects the SQLite store, the Graph
//! gateway and the HTTP API around the application's use cases.
//!
//! # Layout
//! - [`cli`]: the command line (`serve`, `check-graph`, `mint-token`, `outbox`, `config check`,
//!   `backup`).
//! - [`config`]: [`Settings`]: built-in defaults, `config/` overlays, `CMP__*` variables.
//! - [`check`]: the operator's Graph check.
//! - [`telemetry`]: the tracing subscriber.
//! - [`startup`]: [`Application`]: build, bind, serve, shut down.
//! - [`prometheus`]: the metrics recorder, `/metrics` on its own listener, the gauges task.
//! - [`readiness`]: what `/readyz` checks, and the dispatcher's heartbeat.
//! - [`system`]: the clock, id source and sleeper the use cases run on.

pub mod check;
pub mod cli;
pub mod config;
pub mod prometheus;
pub mod readiness;
pub mod startup;
pub mod system;
pub mod telemetry;

pub use config::{Environment, Settings};
pub use startup::{Application, shutdown_signal};
