//! [`OutboxPolicy`]: the numbers that govern deliveries, all of them configuration.

use std::time::Duration;

/// How deliveries are timed and when they are given up, for the inline delivery of a create
/// and for the dispatcher alike. Built by the binary from its configuration only: there is no
/// `Default`, so no second set of numbers can drift from `config/default.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxPolicy {
    /// How long a create request waits for Graph before answering `202 Accepted`.
    pub inline_deadline: Duration,
    /// How long a delivery holds its row; a row whose lease lapsed turns `unknown`.
    pub lease: Duration,
    /// How long to wait after an unknown outcome before reconciling, so that a slow POST has
    /// finished on Graph's side (Graph's request timeout + 30 s).
    pub settle: Duration,
    /// The base of the full-jitter back-off between deliveries.
    pub retry_base: Duration,
    /// The cap of the full-jitter back-off.
    pub backoff_cap: Duration,
    /// Deliveries after which a transiently failing row is dead.
    pub max_attempts: u32,
    /// Age of the first delivery after which a transiently failing row is dead.
    pub max_age: Duration,
    /// Rows a dispatcher claims per pass.
    pub batch_size: u32,
    /// Reconcile a row by asking Graph for its display name (`$filter`) before walking the
    /// whole collection; the answer is checked, and the walk stays the fallback.
    pub reconcile_by_name: bool,
}
