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

    /// A pacer for a tenant whose budget may have been spent just before `now`
    /// ([`PacerState::spent_at`]): what a process starts with, since it cannot know what it
    /// sent before a restart.
    pub fn starting_at(rates: PacerRates, now: Timestamp) -> Self {
        Self {
            rates,
            state: Mutex::new(PacerState::spent_at(rates, now)),
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

    async fn pause_at(&self, now: Timestamp, until: Timestamp) -> Result<(), PacerError> {
        let mut state = self.lock();
        *state = state.pause_at(self.rates, now, until);
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

    #[tokio::test]
    async fn a_pacer_starting_after_a_restart_grants_no_burst() {
        let start = Timestamp::from_unix_seconds(1_767_225_600, 0).expect("in range");
        let pacer = InProcessPacer::starting_at(contract::BURSTING, start);
        let mut starts = Vec::new();
        for _ in 0..3 {
            match pacer
                .book(Budget::Write, start, Timestamp::MAX)
                .await
                .expect("in memory")
            {
                Booking::Booked(slot) => starts.push(slot.at),
                Booking::NoneBefore { .. } => panic!("no deadline to miss"),
            }
        }
        let interval = contract::BURSTING.write_interval;
        assert_eq!(
            starts,
            [
                start,
                start.saturating_add(interval),
                start.saturating_add(interval * 2)
            ],
            "spaced from the start, as if the budget had just been spent"
        );
    }
}
