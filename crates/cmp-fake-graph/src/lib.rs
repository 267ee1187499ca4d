//! Test support: a stateful fake of Microsoft Graph's `complianceManagementPartners`
//! collection and of Entra ID's token endpoint, served over HTTP on 127.0.0.1 for soak, crash
//! and outage tests.
//!
//! Unlike per-test wiremock stubs, it keeps every object it stores and injects failures at
//! random, including 5xx answers to creates that were applied anyway, so tests can check that
//! the service ends with each partner in Graph exactly once ([`FakeGraph::duplicates`]). It
//! deliberately depends on no workspace crate: it checks the wire contract from outside
//! instead of sharing the service's own code for it.
//!
//! Endpoints, relative to [`FakeGraph::uri`]:
//! - `POST /{tenant}/oauth2/v2.0/token`: always `{"token_type":"Bearer","expires_in":3599,"access_token":"fake-token"}`;
//! - `POST|GET /beta/deviceManagement/complianceManagementPartners` (the GET also with
//!   `$filter=displayName eq '…'`), and `GET|PATCH|DELETE` on `…/{id}`: Graph's behaviour,
//!   with failures, Graph's write throttle and its `Retry-After` per [`FakeGraphOptions`];
//!   requests that arrive inside a `Retry-After` the fake answered are counted;
//! - `GET /_fake/objects`, `GET /_fake/stats`, `POST /_fake/options`: inspection and control
//!   for tests that run the fake as a process (the `cmp-fake-graph` binary).
//!
//! # Layout
//! - [`FakeGraph`]: starts the server; the handle to inspect and steer it.
//! - [`http_client`], [`install_tls_provider`]: HTTP clients for the tests that talk to it.
//! - [`options`]: [`FakeGraphOptions`] and [`FakeGraphStats`].
//! - `store`: objects, counters and random draws behind one mutex.
//! - `routes`: the axum handlers.

pub mod options;
mod routes;
mod store;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use options::{FakeGraphOptions, FakeGraphStats, RetryAfterBreach, WriteThrottle};
use routes::Shared;

/// Makes ring rustls' process-wide crypto provider. The workspace builds reqwest without a
/// provider of its own (aws-lc-rs, a long C build), and reqwest refuses to build a client
/// until a process has one; tests call this before building a client of their own.
pub fn install_tls_provider() {
    // An error means a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A default reqwest client for tests, the TLS provider installed first.
pub fn http_client() -> reqwest::Client {
    install_tls_provider();
    reqwest::Client::new()
}

/// A running fake Graph. It serves until [`FakeGraph::shutdown`] or until it is dropped.
pub struct FakeGraph {
    uri: String,
    shared: Arc<Shared>,
    /// Dropping it (with the handle) starts the server's graceful shutdown.
    stop: oneshot::Sender<()>,
    server: JoinHandle<io::Result<()>>,
}

impl FakeGraph {
    /// Starts a fake on `127.0.0.1` on a free port.
    ///
    /// # Errors
    /// The listener cannot be bound.
    pub async fn start(options: FakeGraphOptions) -> io::Result<Self> {
        Self::start_on_port(0, options).await
    }

    /// Starts a fake on `127.0.0.1:port` (0 picks a free port).
    ///
    /// # Errors
    /// The listener cannot be bound, e.g. the port is taken.
    pub async fn start_on_port(port: u16, options: FakeGraphOptions) -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        let uri = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared::new(options, format!("{uri}/beta")));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = routes::router(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // Either a send or the sender's drop ends the wait.
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            uri,
            shared,
            stop,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Graph's root for the service's settings: `http://127.0.0.1:PORT/beta`.
    pub fn graph_root(&self) -> String {
        format!("{}/beta", self.uri)
    }

    /// Entra ID's authority for the service's settings; the token endpoint is
    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn authority(&self) -> String {
        self.uri.clone()
    }

    /// Every stored object, in insertion order, as Graph lists it.
    pub fn objects(&self) -> Vec<Value> {
        self.shared.store().objects()
    }

    /// How many stored objects carry each display name, keyed by the trimmed, lower-cased
    /// name (the service's natural key). Objects without a string `displayName` are skipped.
    pub fn count_by_display_name(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for object in self.objects() {
            if let Some(name) = object["displayName"].as_str() {
                *counts.entry(name.trim().to_lowercase()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The display names (as keyed by [`FakeGraph::count_by_display_name`]) held more than
    /// once, with their counts, sorted by name. Empty when the service never duplicated.
    pub fn duplicates(&self) -> Vec<(String, usize)> {
        let mut duplicates: Vec<_> = self
            .count_by_display_name()
            .into_iter()
            .filter(|(_, count)| *count > 1)
            .collect();
        duplicates.sort();
        duplicates
    }

    /// The counters so far.
    pub fn stats(&self) -> FakeGraphStats {
        self.shared.store().stats
    }

    /// When every write (POST, PATCH, DELETE, whatever its answer) arrived, oldest first.
    pub fn write_arrivals(&self) -> Vec<std::time::Instant> {
        self.shared.store().write_arrivals()
    }

    /// Every call that arrived inside a `Retry-After` the fake had answered (as counted in
    /// [`FakeGraphStats::inside_retry_after`]), with the 429 that set the pause, oldest first.
    pub fn retry_after_breaches(&self) -> Vec<RetryAfterBreach> {
        self.shared.store().retry_after_breaches()
    }

    /// The most writes (POST, PATCH, DELETE, whatever their answer) that arrived within any
    /// `window` so far: for Graph's throttle, at most 100 in any 20 s.
    pub fn busiest_write_window(&self, window: std::time::Duration) -> usize {
        self.shared.store().busiest_write_window(window)
    }

    /// The options in force.
    pub fn options(&self) -> FakeGraphOptions {
        self.shared.store().options.clone()
    }

    /// Replaces the options from the next call on, e.g. to bring Graph back up. A `seed`
    /// restarts the random sequence.
    pub fn set_options(&self, options: FakeGraphOptions) {
        self.shared.store().set_options(options);
    }

    /// From now on, POSTs to the collection are counted in [`FakeGraph::stats`] and then held,
    /// unanswered and not applied, until [`FakeGraph::release_creates`]: a test can act while
    /// a create is known to be in flight at Graph.
    pub fn hold_creates(&self) {
        self.shared.hold_creates(true);
    }

    /// Lets the held POSTs, and every later one, proceed as the options say.
    pub fn release_creates(&self) {
        self.shared.hold_creates(false);
    }

    /// Stops accepting connections, releases held POSTs and waits for the calls in progress
    /// to finish.
    ///
    /// # Errors
    /// The server failed while serving.
    pub async fn shutdown(self) -> io::Result<()> {
        // Held POSTs would keep the graceful shutdown waiting for ever.
        self.release_creates();
        drop(self.stop);
        self.server.await.map_err(io::Error::other)?
    }
}
