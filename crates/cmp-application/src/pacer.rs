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
        Self::with_state(rates, PacerState::spent_at(rates, now))
    }

    /// A pacer that starts from `state`, e.g. [`PacerState::restarted_at`] what a store kept
    /// of the tenant's last pause.
    pub fn with_state(rates: PacerRates, state: PacerState) -> Self {
        Self {
            rates,
            state: Mutex::new(state),
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
    async fn a_pacer_restarted_from_a_kept_pause_starts_inside_it() {
        let start = Timestamp::from_unix_seconds(1_767_225_600, 0).expect("in range");
        let rates = contract::BURSTING;
        let before = InProcessPacer::starting_at(rates, start);
        let until = start.saturating_add(std::time::Duration::from_secs(3));
        before.pause_at(start, until).await.expect("in memory");
        let kept = before.state().await.expect("in memory");

        let moment_later = start.saturating_add(std::time::Duration::from_millis(200));
        let after = InProcessPacer::with_state(
            rates,
            PacerState::restarted_at(rates, moment_later, Some(kept)),
        );
        assert_eq!(
            after
                .book(
                    Budget::Read,
                    moment_later,
                    until.saturating_sub(std::time::Duration::from_millis(1))
                )
                .await
                .expect("in memory"),
            Booking::NoneBefore { next_free: until },
            "nothing, not even a read, before the pause its predecessor met ends"
        );
        let state = after.state().await.expect("in memory");
        assert_eq!(
            state.epoch, kept.epoch,
            "the epoch goes on from the kept one"
        );
        assert_eq!(
            PacerState::restarted_at(rates, moment_later, None),
            PacerState::spent_at(rates, moment_later),
            "nothing kept: the budget counted as just spent, no pause"
        );
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
