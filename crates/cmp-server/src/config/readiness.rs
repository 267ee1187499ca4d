//! `[readiness]`: the bounds of the readiness probe's checks (`docs/operations.md`).

use std::time::Duration;

use serde::Deserialize;

/// `[readiness]`: the bounds of the readiness checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessSettings {
    /// A dispatcher worker whose last pass ended longer ago than this makes the service not
    /// ready, in milliseconds: three poll intervals plus the longest pass expected.
    pub dispatcher_stale_after_ms: u64,
    /// Longest wait for the store's checks, in milliseconds; a store that takes longer (its
    /// write lock held elsewhere, its writer busy) counts as failing.
    pub store_timeout_ms: u64,
}

impl ReadinessSettings {
    /// Checks the bounds against the dispatcher's poll interval.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self, dispatcher_poll_interval: Duration) -> Result<(), String> {
        // An idle worker ends a pass, then waits a poll interval: a bound shorter than a few of
        // those would call a healthy, idle dispatcher stale.
        if Duration::from_millis(self.dispatcher_stale_after_ms)
            <= dispatcher_poll_interval.saturating_mul(3)
        {
            return Err(
                "readiness.dispatcher_stale_after_ms must exceed 3 x outbox.dispatcher_poll_interval"
                    .into(),
            );
        }
        if self.store_timeout_ms == 0 {
            return Err("readiness.store_timeout_ms must be greater than 0".into());
        }
        Ok(())
    }
}
