//! System ports: time, identity, chance and waiting. The domain reads none of them; the use
//! cases take them as inputs so that tests can pin every value.

use std::time::Duration;

use cmp_domain::Timestamp;
use uuid::Uuid;

/// Where "now" comes from. The domain never reads a clock; tests pin this one.
///
/// Contract: successive calls never go backwards within one process.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync + 'static {
    /// The current UTC instant.
    fn now(&self) -> Timestamp;
}

/// Where new identifiers come from (partner ids, outbox ids, client-request-ids, audit ids).
///
/// Contract: every call returns a UUID never returned before, by any process.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait IdSource: Send + Sync + 'static {
    /// A fresh, unique UUID.
    fn new_uuid(&self) -> Uuid;
}

/// Random draws for back-off jitter, injected so that delays can be asserted.
///
/// Contract: every draw lies in `0.0..1.0`.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Jitter: Send + Sync + 'static {
    /// A uniformly random number in `0.0..1.0`.
    fn fraction(&self) -> f64;
}

/// Waiting, injected so that deadlines and back-off can be tested without sleeping.
///
/// Contract: the future completes no earlier than `duration` after it is first polled, and
/// dropping it cancels the wait.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait Sleeper: Send + Sync + 'static {
    /// Completes after `duration`.
    async fn sleep(&self, duration: Duration);
}
