//! [`TenantPause`]: a 429 throttles the whole tenant, not one row.

use std::sync::{Arc, Mutex, PoisonError};

use cmp_domain::Timestamp;

/// The instant before which nothing is sent to the tenant, after Graph answered 429 with a
/// `Retry-After`. Shared by every dispatcher worker of the tenant (a clone shares the instant).
#[derive(Debug, Clone, Default)]
pub(crate) struct TenantPause {
    until: Arc<Mutex<Option<Timestamp>>>,
}

impl TenantPause {
    /// Whether the tenant is paused at `now`.
    pub(crate) fn paused_at(&self, now: Timestamp) -> bool {
        self.end().is_some_and(|end| now < end)
    }

    /// When the latest pause ends (which may have passed).
    pub(crate) fn end(&self) -> Option<Timestamp> {
        // A poisoned lock still holds a valid instant: the guarded value is a plain `Copy`.
        *self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pauses the tenant until `until`, or longer if a later pause is in force.
    pub(crate) fn until(&self, until: Timestamp) {
        let mut paused = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        *paused = Some(paused.map_or(until, |current| current.max(until)));
    }
}
