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

/// A Prometheus recorder local to one test's thread, and the means to read it. Use cases run
/// on the test's own thread under `#[tokio::test]`, so the recorder sees every count they make
/// and no other test's.
#[cfg(test)]
pub(crate) struct Recording {
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
}

#[cfg(test)]
impl Recording {
    /// A fresh recorder; nothing is recorded into it until [`Recording::install`].
    pub(crate) fn new() -> Self {
        Self {
            recorder: metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
        }
    }

    /// Records this thread's metrics here while the guard lives.
    pub(crate) fn install(&self) -> metrics::LocalRecorderGuard<'_> {
        metrics::set_default_local_recorder(&self.recorder)
    }

    /// The value of `series` (a name with its labels, as rendered), if recorded.
    pub(crate) fn sample(&self, series: &str) -> Option<f64> {
        self.recorder
            .handle()
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ports::{MockClock, MockOutbox, OutboxCounts};
    use crate::test_support::{now, seconds_after_now};

    #[tokio::test]
    async fn a_refresh_sets_the_rows_of_every_state_and_the_oldest_waiting_rows_age() {
        let recording = Recording::new();
        let _recording = recording.install();
        let mut outbox = MockOutbox::new();
        outbox.expect_count_rows().times(1).returning(|| {
            Ok(OutboxCounts {
                pending: 2,
                in_flight: 1,
                delivered: 7,
                unknown: 1,
                dead: 0,
            })
        });
        outbox
            .expect_oldest_waiting_created_at()
            .times(1)
            .returning(|| Ok(Some(seconds_after_now(-90))));
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        let gauges = OutboxGauges::new(Arc::new(outbox), Arc::new(clock));

        gauges.refresh().await.expect("the store answers");

        for (series, expected) in [
            (r#"cmp_outbox_rows{state="pending"}"#, 2.0),
            (r#"cmp_outbox_rows{state="in_flight"}"#, 1.0),
            (r#"cmp_outbox_rows{state="delivered"}"#, 7.0),
            (r#"cmp_outbox_rows{state="unknown"}"#, 1.0),
            (r#"cmp_outbox_rows{state="dead"}"#, 0.0),
            (
                "cmp_outbox_oldest_waiting_age_seconds",
                Duration::from_secs(90).as_secs_f64(),
            ),
        ] {
            assert_eq!(recording.sample(series), Some(expected), "{series}");
        }
    }

    #[tokio::test]
    async fn with_nothing_waiting_the_oldest_waiting_age_is_zero() {
        let recording = Recording::new();
        let _recording = recording.install();
        let mut outbox = MockOutbox::new();
        outbox
            .expect_count_rows()
            .returning(|| Ok(OutboxCounts::default()));
        outbox
            .expect_oldest_waiting_created_at()
            .returning(|| Ok(None));
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());

        OutboxGauges::new(Arc::new(outbox), Arc::new(clock))
            .refresh()
            .await
            .expect("the store answers");

        assert_eq!(
            recording.sample("cmp_outbox_oldest_waiting_age_seconds"),
            Some(0.0)
        );
    }
}
