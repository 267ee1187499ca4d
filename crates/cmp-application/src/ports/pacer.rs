//! The pacer port: when the process may send its next request to one tenant's Graph.
//!
//! Graph throttles an app per tenant: writes are capped (Intune: 100 in any 20 s), reads have
//! a cap of their own, and a 429's `Retry-After` holds back *every* request of the app to the
//! tenant until it has passed. One [`Pacer`] per tenant holds those three rules for every path
//! that calls Graph (the inline delivery of a create, the dispatcher's deliveries, the reads of
//! reconciliation, the Graph client's own resends), so that no path can spend the budget or
//! break the pause behind another's back. `docs/delivery.md` tells the rules for people.
//!
//! # Contract
//!
//! The state of one tenant is four values, small enough for one database row updated in one
//! atomic statement, so that several replicas can share it:
//! - `next_write_at`: the earliest instant the next write may be booked for;
//! - `next_read_at`: the same for reads;
//! - `paused_until`: no request of any kind before this instant (set by a 429);
//! - `epoch`: a generation, bumped whenever a pause is recorded that ends later than the one
//!   in force. A [`Slot`] carries the epoch it was booked in.
//!
//! Each budget is a generic cell rate: one slot per `interval`, and up to `burst` slots at once
//! when the budget lay unused (idle, or paused by a `Retry-After`), so that the slots a pause
//! took are caught up afterwards. `next_<budget>_at` is the budget's theoretical arrival time;
//! `tolerance = interval × (burst − 1)`. In any window of length `w` at most
//! `w / interval + burst` slots start: with Intune's 100 writes in 20 s, the write rate × 20 s
//! plus the burst must stay within 100.
//!
//! Operations (every one atomic with respect to the others):
//! - [`Pacer::book`] at `now`, no later than `latest`: the slot starts at
//!   `max(now, paused_until, next_<budget>_at − tolerance)`. When that is after `latest` nothing
//!   is booked and the answer is [`Booking::NoneBefore`] with that instant, so a caller with a
//!   deadline can give up at once instead of waiting for a slot it cannot use. Otherwise
//!   `next_<budget>_at` moves to `max(next_<budget>_at, start) + interval`, and the slot is
//!   returned with the current epoch.
//! - [`Pacer::release`] of a slot that will not be used: when it is the latest one booked of
//!   its budget in the current epoch (its start plus the interval is `next_<budget>_at`),
//!   `next_<budget>_at` moves back to its start, and the next booking gets it. Any other slot
//!   is simply dropped: giving back a slot from the middle of the schedule would let two later
//!   requests start together, and the cap counts requests, not gaps. A cancelled slot needs no
//!   release.
//! - [`Pacer::pause`] until `until`, after a 429: when `until` is later than `paused_until`,
//!   `paused_until` becomes `until`, each `next_*_at` becomes at least `until`, and the epoch
//!   goes up by one, which cancels every slot booked before: their holders book again, after the
//!   pause. A pause that ends no later than the one in force changes nothing, so the same 429
//!   recorded twice (by the Graph client and by the delivery that got it) cancels once.
//!   [`Pacer::pause_at`] does the same knowing `now`, and also gives back what the cancelled
//!   slots had booked: each `next_*_at` becomes `max(until, min(next_*_at, now + tolerance +
//!   interval))` (no slot sent before `now` can have pushed it further), so the budget catches
//!   up after the pause.
//! - [`Pacer::is_valid`]: whether a slot still stands, i.e. was booked in the current epoch.
//!   A holder checks right before sending, after waiting for the slot's start: a valid slot
//!   never lies inside a pause, because a pause that covers it would have cancelled it.
//! - [`Pacer::state`]: the four values, for the dispatcher's pass and the metrics.
//!
//! Instants come from the caller's [`Clock`](crate::ports::Clock); the pacer never reads a
//! clock of its own, so tests pin every answer.

use std::time::Duration;

use cmp_domain::Timestamp;

/// Which of the tenant's budgets a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    /// POST, PATCH, DELETE: the write cap.
    Write,
    /// GET of an object, a page of the collection or a filtered query: the read cap.
    Read,
}

/// A booked start for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The budget it was booked from.
    pub budget: Budget,
    /// The earliest instant the request may be sent.
    pub at: Timestamp,
    /// The tenant's epoch when it was booked: a pause recorded since cancels it.
    pub epoch: u64,
}

