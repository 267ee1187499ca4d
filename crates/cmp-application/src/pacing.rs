//! Taking a slot of the tenant's [`Pacer`]: book it, wait for its start, and check it still
//! stands before sending. Every path that calls Graph goes through [`wait_for_slot`], and
//! records a 429 with [`record_throttle`].

use std::time::Duration;

use cmp_domain::Timestamp;

use crate::ports::{Booking, Budget, Clock, Pacer, PacerError, Sleeper};

/// Books a slot of `budget` that starts no later than `latest`, waits for its start, and checks
/// that no pause cancelled it meanwhile; a cancelled slot is booked again, after the pause.
/// Answers [`Booking::Booked`] when the request may go out now, or [`Booking::NoneBefore`]
/// (nothing booked) when no slot starts by `latest`: the caller then gives up at once instead
/// of waiting for a slot it cannot use.
///
/// # Errors
/// [`PacerError`] when the pacer cannot answer; nothing may be sent then.
pub async fn wait_for_slot(
    pacer: &dyn Pacer,
    clock: &dyn Clock,
    sleeper: &dyn Sleeper,
    budget: Budget,
    latest: Timestamp,
) -> Result<Booking, PacerError> {
    loop {
        let now = clock.now();
        let slot = match pacer.book(budget, now, latest).await? {
            Booking::Booked(slot) => slot,
            refused @ Booking::NoneBefore { .. } => return Ok(refused),
        };
        let wait = slot.at.saturating_duration_since(now);
        if !wait.is_zero() {
            sleeper.sleep(wait).await;
        }
        if pacer.is_valid(&slot).await? {
            return Ok(Booking::Booked(slot));
        }
        // A 429 came in while this slot was waiting: it is void, and the next one starts
        // after the pause.
        tracing::debug!(
            ?budget,
            "a Retry-After pause cancelled the booked slot; booking again"
        );
    }
}

/// Records Graph's 429 in the tenant's pacer: nothing is sent before `now + retry_after`, and
/// the slots booked before are cancelled. A failing pacer is logged: the row's own back-off,
/// which has `Retry-After` as a floor, still keeps it from being resent early.
pub async fn record_throttle(pacer: &dyn Pacer, now: Timestamp, retry_after: Duration) {
    if let Err(error) = pacer.pause_at(now, now.saturating_add(retry_after)).await {
        tracing::warn!(error.message = %error, "recording Graph's Retry-After pause failed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;
    use crate::pacer::InProcessPacer;
    use crate::ports::{PacerRates, Slot};
    use crate::test_support::now;

    const INTERVAL: Duration = Duration::from_millis(250);

    /// A clock that a sleep moves forward.
    struct Time(Mutex<Timestamp>);

    impl Clock for Time {
        fn now(&self) -> Timestamp {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// Sleeps by moving `time` on; during the first sleep a 429 arrives from another path and
    /// pauses the tenant until `pause_end`.
    struct PausedWhileWaiting {
        time: Arc<Time>,
        pacer: Arc<InProcessPacer>,
        pause_end: Timestamp,
        slept: Mutex<Vec<Duration>>,
    }

    #[async_trait::async_trait]
    impl Sleeper for PausedWhileWaiting {
        async fn sleep(&self, duration: Duration) {
            let first = {
                let mut slept = self.slept.lock().unwrap_or_else(PoisonError::into_inner);
                slept.push(duration);
                slept.len() == 1
            };
            if first {
                self.pacer.pause(self.pause_end).await.expect("in memory");
            }
            let mut time = self.time.0.lock().unwrap_or_else(PoisonError::into_inner);
            *time = time.saturating_add(duration);
        }
    }

    #[tokio::test]
    async fn a_slot_cancelled_while_waiting_is_booked_again_after_the_pause() {
        let pacer = Arc::new(InProcessPacer::new(PacerRates::steady(INTERVAL, INTERVAL)));
        let time = Arc::new(Time(Mutex::new(now())));
        // Another writer holds the first slot, so this one waits one interval for its own.
        let Booking::Booked(_) = pacer
            .book(Budget::Write, now(), now())
            .await
            .expect("in memory")
        else {
            panic!("the first slot is free");
        };
        let pause_end = now().saturating_add(Duration::from_secs(2));
        let sleeper = PausedWhileWaiting {
            time: time.clone(),
            pacer: pacer.clone(),
            pause_end,
            slept: Mutex::default(),
        };

        let latest = now().saturating_add(Duration::from_secs(10));
        let booking = wait_for_slot(
            pacer.as_ref(),
            time.as_ref(),
            &sleeper,
            Budget::Write,
            latest,
        )
        .await
        .expect("in memory");

        let state = pacer.state().await.expect("in memory");
        assert_eq!(
            booking,
            Booking::Booked(Slot {
                budget: Budget::Write,
                at: pause_end,
                epoch: state.epoch,
            }),
            "the slot booked before the pause was void; the new one starts when the pause ends"
        );
        assert_eq!(time.now(), pause_end, "nothing is sent inside the pause");
        assert_eq!(
            *sleeper.slept.lock().unwrap_or_else(PoisonError::into_inner),
            vec![INTERVAL, Duration::from_secs(2) - INTERVAL]
        );

        let too_soon = wait_for_slot(
            pacer.as_ref(),
            time.as_ref(),
            &sleeper,
            Budget::Write,
            pause_end,
        )
        .await
        .expect("in memory");
        assert_eq!(
            too_soon,
            Booking::NoneBefore {
                next_free: pause_end.saturating_add(INTERVAL)
            },
            "no slot by the deadline: nothing booked, nothing waited"
        );
    }
}
