//! [`InProcessPacer`]: the tenant's [`Pacer`] held in this process's memory.
//!
//! One per tenant, shared by every path of the process that calls Graph. It is right for a
//! deployment with one replica (the SQLite store); several replicas share one tenant's budget
//! only through a pacer whose state lives in their common database.

use std::sync::{Mutex, MutexGuard, PoisonError};

use cmp_domain::Timestamp;

use crate::ports::{Booking, Budget, Pacer, PacerError, PacerRates, PacerState, Slot};

/// The tenant's pacing state behind a lock; every operation is one transition of
/// [`PacerState`] under it.
#[derive(Debug)]
pub struct InProcessPacer {
    rates: PacerRates,
    state: Mutex<PacerState>,
}

impl InProcessPacer {
    /// A pacer for a tenant that has sent nothing yet.
    pub fn new(rates: PacerRates) -> Self {
        Self {
            rates,
            state: Mutex::new(PacerState::fresh()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PacerState> {
        // Every transition replaces the whole `Copy` state at once, so a panic elsewhere
        // cannot leave it half-written: a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Pacer for InProcessPacer {
    async fn book(
        &self,
        budget: Budget,
        now: Timestamp,
        latest: Timestamp,
    ) -> Result<Booking, PacerError> {
        let mut state = self.lock();
        let (booking, next) = state.book(self.rates, budget, now, latest);
        *state = next;
        Ok(booking)
    }

    async fn release(&self, slot: &Slot) -> Result<(), PacerError> {
        let mut state = self.lock();
        *state = state.release(self.rates, slot);
        Ok(())
    }

    async fn pause(&self, until: Timestamp) -> Result<(), PacerError> {
        let mut state = self.lock();
        *state = state.pause(until);
        Ok(())
    }

    async fn is_valid(&self, slot: &Slot) -> Result<bool, PacerError> {
        Ok(self.lock().is_valid(slot))
    }

    async fn state(&self) -> Result<PacerState, PacerError> {
        Ok(*self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::pacer::contract;

    #[tokio::test]
    async fn the_in_process_pacer_keeps_the_contract() {
        contract::all(InProcessPacer::new).await;
    }
}
