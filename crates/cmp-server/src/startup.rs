//! [`Application`]: the service assembled from its settings, bound and ready to serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cmp_application::{
    CallerAuthenticator, Dispatcher, GraphGateway, InProcessPacer, OperatorUseCases, Outbox,
    OutboxGauges, OutboxOperations, Pacer, PacerRates, PartnerService, PartnerStore,
    PartnerUseCases,
};
use cmp_domain::TenantId;
use cmp_entra_auth::{DevelopmentSigner, EntraAuthenticator};
use cmp_graph_client::SimulatedGraph;
use cmp_http_api::{AppState, ConnectionLimits, RequestLimits};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

use crate::config::{AuthMode, GraphMode, Settings};
use crate::prometheus::MetricsEndpoint;
use crate::readiness::{DispatcherHeartbeat, ServiceReadiness};
use crate::store::Store;
use crate::system::{RandomJitter, SystemClock, TimeOrderedIds, TokioSleeper};

/// The running service's parts, between [`Application::build`] and
/// [`Application::run_until_stopped`].
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: axum::Router,
    connection_limits: ConnectionLimits,
    dispatch: DispatchLoop,
    store: Store,
    public_root: String,
    /// `/metrics` and the gauges task; `None` when metrics are off.
    metrics: Option<MetricsEndpoint>,
    /// The creates still running after their request was dropped.
    detached_creates: TaskTracker,
}

impl Application {
    /// Binds the listener, opens (and migrates) the store, and wires the adapters around the
    /// use cases, with the probes beside the API; when metrics are on, also installs the
    /// recorder and binds the metrics listener. Port 0 binds a port the OS picks;
    /// [`Application::local_addr`] and [`Application::metrics_addr`] tell which.
    ///
    /// # Errors
    /// When binding, opening the database or wiring fails; the message says which step.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.http.host, settings.http.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("binding the HTTP listener to {address}"))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let store = Store::open(&settings).await?;

        // In graph mode the tenant is the resolved one: `AZURE_TENANT_ID` stands in for a nil
        // `graph.tenant_id`, and the names partners are unique in are that tenant's.
        // One pacer for the tenant, shared by the inline creates, every dispatcher worker and
        // the Graph client's own resends; on PostgreSQL it lives in the database, shared by
        // every replica (`Store::pacer`). The simulated Graph has no budget to keep and is one
        // per process: its pacer spaces nothing, but still honours a simulated 429's pause.
        let (graph, tenant, graph_client, pacer) = match settings.graph.mode {
            GraphMode::Simulated => (
                Arc::new(SimulatedGraph::new(settings.graph.simulated.clone()))
                    as Arc<dyn GraphGateway>,
                settings.graph.tenant_id,
                None,
                Arc::new(InProcessPacer::new(PacerRates::steady(
                    Duration::ZERO,
                    Duration::ZERO,
                ))) as Arc<dyn Pacer>,
            ),
            GraphMode::Graph => {
                let resolved = settings
                    .graph
                    .client
                    .resolve(settings.graph.tenant_id)
                    .map_err(|e| anyhow::anyhow!(e))?;
                // On SQLite the process's pacer starts inside the pause the file kept, and as
                // if the budget had just been spent before a restart (no burst at start); on
                // PostgreSQL the shared row remembers what every replica booked.
                let pacer = store
                    .pacer(
                        TenantId::from_uuid(resolved.tenant_id),
                        resolved.pacer_rates(),
                        cmp_application::Clock::now(&SystemClock),
                    )
                    .await?;
                let connection = cmp_graph_client::connect(
                    &resolved,
                    Arc::new(SystemClock),
                    Arc::new(TokioSleeper),
                    pacer.clone(),
                )
                .context("building the Microsoft Graph client")?;
                tracing::info!(
                    graph.root = %resolved.graph_root,
                    tenant = %resolved.tenant_id,
                    graph.credential = %resolved.credential,
                    "provisioning into Microsoft Graph"
                );
                let client = Arc::new(connection.client);
                (
                    client.clone() as Arc<dyn GraphGateway>,
                    resolved.tenant_id,
                    Some((client, connection.tokens)),
                    pacer,
                )
            }
        };
        let partner_store: Arc<dyn PartnerStore> = store.partner_store();
        let outbox: Arc<dyn Outbox> = store.outbox();
        let tenant_id = TenantId::from_uuid(tenant);
        let policy = settings.outbox.policy();
        let partners: Arc<dyn PartnerUseCases> = Arc::new(PartnerService::new(
            partner_store.clone(),
            outbox.clone(),
            graph.clone(),
            Arc::new(SystemClock),
            Arc::new(TimeOrderedIds),
            Arc::new(TokioSleeper),
            pacer.clone(),
            tenant_id,
            policy,
        ));
        let dispatcher = Arc::new(Dispatcher::new(
            outbox.clone(),
            partner_store,
            graph,
            Arc::new(SystemClock),
            Arc::new(TimeOrderedIds),
            Arc::new(RandomJitter),
            pacer,
            Arc::new(TokioSleeper),
            tenant_id,
            policy,
        ));
        let operations: Arc<dyn OperatorUseCases> =
            Arc::new(OutboxOperations::new(outbox.clone(), Arc::new(SystemClock)));
        let workers = settings.outbox.dispatcher_workers;
        let heartbeat = Arc::new(DispatcherHeartbeat::new(workers, Instant::now()));
        let dispatch = DispatchLoop {
            dispatcher,
            workers,
            idle_wait: settings.outbox.dispatcher_poll_interval,
            heartbeat: heartbeat.clone(),
        };
        let metrics = if settings.metrics.enabled {
            let gauges = OutboxGauges::new(outbox, Arc::new(SystemClock));
            let pause = graph_client.as_ref().map(|(client, _)| client.clone());
            Some(MetricsEndpoint::bind(&settings.metrics, gauges, pause).await?)
        } else {
            None
        };
        let readiness = ServiceReadiness {
            store: store.clone(),
            heartbeat,
            dispatcher_stale_after: Duration::from_millis(
                settings.readiness.dispatcher_stale_after_ms,
            ),
            store_timeout: Duration::from_millis(settings.readiness.store_timeout_ms),
            tokens: graph_client.map(|(_, tokens)| tokens),
        };

