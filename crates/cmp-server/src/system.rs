//! The real clock, id source and sleeper behind the application's ports.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cmp_application::{Clock, IdSource, Jitter, Sleeper};
use cmp_domain::Timestamp;
use uuid::Uuid;

/// The system's UTC clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let ticks = i64::try_from(since_epoch.as_nanos() / 100).unwrap_or(i64::MAX);
        Timestamp::from_unix_ticks(ticks).unwrap_or(Timestamp::MAX)
    }
}

/// Time-ordered (version 7) UUIDs: 48 bits of Unix milliseconds, then random bits, increasing
/// within the process.
///
/// Every table keyed by one of these ids (partners, outbox rows, deliveries, audit entries)
/// then receives its new rows at the end of its b-tree instead of at random places: the writes
/// of one group commit share a few pages, which are already in the cache, instead of dirtying
/// one page per row and index (`docs/benchmarks.md` has the figures). The ids stay GUIDs in the
/// form Graph uses. They reveal when they were made, to the millisecond, which is no secret;
/// nothing relies on an id being hard to guess, since every request is authorised by its token.
pub struct TimeOrderedIds;

impl IdSource for TimeOrderedIds {
    fn new_uuid(&self) -> Uuid {
        Uuid::now_v7()
    }
}

/// Back-off jitter from a fast, non-cryptographic generator: it only spreads retries out.
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn fraction(&self) -> f64 {
        fastrand::f64()
    }
}

/// Tokio's timer.
pub struct TokioSleeper;

#[async_trait::async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_a_recent_instant() {
        // 2020-01-01T00:00:00Z: the clock must be past it and within the supported range.
        let floor = Timestamp::from_unix_seconds(1_577_836_800, 0).expect("in range");
        assert!(SystemClock.now() > floor);
    }

    #[test]
    fn ids_differ_and_increase() {
        let ids: Vec<Uuid> = (0..1000).map(|_| TimeOrderedIds.new_uuid()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
        // Their text, which the tables are keyed by, sorts the same way.
        let texts: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        assert!(texts.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
