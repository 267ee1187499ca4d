//! Prometheus metrics: the process's one recorder, `GET /metrics` on a listener of its own, and
//! the periodic task that reads the outbox's gauges and keeps the recorder's memory bounded.
//! Every metric is listed for operators in `docs/operations.md`.
//!
//! The exporter's own HTTP listener is left out: `/metrics` is an axum route served by the same
//! accept loop as the API (header timeout, graceful shutdown), so no second HTTP stack is built.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use cmp_application::OutboxGauges;
use cmp_graph_client::HttpGraphClient;
use cmp_http_api::request_metrics::{REQUEST_DURATION_BUCKETS, REQUEST_DURATION_SECONDS};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The path the metrics are served at, on the metrics listener only.
pub const METRICS_PATH: &str = "/metrics";

/// The content type of Prometheus' text exposition format.
const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `[metrics]`: where the metrics are served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve `/metrics` at all; off, nothing is recorded and no listener is bound.
    pub enabled: bool,
    /// Address of the metrics listener; loopback by default, so only a local agent scrapes.
    pub host: String,
    /// Port of the metrics listener; 0 lets the OS choose (tests).
    pub port: u16,
    /// How often the outbox gauges are read from the store, in milliseconds.
    pub refresh_interval_ms: u64,
}

impl MetricsSettings {
    /// Checks values the type system cannot.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled && self.host.is_empty() {
            return Err("metrics.host must not be empty".into());
        }
        if self.refresh_interval_ms == 0 {
            return Err("metrics.refresh_interval_ms must be greater than 0".into());
        }
        Ok(())
    }
}

/// The recorder installed in this process, if any. The `metrics` facade takes one global
/// recorder per process, for good; a second service built in the same process (the end-to-end
/// tests build one per test) shares the first one's.
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder on first use (with the request-duration buckets and every
/// metric's description), and returns its handle.
///
/// # Errors
/// When the buckets are refused or another recorder was installed by someone else.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    // The guarded value is set once and only read after: a poisoned lock still holds it whole.
    let mut installed = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        // Without buckets the exporter would render the histogram as a summary, whose
        // quantiles cannot be aggregated across replicas.
        .set_buckets_for_metric(
            Matcher::Full(REQUEST_DURATION_SECONDS.to_owned()),
            &REQUEST_DURATION_BUCKETS,
        )
        .context("setting the request-duration buckets")?
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    cmp_http_api::request_metrics::describe();
    cmp_application::outbox_metrics::describe();
    cmp_graph_client::graph_metrics::describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The metrics listener and what it serves, between build and run.
pub struct MetricsEndpoint {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    refresher: GaugeRefresher,
}

impl MetricsEndpoint {
    /// Installs the recorder, binds the listener of `settings` and prepares `/metrics`.
    /// `graph` is the Graph client whose tenant pause is reported at each scrape (none in
    /// simulated mode).
    ///
    /// # Errors
    /// When the recorder cannot be installed or the listener cannot be bound.
    pub async fn bind(
        settings: &MetricsSettings,
        gauges: OutboxGauges,
        graph: Option<Arc<HttpGraphClient>>,
    ) -> anyhow::Result<Self> {
        let handle = install_recorder()?;
        let address = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("binding the metrics listener to {address}"))?;
        let local_addr = listener
            .local_addr()
            .context("reading the metrics listener's address")?;
        let router = metrics_router(handle.clone(), graph);
        Ok(Self {
            listener,
            local_addr,
            router,
            refresher: GaugeRefresher {
                gauges,
                handle,
                interval: Duration::from_millis(settings.refresh_interval_ms),
            },
        })
    }

    /// The address the metrics listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `/metrics` and refreshes the gauges until `stopping` turns true; then lets a
    /// scrape in flight finish within `limits.shutdown_grace`.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn run(
        self,
        limits: cmp_http_api::ConnectionLimits,
        stopping: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let refreshing = tokio::spawn(self.refresher.run(stopping.clone()));
        let mut serve_stopping = stopping;
        let served = cmp_http_api::serve(self.listener, self.router, limits, async move {
            let _ = serve_stopping.wait_for(|stopped| *stopped).await;
        })
        .await;
        if let Err(error) = refreshing.await {
            tracing::error!(error.message = %error, "the metrics refresher ended abnormally");
        }
        served
    }
}

/// `GET /metrics`: the recorder rendered in Prometheus' text format, with the tenant pause
/// measured at the moment of the scrape.
fn metrics_router(handle: PrometheusHandle, graph: Option<Arc<HttpGraphClient>>) -> Router {
    Router::new().route(
        METRICS_PATH,
        get(move || {
            let handle = handle.clone();
            let graph = graph.clone();
            async move {
                if let Some(graph) = &graph {
                    graph.report_tenant_pause().await;
                }
                ([(CONTENT_TYPE, EXPOSITION_CONTENT_TYPE)], handle.render())
            }
        }),
    )
}

/// How often recorded request durations are folded into their histogram. Until then each one
/// waits in the recorder as a sample of its own: folded only with the gauges, every 15 s, at
/// 4,000 requests a second they held more than half a MiB at their peak (`docs/benchmarks.md`).
const HISTOGRAM_FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// The periodic task: reads the outbox gauges every `interval`, and every
/// [`HISTOGRAM_FOLD_INTERVAL`] runs the recorder's upkeep, which folds recorded durations into
/// their histogram so that they do not pile up between scrapes.
struct GaugeRefresher {
    gauges: OutboxGauges,
    handle: PrometheusHandle,
    interval: Duration,
}

impl GaugeRefresher {
    async fn run(self, mut stopping: watch::Receiver<bool>) {
        let mut gauge_ticks = tokio::time::interval(self.interval);
        // A store slower than the interval should not be asked again at once to catch up.
        gauge_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fold_ticks = tokio::time::interval(HISTOGRAM_FOLD_INTERVAL);
        fold_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*stopping.borrow() {
            tokio::select! {
                _ = gauge_ticks.tick() => {
                    if let Err(error) = self.gauges.refresh().await {
                        tracing::warn!(error.message = %error, error.cause_chain = ?error, "reading the outbox gauges failed; they keep their last values");
                    }
                }
                _ = fold_ticks.tick() => self.handle.run_upkeep(),
                _ = stopping.changed() => break,
            }
        }
    }
}