        let public_root = if settings.http.public_base_url.is_empty() {
            format!("http://{local_addr}{}", settings.http.root_path)
        } else {
            settings.http.public_base_url.clone()
        };
        let (authenticator, development_keys) = authenticator(&settings)?;
        let detached_creates = TaskTracker::new();
        let state = AppState {
            partners,
            operations,
            authenticator,
            public_root: public_root.clone().into(),
            body_limit_bytes: settings.http.body_limit_bytes,
            detached_creates: detached_creates.clone(),
        };
        let limits = RequestLimits::from_settings(&settings.http);
        let mut router = cmp_http_api::router(state, &settings.http.root_path, limits)
            .merge(cmp_http_api::probes_router(Arc::new(readiness)));
        if let Some(jwks) = development_keys {
            router = router.merge(cmp_http_api::development_keys_router(jwks));
        }
        let connection_limits = ConnectionLimits {
            header_read_timeout: Duration::from_millis(settings.http.header_read_timeout_ms),
            shutdown_grace: Duration::from_millis(settings.http.shutdown_grace_ms),
        };
        Ok(Self {
            listener,
            local_addr,
            router,
            connection_limits,
            dispatch,
            store,
            public_root,
            metrics,
            detached_creates,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The creates that outlive their request: a shutdown closes this tracker, then waits for
    /// them within the shutdown grace before it closes the store.
    pub fn detached_creates(&self) -> TaskTracker {
        self.detached_creates.clone()
    }

    /// The address the metrics listener is bound to; `None` when metrics are off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsEndpoint::local_addr)
    }

    /// The root URL of the Graph-shaped API, e.g. `http://127.0.0.1:8080/beta`.
    pub fn public_root(&self) -> &str {
        &self.public_root
    }

    /// Serves until `shutdown` completes, lets requests in flight finish, then closes the store.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(address = %self.local_addr, root = %self.public_root, "serving");
        // One stop signal for the HTTP server and the dispatcher workers.
        let (stop, stopping) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let workers = self.dispatch.spawn(&stopping);
        let metrics = self.metrics.map(|endpoint| {
            tracing::info!(address = %endpoint.local_addr(), "serving metrics");
            tokio::spawn(endpoint.run(self.connection_limits, stopping.clone()))
        });
        let mut http_stopping = stopping.clone();
        let http_shutdown = async move {
            let _ = http_stopping.wait_for(|stopped| *stopped).await;
        };
        let served = cmp_http_api::serve(
            self.listener,
            self.router,
            self.connection_limits,
            http_shutdown,
        )
        .await;
        // The workers stop claiming at once and finish the attempt in hand, and the creates
        // whose clients went away finish theirs; an attempt cut off by the bound keeps its
        // lease and is reconciled after a restart.
        let detached_creates = self.detached_creates;
        detached_creates.close();
        let drained = tokio::time::timeout(self.connection_limits.shutdown_grace, async move {
            let mut workers = workers;
            while let Some(ended) = workers.join_next().await {
                if let Err(error) = ended {
                    tracing::error!(error.message = %error, "a dispatcher worker ended abnormally");
                }
            }
            detached_creates.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "dispatcher workers or creates in flight did not finish within the shutdown grace period"
            );
        }
        if let Some(metrics) = metrics {
            match metrics.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(error.message = %error, "serving metrics failed");
                }
                Err(error) => {
                    tracing::error!(error.message = %error, "the metrics task ended abnormally");
                }
            }
        }
        self.store.close().await;
        tracing::info!("stopped");
        served.context("serving HTTP")
    }
}