/// The answer to a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Booking {
    /// A slot no later than the caller's `latest`.
    Booked(Slot),
    /// No slot before `latest`; nothing was booked. The next free slot starts at `next_free`
    /// (if nobody books it first), e.g. for when to try again.
    NoneBefore {
        /// Where the next slot would start.
        next_free: Timestamp,
    },
}

/// The tenant's pacing state: the row a shared implementation keeps per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerState {
    /// The earliest start of the next write slot.
    pub next_write_at: Timestamp,
    /// The earliest start of the next read slot.
    pub next_read_at: Timestamp,
    /// No request before this instant, when a 429 set it.
    pub paused_until: Option<Timestamp>,
    /// Bumped by every pause that ends later than the one in force.
    pub epoch: u64,
}

impl PacerState {
    /// The state of a tenant that has sent nothing yet.
    pub fn fresh() -> Self {
        Self {
            next_write_at: Timestamp::MIN,
            next_read_at: Timestamp::MIN,
            paused_until: None,
            epoch: 0,
        }
    }

    /// The state of a tenant whose budget may have been spent just before `now` (by this
    /// process before a restart, say): no slot starts earlier than a steady rate allows, so a
    /// restart never adds a burst to one Graph just counted.
    pub fn spent_at(rates: PacerRates, now: Timestamp) -> Self {
        Self {
            next_write_at: now.saturating_add(rates.tolerance(Budget::Write)),
            next_read_at: now.saturating_add(rates.tolerance(Budget::Read)),
            ..Self::fresh()
        }
    }

    /// The state a process starts with at `now` after a restart, from `kept`: what the tenant's
    /// state was when the process before it last recorded a pause (`None` when nothing was
    /// kept). The pause and the epoch are those kept, so a restarted process still honours a
    /// `Retry-After` its predecessor met; each budget starts as if spent just before `now`
    /// ([`PacerState::spent_at`]), or later when the kept schedule (pushed to the end of the
    /// pause) says so.
    pub fn restarted_at(rates: PacerRates, now: Timestamp, kept: Option<PacerState>) -> Self {
        let spent = Self::spent_at(rates, now);
        let Some(kept) = kept else {
            return spent;
        };
        Self {
            next_write_at: spent.next_write_at.max(kept.next_write_at),
            next_read_at: spent.next_read_at.max(kept.next_read_at),
            paused_until: kept.paused_until,
            epoch: kept.epoch,
        }
    }

    /// Whether the tenant is paused at `now`.
    pub fn paused_at(&self, now: Timestamp) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    /// What is left of the pause at `now` (zero when none is in force).
    pub fn pause_left(&self, now: Timestamp) -> Duration {
        self.paused_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// The start of the next slot of `budget` at `now`.
    pub fn next_start(&self, budget: Budget, now: Timestamp) -> Timestamp {
        let next = match budget {
            Budget::Write => self.next_write_at,
            Budget::Read => self.next_read_at,
        };
        now.max(next)
            .max(self.paused_until.unwrap_or(Timestamp::MIN))
    }
}

/// The spacing of each budget: one request per interval, and up to `burst` at once after the
/// budget lay unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerRates {
    /// Least time between the starts of two writes (1 / write rate), on average.
    pub write_interval: Duration,
    /// Least time between the starts of two reads (1 / read rate), on average.
    pub read_interval: Duration,
    /// Slots of a budget that may start at once after it lay unused; 1 (or 0) spaces every
    /// request by its interval.
    pub burst: u32,
}

impl PacerRates {
    /// Rates without catch-up: every request spaced by its interval.
    pub fn steady(write_interval: Duration, read_interval: Duration) -> Self {
        Self {
            write_interval,
            read_interval,
            burst: 1,
        }
    }

    /// How far before `next_<budget>_at` a slot may start: `interval × (burst − 1)`.
    pub fn tolerance(&self, budget: Budget) -> Duration {
        self.interval(budget).saturating_mul(self.burst.max(1) - 1)
    }

    /// The interval of `budget`.
    pub fn interval(&self, budget: Budget) -> Duration {
        match budget {
            Budget::Write => self.write_interval,
            Budget::Read => self.read_interval,
        }
    }
}

