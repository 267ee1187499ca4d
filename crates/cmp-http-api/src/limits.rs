//! Limits that hold under abuse: a cap on requests in flight (load shedding with 503) and a
//! per-caller write rate (429). Both answer with an integer `Retry-After`, the only form Graph
//! SDKs understand (`docs/wire-contract.md`, "Errors"; `docs/auth.md`, "Limits on callers").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cmp_application::Caller;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::request_metrics;

/// Requests over the cap are refused at once rather than queued: a queue only adds latency
/// to work the client will retry anyway.
#[derive(Clone)]
pub struct ConcurrencyGate {
    permits: Arc<Semaphore>,
}

impl ConcurrencyGate {
    /// A gate letting `max_in_flight` requests through at once.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight)),
        }
    }
}

/// Middleware: sheds the request with 503 + `Retry-After: 1` when the cap is reached.
pub async fn shed_load(
    State(gate): State<ConcurrencyGate>,
    request: Request,
    next: Next,
) -> Response {
    match gate.permits.clone().try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => {
            request_metrics::count_load_shed();
            ApiError::overloaded(1).into_response()
        }
    }
}

/// A token bucket per caller for writes.
pub struct WriteRateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Above this many callers tracked, full (idle) buckets are dropped: an idle caller's bucket
/// holds nothing a fresh one would not.
const MAX_TRACKED_CALLERS: usize = 10_000;

impl WriteRateLimiter {
    /// `per_second` writes per caller on average, bursts of up to `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one write for `caller` at `now`; `Err(wait)` when none is left.
    pub fn take(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        // The map is only touched for a few arithmetic steps; a poisoned lock still holds
        // consistent buckets (each update is one assignment).
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_CALLERS {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, bucket| refill(bucket, now, per_second, burst).tokens < burst);
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        *bucket = refill(bucket, now, self.per_second, self.burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

fn refill(bucket: &Bucket, now: Instant, per_second: f64, burst: f64) -> Bucket {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    Bucket {
        tokens: (bucket.tokens + elapsed * per_second).min(burst),
        updated: now,
    }
}

/// Middleware (after authentication): limits each caller's writes, answering 429 with the
/// whole seconds until the next write is allowed.
pub async fn limit_writes(
    State(limiter): State<Arc<WriteRateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let is_write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if is_write {
        let caller = request
            .extensions()
            .get::<Caller>()
            .map(ToString::to_string)
            .unwrap_or_default();
        if let Err(wait) = limiter.take(&caller, Instant::now()) {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            request_metrics::count_rate_limited();
            return ApiError::too_many_requests(seconds.max(1)).into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_waits_for_the_rate() {
        let limiter = WriteRateLimiter::new(2.0, 3);
        let start = Instant::now();

        let burst: Vec<_> = (0..3).map(|_| limiter.take("a", start)).collect();
        let refused = limiter.take("a", start);
        let other_caller = limiter.take("b", start);
        let after_half_a_second = limiter.take("a", start + Duration::from_millis(500));

        assert!(burst.iter().all(Result::is_ok));
        assert_eq!(refused, Err(Duration::from_millis(500)));
        assert!(other_caller.is_ok(), "buckets are per caller");
        assert!(after_half_a_second.is_ok());
    }

    #[test]
    fn refill_never_exceeds_the_burst() {
        let limiter = WriteRateLimiter::new(100.0, 2);
        let start = Instant::now();
        let later = start + Duration::from_secs(3600);

        let taken = (0..3)
            .map(|_| limiter.take("a", later))
            .filter(Result::is_ok)
            .count();

        assert_eq!(taken, 2);
    }
}
