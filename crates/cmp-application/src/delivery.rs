//! How the outcome of one Graph call moves an outbox row on (graph-client-behaviour §1.5,
//! §3.1, §3.3). The inline path of a create uses it now; the dispatcher uses the same rules,
//! so a row behaves the same whoever made the attempt.

use std::time::Duration;

use cmp_domain::Timestamp;

use crate::ports::{CreateOutcome, DeliveryState, OutboxTransition};

/// The timing rules of delivery. Every number is configuration, not code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// How long a create request waits for Graph before answering `202 Accepted`.
    pub inline_deadline: Duration,
    /// How long an attempt holds its row; a row whose lease lapsed is treated as `unknown`.
    pub lease: Duration,
    /// How long to wait after an unknown outcome before reconciling, so that a slow POST has
    /// finished on Graph's side (Graph request timeout + 30 s).
    pub settle: Duration,
    /// The first back-off step after a failure that did not apply.
    pub retry_base: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            inline_deadline: Duration::from_secs(10),
            lease: Duration::from_secs(160),
            settle: Duration::from_secs(130),
            retry_base: Duration::from_secs(10),
        }
    }
}

/// What to do with a row after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Record and move the row on.
    Move(OutboxTransition),
    /// Graph refused the payload for good.
    Rejected,
}

/// Decides where a row goes after `outcome`. `None` means the attempt was abandoned at its
/// deadline: the request may have reached Graph, so it counts as an unknown outcome.
/// `retry_delay` is the back-off for a resend (the inline path uses the base step, the
/// dispatcher full jitter); a `Retry-After` from Graph is a floor under it.
pub fn judge(
    outcome: Option<&CreateOutcome>,
    now: Timestamp,
    retry_delay: Duration,
    settle: Duration,
) -> Verdict {
    let later = |delay: Duration| now.saturating_add(delay);
    let retry = |state, delay| {
        Verdict::Move(OutboxTransition::Retry {
            state,
            next_attempt_at: later(delay),
        })
    };
    match outcome {
        Some(CreateOutcome::Created { graph_id }) => Verdict::Move(OutboxTransition::Delivered {
            graph_id: graph_id.clone(),
        }),
        Some(CreateOutcome::NotApplied { retry_after }) => {
            // Retry-After is a floor: never resend to the tenant before it has passed.
            let delay = retry_after.map_or(retry_delay, |after| after.max(retry_delay));
            retry(DeliveryState::Pending, delay)
        }
        // Our own credentials or permissions: keep the row pending (never dead) and back off.
        Some(CreateOutcome::AuthFailure) => retry(DeliveryState::Pending, retry_delay),
        Some(CreateOutcome::Unknown) | None => retry(DeliveryState::Unknown, settle),
        // A 409 means Graph may already hold it: reconcile at once, nothing to settle.
        Some(CreateOutcome::Conflict) => retry(DeliveryState::Unknown, Duration::ZERO),
        Some(CreateOutcome::Rejected) => Verdict::Rejected,
    }
}

/// Full-jitter exponential back-off (graph-client-behaviour §3.3): a uniformly random delay
/// between zero and `min(cap, base × 2^attempts)`. `fraction` is the random draw in `0..1`.
pub fn full_jitter(base: Duration, cap: Duration, attempts: u32, fraction: f64) -> Duration {
    // 2^40 × any sensible base is far past any cap; the exponent is bounded to stay finite.
    let ceiling = base.saturating_mul(1_u32 << attempts.min(31)).min(cap);
    ceiling.mul_f64(fraction.clamp(0.0, 1.0))
}

/// A short word for an attempt's outcome, kept on the attempt record for operators.
pub fn outcome_label(outcome: Option<&CreateOutcome>) -> &'static str {
    match outcome {
        Some(CreateOutcome::Created { .. }) => "created",
        Some(CreateOutcome::NotApplied { .. }) => "not_applied",
        Some(CreateOutcome::AuthFailure) => "auth_failure",
        Some(CreateOutcome::Unknown) => "unknown",
        Some(CreateOutcome::Conflict) => "conflict",
        Some(CreateOutcome::Rejected) => "rejected",
        None => "deadline_passed",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn full_jitter_stays_between_zero_and_the_capped_exponential_step() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(900);
        assert_eq!(full_jitter(base, cap, 0, 1.0), Duration::from_secs(10));
        assert_eq!(full_jitter(base, cap, 3, 1.0), Duration::from_secs(80));
        assert_eq!(full_jitter(base, cap, 3, 0.5), Duration::from_secs(40));
        assert_eq!(full_jitter(base, cap, 3, 0.0), Duration::ZERO);
        assert_eq!(
            full_jitter(base, cap, 7, 1.0),
            cap,
            "10 s × 128 is past the 15 min cap"
        );
        assert_eq!(
            full_jitter(base, cap, 500, 1.0),
            cap,
            "huge attempt counts do not overflow"
        );
    }

    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_unix_seconds(1_700_000_000, 0).expect("in range")
    }

    fn retry_at(state: DeliveryState, seconds_later: u64) -> Verdict {
        Verdict::Move(OutboxTransition::Retry {
            state,
            next_attempt_at: now().saturating_add(Duration::from_secs(seconds_later)),
        })
    }

    #[test]
    fn each_outcome_class_moves_the_row_as_the_delivery_rules_say() {
        let policy = DeliveryPolicy::default();
        let cases = [
            (
                "created",
                Some(CreateOutcome::Created {
                    graph_id: "g".into(),
                }),
                Verdict::Move(OutboxTransition::Delivered {
                    graph_id: "g".into(),
                }),
            ),
            (
                "429 without Retry-After",
                Some(CreateOutcome::NotApplied { retry_after: None }),
                retry_at(DeliveryState::Pending, 10),
            ),
            (
                "429 with a long Retry-After",
                Some(CreateOutcome::NotApplied {
                    retry_after: Some(Duration::from_secs(300)),
                }),
                retry_at(DeliveryState::Pending, 300),
            ),
            (
                "429 with a short Retry-After keeps the base delay",
                Some(CreateOutcome::NotApplied {
                    retry_after: Some(Duration::from_secs(2)),
                }),
                retry_at(DeliveryState::Pending, 10),
            ),
            (
                "auth failure",
                Some(CreateOutcome::AuthFailure),
                retry_at(DeliveryState::Pending, 10),
            ),
            (
                "unknown",
                Some(CreateOutcome::Unknown),
                retry_at(DeliveryState::Unknown, 130),
            ),
            (
                "deadline passed",
                None,
                retry_at(DeliveryState::Unknown, 130),
            ),
            (
                "conflict",
                Some(CreateOutcome::Conflict),
                retry_at(DeliveryState::Unknown, 0),
            ),
            ("rejected", Some(CreateOutcome::Rejected), Verdict::Rejected),
        ];
        for (case, outcome, expected) in cases {
            assert_eq!(
                judge(outcome.as_ref(), now(), policy.retry_base, policy.settle),
                expected,
                "case: {case}"
            );
        }
    }
}