/// The transitions of the contract on a [`PacerState`], for implementations that hold the
/// state themselves (the in-process one; a database one can run the same arithmetic in SQL, or
/// read the row, apply these and write it back under a row lock).
impl PacerState {
    /// [`Pacer::book`]: the answer, and the state after it.
    pub fn book(
        mut self,
        rates: PacerRates,
        budget: Budget,
        now: Timestamp,
        latest: Timestamp,
    ) -> (Booking, Self) {
        let theoretical = match budget {
            Budget::Write => self.next_write_at,
            Budget::Read => self.next_read_at,
        };
        let at = now
            .max(theoretical.saturating_sub(rates.tolerance(budget)))
            .max(self.paused_until.unwrap_or(Timestamp::MIN));
        if at > latest {
            return (Booking::NoneBefore { next_free: at }, self);
        }
        let next = theoretical.max(at).saturating_add(rates.interval(budget));
        match budget {
            Budget::Write => self.next_write_at = next,
            Budget::Read => self.next_read_at = next,
        }
        let slot = Slot {
            budget,
            at,
            epoch: self.epoch,
        };
        (Booking::Booked(slot), self)
    }

    /// [`Pacer::release`]: the state after giving `slot` back.
    pub fn release(mut self, rates: PacerRates, slot: &Slot) -> Self {
        if slot.epoch != self.epoch {
            return self;
        }
        let tail = slot.at.saturating_add(rates.interval(slot.budget));
        let next = match slot.budget {
            Budget::Write => &mut self.next_write_at,
            Budget::Read => &mut self.next_read_at,
        };
        if *next == tail {
            *next = slot.at;
        }
        self
    }

    /// [`Pacer::pause`]: the state after a 429 that holds requests back until `until`.
    pub fn pause(mut self, until: Timestamp) -> Self {
        if self.paused_until.is_some_and(|current| current >= until) {
            return self;
        }
        self.paused_until = Some(until);
        self.next_write_at = self.next_write_at.max(until);
        self.next_read_at = self.next_read_at.max(until);
        self.epoch = self.epoch.saturating_add(1);
        self
    }

    /// [`Pacer::pause_at`]: the state after a 429 met at `now` that holds requests back until
    /// `until`, the cancelled slots given back.
    pub fn pause_at(self, rates: PacerRates, now: Timestamp, until: Timestamp) -> Self {
        if self.paused_until.is_some_and(|current| current >= until) {
            return self;
        }
        // No slot started before `now` pushed the theoretical arrival time past
        // `now + tolerance + interval`; anything beyond was booked by slots now cancelled.
        let sent_bound = |budget: Budget| {
            now.saturating_add(rates.tolerance(budget))
                .saturating_add(rates.interval(budget))
        };
        let next_write_at = until.max(self.next_write_at.min(sent_bound(Budget::Write)));
        let next_read_at = until.max(self.next_read_at.min(sent_bound(Budget::Read)));
        Self {
            next_write_at,
            next_read_at,
            ..self.pause(until)
        }
    }

    /// [`Pacer::is_valid`].
    pub fn is_valid(&self, slot: &Slot) -> bool {
        slot.epoch == self.epoch
    }
}

/// Why the pacer could not answer: its state could not be read or written (a shared store
/// failed). Callers treat it as "no slot now" and try later; they never send without a slot.
#[derive(Debug, thiserror::Error)]
#[error("the tenant's pacing state could not be read or written")]
pub struct PacerError(#[source] pub anyhow::Error);

/// One tenant's request budget and `Retry-After` pause. See the module documentation for the
/// contract every implementation keeps.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait Pacer: Send + Sync + 'static {
    /// Books the next slot of `budget` at `now`, if it starts no later than `latest`.
    ///
    /// # Errors
    /// [`PacerError`] when the state cannot be read or written; nothing is booked.
    async fn book(
        &self,
        budget: Budget,
        now: Timestamp,
        latest: Timestamp,
    ) -> Result<Booking, PacerError>;

    /// Gives back a slot that will not be used.
    ///
    /// # Errors
    /// [`PacerError`] when the state cannot be written; the slot is then lost, which costs
    /// budget but never breaks a limit.
    async fn release(&self, slot: &Slot) -> Result<(), PacerError>;

    /// Records a 429: nothing is sent to the tenant before `until`, and every slot booked
    /// before is cancelled (unless a pause ending no earlier is already in force).
    ///
    /// # Errors
    /// [`PacerError`] when the state cannot be written.
    async fn pause(&self, until: Timestamp) -> Result<(), PacerError>;

    /// Records a 429 met at `now`, as [`Pacer::pause`], and gives back what the cancelled slots
    /// had booked, so that the budget catches up after the pause (see the contract). The
    /// default is [`Pacer::pause`], which is safe but lets the cancelled slots cost budget.
    ///
    /// # Errors
    /// [`PacerError`] when the state cannot be written.
    async fn pause_at(&self, now: Timestamp, until: Timestamp) -> Result<(), PacerError> {
        let _ = now;
        self.pause(until).await
    }

    /// Whether `slot` still stands (no pause was recorded since it was booked).
    ///
    /// # Errors
    /// [`PacerError`] when the state cannot be read; the caller must not send.
    async fn is_valid(&self, slot: &Slot) -> Result<bool, PacerError>;

    /// The tenant's state now.
    ///
    /// # Errors
    /// [`PacerError`] when the state cannot be read.
    async fn state(&self) -> Result<PacerState, PacerError>;
}

