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

/// Random (version 4) UUIDs.
pub struct RandomIds;

impl IdSource for RandomIds {
    fn new_uuid(&self) -> Uuid {
        Uuid::new_v4()
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
    fn random_ids_differ() {
        assert_ne!(RandomIds.new_uuid(), RandomIds.new_uuid());
    }
}
