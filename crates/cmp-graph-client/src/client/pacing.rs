//! [`Pacing`]: when the next request of this client may go out.
//!
//! Two rules share one lock, because both are about the whole tenant rather than one call:
//! - a 429 throttles the app in the tenant, not one URL, so after it *no* request goes out
//!   before its `Retry-After` moment (Microsoft's Dev Proxy flags early retries);
//! - writes are spaced at least `write_interval` apart (at most 4 writes per second per
//!   tenant by default), well under Intune's 100 writes per 20 s per app and tenant.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cmp_domain::Timestamp;
use cmp_domain::time::TICKS_PER_SECOND;

/// Nanoseconds in one [`Timestamp`] tick.
const NANOS_PER_TICK: u32 = 100;

/// The tenant-wide schedule of one client.
pub(crate) struct Pacing {
    /// Least time between the starts of two writes.
    write_interval: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// No request before this instant: set by a 429.
    paused_until: Option<Timestamp>,
    /// The start reserved by the latest write; the next write starts `write_interval` later.
    /// A reservation rather than a record of the past, so that concurrent writes queue up
    /// one interval apart instead of all waiting for the same slot.
    last_write_start: Option<Timestamp>,
}

/// How long a request must wait for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turn {
    /// The whole wait before sending.
    pub(crate) wait: Duration,
    /// The part of `wait` owed to a 429 pause: it counts against the call's retry budget.
    pub(crate) paused: Duration,
}

impl Pacing {
    /// A schedule with no pause and no write yet.
    pub(crate) fn new(write_interval: Duration) -> Self {
        Self {
            write_interval,
            state: Mutex::new(State::default()),
        }
    }

    /// Takes the next turn at `now`. A write also reserves its start slot.
    ///
    /// # Errors
    /// The remaining pause, when it is longer than `pause_allowance` (what is left of the
    /// call's retry budget): the call then ends without sending and nothing is reserved.
    pub(crate) fn take_turn(
        &self,
        now: Timestamp,
        is_write: bool,
        pause_allowance: Duration,
    ) -> Result<Turn, Duration> {
        let mut state = self.lock();
        let paused = state.paused_until.map_or(Duration::ZERO, |t| until(t, now));
        if paused > pause_allowance {
            return Err(paused);
        }
        let mut start = later(now, paused);
        if is_write {
            if let Some(last) = state.last_write_start {
                start = start.max(later(last, self.write_interval));
            }
            state.last_write_start = Some(start);
        }
        Ok(Turn {
            wait: until(start, now),
            paused,
        })
    }

    /// Holds every request back until `until` (a later pause already in force stays).
    pub(crate) fn pause_until(&self, until: Timestamp) {
        let mut state = self.lock();
        state.paused_until = Some(state.paused_until.map_or(until, |t| t.max(until)));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is a single assignment, so a panic elsewhere cannot
        // leave the state half-written: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `at` moved forward by `by`, saturating at [`Timestamp::MAX`].
pub(crate) fn later(at: Timestamp, by: Duration) -> Timestamp {
    let ticks = i64::try_from(by.as_nanos() / u128::from(NANOS_PER_TICK)).unwrap_or(i64::MAX);
    Timestamp::from_unix_ticks(at.unix_ticks().saturating_add(ticks)).unwrap_or(Timestamp::MAX)
}

/// Time from `now` until `then`; zero when `then` is not in the future.
pub(crate) fn until(then: Timestamp, now: Timestamp) -> Duration {
    let ticks = then.unix_ticks().saturating_sub(now.unix_ticks());
    let Ok(ticks) = u64::try_from(ticks) else {
        return Duration::ZERO;
    };
    let per_second = TICKS_PER_SECOND.unsigned_abs();
    let seconds = ticks / per_second;
    // The remainder is below 10^7 ticks, i.e. below 10^9 ns: it fits in u32.
    let nanos = u32::try_from(ticks % per_second).unwrap_or(0) * NANOS_PER_TICK;
    Duration::new(seconds, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Timestamp {
        Timestamp::from_unix_seconds(1_767_225_600, 0).expect("in range")
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn later_and_until_are_inverse_to_the_tick() {
        let by = Duration::from_millis(2_128);
        assert_eq!(until(later(t0(), by), t0()), by);
        assert_eq!(until(t0(), later(t0(), by)), Duration::ZERO);
    }

    #[test]
    fn writes_are_spaced_by_the_interval_and_reads_are_not() {
        let pacing = Pacing::new(250 * MS);

        let first = pacing.take_turn(t0(), true, Duration::ZERO);
        let second = pacing.take_turn(t0(), true, Duration::ZERO);
        let third = pacing.take_turn(later(t0(), 100 * MS), true, Duration::ZERO);
        let read = pacing.take_turn(t0(), false, Duration::ZERO);

        let turn = |wait| {
            Ok(Turn {
                wait,
                paused: Duration::ZERO,
            })
        };
        assert_eq!(first, turn(Duration::ZERO));
        assert_eq!(second, turn(250 * MS));
        assert_eq!(third, turn(400 * MS), "slot t0+500 ms, asked at t0+100 ms");
        assert_eq!(read, turn(Duration::ZERO));
    }

    #[test]
    fn a_pause_holds_every_request_and_refuses_beyond_the_allowance() {
        let pacing = Pacing::new(MS);
        pacing.pause_until(later(t0(), Duration::from_secs(60)));
        pacing.pause_until(later(t0(), Duration::from_secs(10)));

        let refused = pacing.take_turn(t0(), true, Duration::from_secs(59));
        let read = pacing.take_turn(t0(), false, Duration::from_secs(180));
        let after = pacing.take_turn(later(t0(), Duration::from_secs(61)), false, Duration::ZERO);

        assert_eq!(
            refused,
            Err(Duration::from_secs(60)),
            "the longer pause stays"
        );
        assert_eq!(
            read,
            Ok(Turn {
                wait: Duration::from_secs(60),
                paused: Duration::from_secs(60),
            })
        );
        assert_eq!(
            after,
            Ok(Turn {
                wait: Duration::ZERO,
                paused: Duration::ZERO,
            })
        );
    }
}