/// The dispatcher's background workers.
struct DispatchLoop {
    dispatcher: Arc<Dispatcher>,
    workers: usize,
    /// Pause after a pass that found nothing to do (rows become due over time, so polling is
    /// the simplest correct wake-up; a pass that did work is followed at once by the next).
    idle_wait: Duration,
    /// Each worker's last finished pass, for the readiness probe.
    heartbeat: Arc<DispatcherHeartbeat>,
}

impl DispatchLoop {
    /// Starts the workers; each stops at its next pass boundary once `stopping` turns true.
    fn spawn(&self, stopping: &watch::Receiver<bool>) -> JoinSet<()> {
        let mut workers = JoinSet::new();
        for worker in 0..self.workers {
            // Each worker leases rows under its own name, so a row that lapses in one worker's
            // batch can be taken by another without both attempting it.
            let dispatcher = Arc::new(self.dispatcher.worker());
            let mut stopping = stopping.clone();
            let idle_wait = self.idle_wait;
            let heartbeat = self.heartbeat.clone();
            heartbeat.beat(worker, Instant::now());
            workers.spawn(async move {
                while !*stopping.borrow() {
                    let busy = match dispatcher.run_once().await {
                        Ok(pass) => pass.claimed > 0,
                        Err(error) => {
                            tracing::error!(error.message = %error, error.cause_chain = ?error, "dispatch pass failed");
                            false
                        }
                    };
                    // A failed pass still shows the loop alive; the store's own check reports
                    // the failure.
                    heartbeat.beat(worker, Instant::now());
                    if !busy {
                        tokio::select! {
                            () = tokio::time::sleep(idle_wait) => {}
                            _ = stopping.changed() => {}
                        }
                    }
                }
            });
        }
        workers
    }
}

/// The bearer-token authenticator of the configured mode, and in development mode the public
/// key set to serve.
fn authenticator(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn CallerAuthenticator>, Option<serde_json::Value>)> {
    let entra = &settings.auth.entra;
    match settings.auth.mode {
        AuthMode::Entra => {
            let authenticator = EntraAuthenticator::new(entra, Arc::new(SystemClock))
                .context("setting up token verification")?;
            Ok((Arc::new(authenticator), None))
        }
        AuthMode::Development => {
            let signer = development_signer(settings)?;
            let jwks = signer.jwks();
            let authenticator =
                EntraAuthenticator::with_static_keys(entra, &jwks, Arc::new(SystemClock))
                    .context("setting up development token verification")?;
            tracing::warn!(key = %signer.key_path().display(), "development auth mode: tokens signed with the local key are accepted");
            Ok((Arc::new(authenticator), Some(jwks)))
        }
    }
}

/// The development signing key of `settings`, created on first use.
///
/// # Errors
/// When the key folder or file cannot be read or created.
pub fn development_signer(settings: &Settings) -> anyhow::Result<DevelopmentSigner> {
    let directory = &settings.auth.development_key_dir;
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    Ok(DevelopmentSigner::load_or_create(directory)?
        .with_authority(settings.auth.entra.authority.clone()))
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error.message = %error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(error.message = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
