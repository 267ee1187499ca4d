//! [`Timestamp`]: a UTC instant with the 100 ns precision of Graph's `Edm.DateTimeOffset`.

use std::fmt;
use std::time::Duration;

/// Ticks (100 ns units) in one second.
pub const TICKS_PER_SECOND: i64 = 10_000_000;

/// Seconds from 0001-01-01T00:00:00Z to the Unix epoch.
const SECONDS_FROM_YEAR_1_TO_UNIX_EPOCH: i64 = 62_135_596_800;

/// Seconds from the Unix epoch to 9999-12-31T23:59:59Z.
const SECONDS_FROM_UNIX_EPOCH_TO_YEAR_9999_END: i64 = 253_402_300_799;

/// A UTC instant between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.9999999Z, counted
/// in 100 ns ticks from the Unix epoch.
///
/// The range is that of `Edm.DateTimeOffset` as Graph renders it, so every value has a
/// four-digit-year rendering; the precision is Graph's, so a heartbeat round-trips without
/// losing its seventh fractional digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// The instant is outside the years 0001 to 9999.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instant is outside the years 0001 to 9999")]
pub struct TimestampError;

impl Timestamp {
    /// The earliest instant, 0001-01-01T00:00:00Z. Graph reports it for a heartbeat that
    /// was never set, so it is also the default heartbeat.
    pub const MIN: Timestamp = Timestamp(-SECONDS_FROM_YEAR_1_TO_UNIX_EPOCH * TICKS_PER_SECOND);

    /// The latest instant, 9999-12-31T23:59:59.9999999Z.
    pub const MAX: Timestamp = Timestamp(
        SECONDS_FROM_UNIX_EPOCH_TO_YEAR_9999_END * TICKS_PER_SECOND + TICKS_PER_SECOND - 1,
    );

    /// Builds an instant from 100 ns ticks since the Unix epoch.
    ///
    /// # Errors
    /// [`TimestampError`] when the instant falls outside [`Timestamp::MIN`]..=[`Timestamp::MAX`].
    pub fn from_unix_ticks(ticks: i64) -> Result<Self, TimestampError> {
        if (Self::MIN.0..=Self::MAX.0).contains(&ticks) {
            Ok(Self(ticks))
        } else {
            Err(TimestampError)
        }
    }

    /// Builds an instant from whole seconds since the Unix epoch plus a sub-second part in
    /// 100 ns ticks (`0..10_000_000`).
    ///
    /// # Errors
    /// [`TimestampError`] when the instant is out of range or the sub-second part is too large.
    pub fn from_unix_seconds(seconds: i64, subsecond_ticks: u32) -> Result<Self, TimestampError> {
        if i64::from(subsecond_ticks) >= TICKS_PER_SECOND {
            return Err(TimestampError);
        }
        let ticks = seconds
            .checked_mul(TICKS_PER_SECOND)
            .and_then(|t| t.checked_add(i64::from(subsecond_ticks)))
            .ok_or(TimestampError)?;
        Self::from_unix_ticks(ticks)
    }

    /// 100 ns ticks since the Unix epoch (negative before 1970).
    pub fn unix_ticks(&self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, rounded towards the past.
    pub fn unix_seconds(&self) -> i64 {
        self.0.div_euclid(TICKS_PER_SECOND)
    }

    /// The 100 ns ticks after [`Timestamp::unix_seconds`], `0..10_000_000`.
    pub fn subsecond_ticks(&self) -> u32 {
        // rem_euclid of a positive divisor is in 0..TICKS_PER_SECOND, which fits in u32.
        self.0.rem_euclid(TICKS_PER_SECOND) as u32
    }

    /// This instant moved `duration` later, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(&self, duration: Duration) -> Self {
        Self(
            self.0
                .saturating_add(duration_ticks(duration))
                .min(Self::MAX.0),
        )
    }

