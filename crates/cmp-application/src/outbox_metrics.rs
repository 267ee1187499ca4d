//! The outbox's metrics: deliveries by outcome and dead letters, counted where a delivery's end
//! is recorded, and the gauges of the queue (rows per state, the oldest waiting row's age),
//! read through the [`Outbox`] port. The names and meanings are listed for operators in
//! `docs/operations.md`.
//!
//! They go through the `metrics` facade, which does no I/O: without a recorder (tests, or
//! metrics turned off) every call is a no-op; the binary installs the Prometheus one.

use std::sync::Arc;

use crate::ports::{
    Clock, DeliveryEnd, DeliveryOutcome, Outbox, OutboxState, StoreError, Transition,
};

/// Counter: delivery ends recorded, labelled `outcome` with the [`DeliveryOutcome`] names.
pub const DELIVERIES_TOTAL: &str = "cmp_outbox_deliveries_total";

/// Counter: rows given up (dead-lettered), waiting for an operator.
pub const DEAD_LETTERS_TOTAL: &str = "cmp_outbox_dead_letters_total";

/// Gauge: rows per state, labelled `state` with the [`OutboxState`] names.
pub const ROWS: &str = "cmp_outbox_rows";

/// Gauge: seconds since the oldest `pending` or `unknown` row was written; 0 when none waits.
pub const OLDEST_WAITING_AGE_SECONDS: &str = "cmp_outbox_oldest_waiting_age_seconds";

/// Describes this module's metrics to the installed recorder (Prometheus' `# HELP` lines).
pub fn describe() {
    metrics::describe_counter!(DELIVERIES_TOTAL, "Outbox deliveries recorded, by outcome.");
    metrics::describe_counter!(
        DEAD_LETTERS_TOTAL,
        "Outbox rows given up (dead-lettered); each waits for an operator."
    );
    metrics::describe_gauge!(ROWS, "Outbox rows per state.");
    metrics::describe_gauge!(
        OLDEST_WAITING_AGE_SECONDS,
        metrics::Unit::Seconds,
        "Age of the oldest pending or unknown outbox row; 0 when none waits."
    );
}

/// Counts a recorded delivery end, and a dead letter when it gave its row up. Called only once
/// the end is committed, so the counters agree with what operators read in the store.
pub(crate) fn count_end(end: &DeliveryEnd) {
    count_delivery(end.outcome);
    if matches!(end.transition, Transition::Dead { .. }) {
        metrics::counter!(DEAD_LETTERS_TOTAL).increment(1);
    }
}

/// Counts a delivery that ended with `outcome`.
pub(crate) fn count_delivery(outcome: DeliveryOutcome) {
    metrics::counter!(DELIVERIES_TOTAL, "outcome" => outcome.as_str()).increment(1);
}

/// Refreshes the queue's gauges from the store. The queue changes in every request and every
/// dispatcher pass, so reading it on a timer costs one small query per period instead of one
/// per change; the binary runs [`OutboxGauges::refresh`] periodically.
#[derive(Clone)]
pub struct OutboxGauges {
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
}

impl OutboxGauges {
    /// Gauges over `outbox`, aged by `clock`.
    pub fn new(outbox: Arc<dyn Outbox>, clock: Arc<dyn Clock>) -> Self {
        Self { outbox, clock }
    }

    /// Sets the rows-per-state gauges and the oldest waiting row's age.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read; the gauges keep their last values.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let mut counts = self.outbox.count_rows().await?;
        let oldest = self.outbox.oldest_waiting_created_at().await?;
        for state in OutboxState::ALL {
            // Row counts stay far below 2^53, where f64 is still exact.
            metrics::gauge!(ROWS, "state" => state.as_str()).set(*counts.of_mut(*state) as f64);
        }
        let age = oldest.map_or(0.0, |created_at| {
            self.clock
                .now()
                .saturating_duration_since(created_at)
                .as_secs_f64()
        });
        metrics::gauge!(OLDEST_WAITING_AGE_SECONDS).set(age);
        Ok(())
    }
}