/// The contract as executable checks, for every implementation's tests (the in-process one
/// here, a database one in its adapter). Each check takes a fresh pacer of the given rates
/// and panics on a breach.
#[cfg(any(test, feature = "mocks"))]
pub mod contract {
    use super::*;

    /// The rates every check builds its pacer with: 4 writes and 10 reads a second.
    pub const RATES: PacerRates = PacerRates {
        write_interval: Duration::from_millis(250),
        read_interval: Duration::from_millis(100),
        burst: 1,
    };

    /// [`RATES`] with up to three slots at once after the budget lay unused.
    pub const BURSTING: PacerRates = PacerRates { burst: 3, ..RATES };

    fn t0() -> Timestamp {
        Timestamp::from_unix_seconds(1_767_225_600, 0).expect("in range")
    }

    fn at(ms: u64) -> Timestamp {
        t0().saturating_add(Duration::from_millis(ms))
    }

    async fn booked(pacer: &dyn Pacer, budget: Budget, now: u64, latest: u64) -> Slot {
        match pacer
            .book(budget, at(now), at(latest))
            .await
            .expect("pacer answers")
        {
            Booking::Booked(slot) => slot,
            Booking::NoneBefore { next_free } => panic!("no slot; next free at {next_free:?}"),
        }
    }

    /// Writes are spaced by the write interval, reads by the read interval, independently.
    pub async fn budgets_are_spaced_independently(pacer: &dyn Pacer) {
        let w1 = booked(pacer, Budget::Write, 0, 10_000).await;
        let w2 = booked(pacer, Budget::Write, 0, 10_000).await;
        let r1 = booked(pacer, Budget::Read, 0, 10_000).await;
        let r2 = booked(pacer, Budget::Read, 0, 10_000).await;
        let w3 = booked(pacer, Budget::Write, 600, 10_000).await;
        assert_eq!(
            [w1.at, w2.at, w3.at],
            [at(0), at(250), at(600)],
            "writes one interval apart, an idle gap is not saved up"
        );
        assert_eq!(
            [r1.at, r2.at],
            [at(0), at(100)],
            "reads on their own schedule"
        );
    }

    /// A booking that cannot start by `latest` books nothing and says when the next would.
    pub async fn no_slot_before_latest_books_nothing(pacer: &dyn Pacer) {
        booked(pacer, Budget::Write, 0, 0).await;
        booked(pacer, Budget::Write, 0, 250).await;
        let refused = pacer
            .book(Budget::Write, at(0), at(499))
            .await
            .expect("pacer answers");
        assert_eq!(refused, Booking::NoneBefore { next_free: at(500) });
        let next = booked(pacer, Budget::Write, 0, 500).await;
        assert_eq!(next.at, at(500), "the refusal kept nothing");
    }

    /// The latest slot given back is booked again; one from the middle is dropped.
    pub async fn a_released_tail_slot_is_booked_again(pacer: &dyn Pacer) {
        let first = booked(pacer, Budget::Write, 0, 10_000).await;
        let second = booked(pacer, Budget::Write, 0, 10_000).await;
        pacer.release(&second).await.expect("pacer answers");
        let again = booked(pacer, Budget::Write, 0, 10_000).await;
        assert_eq!(again.at, second.at, "the tail slot came back");
        pacer.release(&first).await.expect("pacer answers");
        let after = booked(pacer, Budget::Write, 0, 10_000).await;
        assert_eq!(
            after.at,
            at(500),
            "a slot from the middle is not handed out twice"
        );
    }

