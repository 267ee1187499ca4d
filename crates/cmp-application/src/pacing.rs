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
    if let Err(error) = pacer.pause(now.saturating_add(retry_after)).await {
        tracing::warn!(error.message = %error, "recording Graph's Retry-After pause failed");
    }
}
