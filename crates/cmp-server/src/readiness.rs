//! What `/readyz` checks, implemented over this process's parts: the store (writable, its
//! migrations this build's), the dispatcher's heartbeat, and in graph mode the token provider,
//! which is reported but never required. The rules are told in `docs/operations.md`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::store::Store;
use cmp_graph_client::{TokenProvider, TokenStatus};
use cmp_http_api::{CheckStatus, Readiness, ReadinessCheck};

/// When each dispatcher worker last finished a pass. A worker that stops finishing passes,
/// because its task died or a pass hangs, ages past the bound and the service turns not ready.
#[derive(Debug)]
pub struct DispatcherHeartbeat {
    /// One instant per worker, by worker index.
    last_passes: Mutex<Vec<Instant>>,
}

impl DispatcherHeartbeat {
    /// A heartbeat for `workers` workers, each counted as having just passed at `now`.
    pub fn new(workers: usize, now: Instant) -> Self {
        Self {
            last_passes: Mutex::new(vec![now; workers]),
        }
    }

    /// Records that worker `worker` finished a pass (or started) at `now`.
    pub fn beat(&self, worker: usize, now: Instant) {
        if let Some(last) = self.passes().get_mut(worker) {
            *last = now;
        }
    }

    /// How long ago, at `now`, the stalest worker last finished a pass.
    pub fn stalest_age(&self, now: Instant) -> Duration {
        self.passes()
            .iter()
            .map(|last| now.saturating_duration_since(*last))
            .max()
            .unwrap_or_default()
    }

    fn passes(&self) -> std::sync::MutexGuard<'_, Vec<Instant>> {
        // Each update is one assignment, so a poisoned lock still holds consistent instants.
        self.last_passes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The service's [`ReadinessCheck`].
pub struct ServiceReadiness {
    /// The store whose writability and migrations are checked.
    pub store: Store,
    /// The dispatcher workers' last passes.
    pub heartbeat: Arc<DispatcherHeartbeat>,
    /// Older than this, a worker's last pass makes the dispatcher failing.
    pub dispatcher_stale_after: Duration,
    /// Longest wait for the store's checks.
    pub store_timeout: Duration,
    /// The Graph token provider in graph mode; `None` in simulated mode.
    pub tokens: Option<Arc<TokenProvider>>,
}

#[async_trait::async_trait]
impl ReadinessCheck for ServiceReadiness {
    async fn readiness(&self) -> Readiness {
        let (store, migrations) =
            match tokio::time::timeout(self.store_timeout, self.store.check_ready()).await {
                Ok(store) => (passed(store.writable), passed(store.migrations_applied)),
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = self.store_timeout.as_millis(),
                        "readiness: the store's checks did not finish in time"
                    );
                    (CheckStatus::Failing, CheckStatus::Unknown)
                }
            };
        let stalest = self.heartbeat.stalest_age(Instant::now());
        let dispatcher = if stalest > self.dispatcher_stale_after {
            tracing::warn!(
                stalest_pass_ms = stalest.as_millis(),
                "readiness: a dispatcher worker has not finished a pass in time"
            );
            CheckStatus::Failing
        } else {
            CheckStatus::Ok
        };
        let graph_token = self
            .tokens
            .as_ref()
            .map_or(CheckStatus::NotUsed, |tokens| match tokens.status() {
                TokenStatus::Obtained => CheckStatus::Ok,
                TokenStatus::Failing => CheckStatus::Failing,
                TokenStatus::NotRequested => CheckStatus::Unknown,
            });
        Readiness {
            store,
            migrations,
            dispatcher,
            graph_token,
        }
    }
}

fn passed(ok: bool) -> CheckStatus {
    if ok {
        CheckStatus::Ok
    } else {
        CheckStatus::Failing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReadinessSettings;

    #[test]
    fn the_stalest_worker_sets_the_age_and_a_beat_renews_only_its_worker() {
        let start = Instant::now();
        let heartbeat = DispatcherHeartbeat::new(2, start);

        heartbeat.beat(0, start + Duration::from_secs(50));
        let age_at_60 = heartbeat.stalest_age(start + Duration::from_secs(60));
        heartbeat.beat(1, start + Duration::from_secs(70));
        let age_at_80 = heartbeat.stalest_age(start + Duration::from_secs(80));

        assert_eq!(age_at_60, Duration::from_secs(60), "worker 1 never beat");
        assert_eq!(age_at_80, Duration::from_secs(30), "worker 0 beat at 50");
    }

    #[test]
    fn the_stale_bound_must_exceed_three_poll_intervals() {
        let settings = |stale| ReadinessSettings {
            dispatcher_stale_after_ms: stale,
            store_timeout_ms: 2000,
        };

        assert!(settings(1500).validate(Duration::from_millis(500)).is_err());
        assert!(settings(1501).validate(Duration::from_millis(500)).is_ok());
    }
}