    /// A pause cancels every slot booked before it and holds every budget until it ends;
    /// a shorter or equal pause recorded afterwards changes nothing.
    pub async fn a_pause_cancels_booked_slots(pacer: &dyn Pacer) {
        let write = booked(pacer, Budget::Write, 0, 10_000).await;
        let late = booked(pacer, Budget::Write, 0, 10_000).await;
        let read = booked(pacer, Budget::Read, 0, 10_000).await;
        pacer.pause(at(3_000)).await.expect("pacer answers");
        for slot in [write, late, read] {
            assert!(
                !pacer.is_valid(&slot).await.expect("pacer answers"),
                "{slot:?} was booked before the pause"
            );
        }
        let state = pacer.state().await.expect("pacer answers");
        assert!(state.paused_at(at(2_999)) && !state.paused_at(at(3_000)));
        assert_eq!(state.pause_left(at(1_000)), Duration::from_secs(2));

        let refused = pacer
            .book(Budget::Read, at(10), at(2_999))
            .await
            .expect("pacer answers");
        assert_eq!(
            refused,
            Booking::NoneBefore {
                next_free: at(3_000)
            }
        );
        let after_write = booked(pacer, Budget::Write, 10, 10_000).await;
        let after_read = booked(pacer, Budget::Read, 10, 10_000).await;
        assert_eq!([after_write.at, after_read.at], [at(3_000), at(3_000)]);

        pacer.pause(at(3_000)).await.expect("pacer answers");
        pacer.pause(at(1_000)).await.expect("pacer answers");
        assert!(
            pacer.is_valid(&after_write).await.expect("pacer answers"),
            "the same 429 recorded twice cancels once"
        );
        let next = booked(pacer, Budget::Write, 10, 10_000).await;
        assert_eq!(next.at, at(3_250), "the schedule after the pause is kept");

        pacer.pause(at(5_000)).await.expect("pacer answers");
        assert!(!pacer.is_valid(&next).await.expect("pacer answers"));
        let released = pacer.release(&next).await;
        assert!(released.is_ok(), "releasing a cancelled slot is harmless");
        let resumed = booked(pacer, Budget::Write, 10, 10_000).await;
        assert_eq!(resumed.at, at(5_000));
    }

    /// With a burst, an unused budget catches up at once, then runs at its rate; a pause
    /// recorded with `pause_at` gives back the cancelled slots, so the budget catches up after
    /// it, but never beyond what was sent before the 429.
    pub async fn a_burst_catches_up_after_an_idle_budget_or_a_pause(pacer: &dyn Pacer) {
        let mut starts = Vec::new();
        for _ in 0..5 {
            starts.push(booked(pacer, Budget::Write, 0, 10_000).await.at);
        }
        assert_eq!(
            starts,
            [at(0), at(0), at(0), at(250), at(500)],
            "three at once, then one per interval"
        );
        // Slots up to 10 s ahead were booked; a 429 at 600 ms pauses until 1 s.
        for _ in 0..30 {
            booked(pacer, Budget::Write, 600, 10_000).await;
        }
        pacer
            .pause_at(at(600), at(1_000))
            .await
            .expect("pacer answers");
        let mut after = Vec::new();
        for _ in 0..4 {
            after.push(booked(pacer, Budget::Write, 600, 10_000).await.at);
        }
        // What was sent before the 429 can have pushed the schedule to 600 + 500 + 250 ms at
        // most; the 30 cancelled slots beyond are given back.
        assert_eq!(
            after,
            [at(1_000), at(1_100), at(1_350), at(1_600)],
            "the cancelled slots came back, within the burst"
        );
    }

    /// Runs every check, each on a fresh pacer from `make`.
    pub async fn all<P: Pacer>(make: impl Fn(PacerRates) -> P) {
        budgets_are_spaced_independently(&make(RATES)).await;
        no_slot_before_latest_books_nothing(&make(RATES)).await;
        a_released_tail_slot_is_booked_again(&make(RATES)).await;
        a_pause_cancels_booked_slots(&make(RATES)).await;
        a_burst_catches_up_after_an_idle_budget_or_a_pause(&make(BURSTING)).await;
    }
}