    /// This instant moved `duration` earlier, saturating at [`Timestamp::MIN`].
    pub fn saturating_sub(&self, duration: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(duration_ticks(duration))
                .max(Self::MIN.0),
        )
    }

    /// How long after `earlier` this instant lies; zero when `earlier` is not earlier.
    pub fn saturating_duration_since(&self, earlier: Timestamp) -> Duration {
        // Both lie in MIN..=MAX, so the difference fits in an i64; 100 ns per tick.
        let ticks = self.0.saturating_sub(earlier.0).max(0);
        let ticks = u64::try_from(ticks).unwrap_or(0);
        Duration::new(
            ticks / TICKS_PER_SECOND.unsigned_abs(),
            // Below 10,000,000 ticks, so below 1,000,000,000 ns: fits in u32.
            u32::try_from((ticks % TICKS_PER_SECOND.unsigned_abs()) * 100).unwrap_or(0),
        )
    }
}

/// A duration in whole 100 ns ticks (rounded down), saturating at `i64::MAX`.
fn duration_ticks(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos() / 100).unwrap_or(i64::MAX)
}

impl fmt::Display for Timestamp {
    /// Debugging form: ticks since the epoch. The wire form is the Graph model's business.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ticks", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ends_are_accepted_and_beyond_them_refused() {
        assert!(Timestamp::from_unix_ticks(Timestamp::MIN.unix_ticks()).is_ok());
        assert!(Timestamp::from_unix_ticks(Timestamp::MAX.unix_ticks()).is_ok());
        assert_eq!(
            Timestamp::from_unix_ticks(Timestamp::MIN.unix_ticks() - 1),
            Err(TimestampError)
        );
        assert_eq!(
            Timestamp::from_unix_ticks(Timestamp::MAX.unix_ticks() + 1),
            Err(TimestampError)
        );
    }

    #[test]
    fn seconds_and_subsecond_ticks_split_negative_instants_towards_the_past() {
        let t = Timestamp::from_unix_ticks(-1).expect("in range");
        assert_eq!(t.unix_seconds(), -1);
        assert_eq!(t.subsecond_ticks(), 9_999_999);
        assert_eq!(Timestamp::from_unix_seconds(-1, 9_999_999), Ok(t));
    }

    #[test]
    fn subsecond_part_must_be_below_one_second() {
        assert_eq!(
            Timestamp::from_unix_seconds(0, 10_000_000),
            Err(TimestampError)
        );
    }

    #[test]
    fn adding_and_subtracting_saturate_at_the_range_ends() {
        assert_eq!(
            Timestamp::MAX.saturating_add(Duration::from_secs(10)),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::MIN.saturating_sub(Duration::from_secs(10)),
            Timestamp::MIN
        );
        assert_eq!(Timestamp::MIN.saturating_add(Duration::MAX), Timestamp::MAX);
        let epoch = Timestamp::from_unix_ticks(0).expect("in range");
        assert_eq!(
            epoch
                .saturating_add(Duration::from_secs(300))
                .unix_seconds(),
            300
        );
        assert_eq!(
            epoch
                .saturating_add(Duration::from_millis(1500))
                .unix_ticks(),
            15_000_000
        );
        assert_eq!(
            epoch.saturating_sub(Duration::from_nanos(250)).unix_ticks(),
            -2,
            "sub-tick remainders are dropped"
        );
    }

    #[test]
    fn the_duration_between_two_instants_is_exact_to_the_tick_and_never_negative() {
        let earlier = Timestamp::from_unix_seconds(100, 5).expect("in range");
        let later = Timestamp::from_unix_seconds(102, 7).expect("in range");

        assert_eq!(
            later.saturating_duration_since(earlier),
            Duration::new(2, 200)
        );
        assert_eq!(earlier.saturating_duration_since(later), Duration::ZERO);
        assert_eq!(
            Timestamp::MAX
                .saturating_duration_since(Timestamp::MIN)
                .as_secs(),
            u64::try_from(Timestamp::MAX.unix_seconds() - Timestamp::MIN.unix_seconds())
                .expect("positive"),
            "the whole range is measured without overflow"
        );
        let moved = earlier.saturating_add(Duration::from_millis(1234));
        assert_eq!(
            moved.saturating_duration_since(earlier),
            Duration::from_millis(1234)
        );
    }
}
