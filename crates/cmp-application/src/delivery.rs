//! The delivery rules: how one delivery of one outbox row is made, and how its outcome moves
//! the row on. The inline delivery of a create ([`judge`]) and the dispatcher (`Deliverer`)
//! apply the same rules, so a row behaves the same whoever made the delivery. The rules are
//! written down for people in `docs/delivery.md`.

use std::sync::Arc;
use std::time::Duration;

use cmp_domain::Timestamp;
use uuid::Uuid;

use crate::outbox_metrics;
use crate::pacing::{record_throttle, wait_for_slot};
use crate::policy::OutboxPolicy;
use crate::ports::{
    Booking, Budget, ClaimedRow, Clock, CreateOutcome, DeliveryEnd, DeliveryOutcome, DeliveryStart,
    GraphCallResult, GraphGateway, GraphReadError, GraphResponseMeta, IdSource, InGraph, Jitter,
    Lease, LeaseOwner, Operation, Outbox, Pacer, RemotePartner, Sleeper, Slot, StoreError,
    Transition, WaitingState, WriteOutcome,
};
use crate::reconciliation::{GraphListing, Listing, Match};

/// What to do with a row after a delivery of a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Record and move the row on.
    Move(Transition),
    /// Graph refused the payload for good.
    Rejected,
}

/// Decides where a create row goes after `outcome`. `None` means the delivery was abandoned at
/// its deadline after the request went out: it may have reached Graph, so it counts as an
/// unknown outcome. (A create that never got a write slot sent nothing and stays `pending`.)
/// `retry_delay` is the back-off for a resend (the inline path uses the base step, the
/// dispatcher full jitter); a `Retry-After` from Graph is a floor under it.
pub fn judge(
    outcome: Option<&CreateOutcome>,
    now: Timestamp,
    retry_delay: Duration,
    settle: Duration,
) -> Verdict {
    let retry = |state, delay| {
        Verdict::Move(Transition::Retry {
            state,
            next_attempt_at: now.saturating_add(delay),
        })
    };
    match outcome {
        Some(CreateOutcome::Created { graph_id }) => Verdict::Move(Transition::Delivered {
            in_graph: InGraph::Object(graph_id.clone()),
        }),
        Some(CreateOutcome::NotApplied { retry_after }) => {
            // Retry-After is a floor: never resend to the tenant before it has passed.
            let delay = retry_after.map_or(retry_delay, |after| after.max(retry_delay));
            retry(WaitingState::Pending, delay)
        }
        // Our own credentials or permissions: keep the row pending (never dead) and back off.
        Some(CreateOutcome::AuthFailure) => retry(WaitingState::Pending, retry_delay),
        Some(CreateOutcome::Unknown) | None => retry(WaitingState::Unknown, settle),
        // A 409 means Graph may already hold it: reconcile at once, nothing to settle.
        Some(CreateOutcome::Conflict) => retry(WaitingState::Unknown, Duration::ZERO),
        Some(CreateOutcome::Rejected) => Verdict::Rejected,
    }
}

/// Full-jitter exponential back-off: a uniformly random delay between zero and
/// `min(cap, base × 2^attempts)`. `fraction` is the random draw in `0..1`.
pub fn full_jitter(base: Duration, cap: Duration, attempts: u32, fraction: f64) -> Duration {
    // 2^31 × any sensible base is far past any cap; the exponent is bounded to stay finite.
    let ceiling = base.saturating_mul(1_u32 << attempts.min(31)).min(cap);
    ceiling.mul_f64(fraction.clamp(0.0, 1.0))
}

impl From<&CreateOutcome> for DeliveryOutcome {
    fn from(outcome: &CreateOutcome) -> Self {
        match outcome {
            CreateOutcome::Created { .. } => Self::Created,
            CreateOutcome::NotApplied { .. } => Self::NotApplied,
            CreateOutcome::AuthFailure => Self::AuthFailure,
            CreateOutcome::Unknown => Self::Unknown,
            CreateOutcome::Conflict => Self::Conflict,
            CreateOutcome::Rejected => Self::Rejected,
        }
    }
}

impl DeliveryOutcome {
    /// The outcome of a create's delivery; `None` when the deadline cut it off.
    pub fn of_create(outcome: Option<&CreateOutcome>) -> Self {
        outcome.map_or(Self::DeadlinePassed, Self::from)
    }
}

/// The parts of a delivery's end that vary by path.
pub(crate) struct Ending {
    meta: GraphResponseMeta,
    outcome: DeliveryOutcome,
    transition: Transition,
    /// The failure is ours to fix (credentials, permissions): the row waits, however long,
    /// and is never given up.
    waits_on_operator: bool,
    /// A request went to Graph on the write slot taken for this delivery.
    sent: bool,
}

impl Ending {
    /// An ending that Graph said nothing about.
    fn silent(outcome: DeliveryOutcome, transition: Transition) -> Self {
        Self {
            meta: GraphResponseMeta::default(),
            outcome,
            transition,
            waits_on_operator: false,
            sent: false,
        }
    }

    /// Nothing was sent: a `Retry-After` pause began between taking the slot and sending.
    fn not_sent(state: WaitingState, resume: Timestamp) -> Self {
        Self::silent(
            DeliveryOutcome::NotSent,
            Transition::Retry {
                state,
                next_attempt_at: resume,
            },
        )
    }

    /// The partner is not in Graph and need not be: a deleted partner's create, or a delete
    /// that finds nothing to delete.
    fn absent_in_graph() -> Self {
        Self::silent(
            DeliveryOutcome::AbsentInGraph,
            Transition::Delivered {
                in_graph: InGraph::Nothing,
            },
        )
    }

    fn dead(outcome: DeliveryOutcome, reason: String) -> Self {
        Self::silent(outcome, Transition::Dead { reason })
    }
}

/// Makes one delivery of one claimed row, by the rules: reconcile an `unknown` create before
/// any resend, POST, PATCH or DELETE, judge the answer, give up past the limits, and record the
/// start before and the end after the call. Shared by every worker of a tenant.
#[derive(Clone)]
pub(crate) struct Deliverer {
    pub(crate) outbox: Arc<dyn Outbox>,
    pub(crate) graph: Arc<dyn GraphGateway>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdSource>,
    pub(crate) jitter: Arc<dyn Jitter>,
    pub(crate) policy: OutboxPolicy,
    /// The tenant's write and read budget and its `Retry-After` pause, shared with every other
    /// path that calls Graph.
    pub(crate) pacer: Arc<dyn Pacer>,
    /// Waits for a slot's start.
    pub(crate) sleeper: Arc<dyn Sleeper>,
    /// Graph's list, read at most once for all the rows that need it.
    pub(crate) listings: GraphListing,
}

impl Deliverer {
    /// One delivery of `row`, leased to `owner`. `listing` is this pass's read of Graph's list
    /// (made on first need). `latest` bounds every wait for a slot of the pacer: it lies well
    /// inside the lease the row was claimed with, so no delivery waits for a slot on a lease
    /// that may lapse (another worker would then recover the row while it is still worked on).
    /// The write slot is taken before the delivery starts, and the start renews the lease for
    /// the call itself. With no slot by `latest`, the row goes back untouched, due when the
    /// next slot is.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the row was taken over before its delivery started;
    /// other [`StoreError`]s when the store fails.
    #[tracing::instrument(name = "deliver", skip_all, fields(outbox.id = %row.outbox_id, partner.id = %row.partner.id()))]
    pub(crate) async fn deliver(
        &self,
        row: ClaimedRow,
        owner: &LeaseOwner,
        listing: &mut Option<Listing>,
        latest: Timestamp,
    ) -> Result<Transition, StoreError> {
        let needs_listing = match row.operation {
            Operation::Create => row.previous_state == WaitingState::Unknown,
            Operation::Update | Operation::Delete => row.in_graph.is_none(),
        };
        let named = if needs_listing {
            match self.listings.named(&row, latest, listing).await {
                Ok(named) => Some(named),
                Err(error) => return self.listing_failed(&row, owner, &error).await,
            }
        } else {
            None
        };
        let remote = named.as_deref();
        // What Graph holds decides, before any slot is taken, whether a create writes at all:
        // an object to adopt or several to dead-letter need no write slot.
        let found = match (row.operation, remote) {
            (Operation::Create, Some(remote)) => Some(self.listings.find(&row, remote).await),
            _ => None,
        };

        // A delivery that may write takes its slot first, so that no wait for a slot runs on a
        // lease that may lapse; one that then ends without writing (absent, dead) gives it
        // back. A slot given back is booked again only when it is the latest one booked, so a
        // slot taken for a delivery known not to write would most often be lost to the
        // budget: an adopted create takes none.
        let may_write = match (row.operation, &found) {
            (Operation::Create, _) if row.partner_deleted => false,
            (Operation::Create, Some(Ok(Match::None)) | None) => true,
            // Adopted, duplicated, or the check failed: nothing is sent.
            (Operation::Create, Some(Ok(Match::One(_) | Match::Several(_)) | Err(_))) => false,
            (Operation::Update | Operation::Delete, _) => true,
        };
        let slot = if may_write {
            match wait_for_slot(
                self.pacer.as_ref(),
                self.clock.as_ref(),
                self.sleeper.as_ref(),
                Budget::Write,
                latest,
            )
            .await
            {
                Ok(Booking::Booked(slot)) => Some(slot),
                Ok(Booking::NoneBefore { next_free }) => {
                    tracing::debug!("no write slot within the lease; the row waits for its turn");
                    return self.hand_back(&row, next_free).await;
                }
                Err(error) => {
                    tracing::warn!(error.message = %error, "the pacer failed; the row waits");
                    let resume = self
                        .clock
                        .now()
                        .saturating_add(self.backoff(row.attempts + 1));
                    return self.hand_back(&row, resume).await;
                }
            }
        } else {
            None
        };

        let attempt = row.attempts + 1;
        let client_request_id = self.ids.new_uuid();
        if let Err(error) = self.start(&row, owner, attempt, client_request_id).await {
            self.release(slot.as_ref()).await;
            return Err(error);
        }

        let ending = match (row.operation, remote) {
            (Operation::Create, Some(_)) => {
                let found = found.unwrap_or(Ok(Match::None));
                self.reconcile_then_create(&row, found, client_request_id, attempt)
                    .await
            }
            // A deleted partner whose create was never applied need not reach Graph at all.
            (Operation::Create, None) if row.partner_deleted => Ending::absent_in_graph(),
            (Operation::Create, None) => self.create(&row, client_request_id, attempt).await,
            (Operation::Update | Operation::Delete, remote) => {
                self.change(&row, remote, client_request_id, attempt).await
            }
        };
        if !ending.sent {
            self.release(slot.as_ref()).await;
        }
        let ending = self.give_up_if_exhausted(&row, row.attempts_in_window + 1, ending);
        if let Transition::Dead { reason } = &ending.transition {
            tracing::error!(alert = true, outbox.id = %row.outbox_id, reason = %reason, "ALERT: delivery dead-lettered; an operator must act");
        }
        let transition = ending.transition.clone();
        self.finish(&row, client_request_id, ending).await?;
        Ok(transition)
    }

    /// Records the start of delivery number `attempt`, renewing the lease to cover it.
    async fn start(
        &self,
        row: &ClaimedRow,
        owner: &LeaseOwner,
        attempt: u32,
        client_request_id: Uuid,
    ) -> Result<(), StoreError> {
        let started_at = self.clock.now();
        self.outbox
            .start_delivery(&DeliveryStart {
                outbox_id: row.outbox_id,
                attempt,
                client_request_id,
                started_at,
                lease: Lease {
                    owner: owner.clone(),
                    expires_at: started_at.saturating_add(self.policy.lease),
                },
            })
            .await
    }

    /// Gives back a write slot that was not used.
    async fn release(&self, slot: Option<&Slot>) {
        if let Some(slot) = slot
            && let Err(error) = self.pacer.release(slot).await
        {
            tracing::warn!(error.message = %error, "giving back an unused write slot failed");
        }
    }

    /// Whether the write slot taken for this delivery still stands right before sending: a
    /// 429 met by another path since cancels it, and the row then waits for the pause's end.
    async fn not_paused(&self, state: WaitingState) -> Result<(), Ending> {
        let pacer = self.pacer.as_ref();
        let valid = match pacer.state().await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(error.message = %error, "the pacer failed; not sending");
                let resume = self.clock.now().saturating_add(self.policy.retry_base);
                return Err(Ending::not_sent(state, resume));
            }
        };
        let now = self.clock.now();
        match valid.paused_until {
            Some(until) if now < until => Err(Ending::not_sent(state, until)),
            _ => Ok(()),
        }
    }

    /// Returns a claimed row to its previous state without a delivery, due at `resume`.
    pub(crate) async fn hand_back(
        &self,
        row: &ClaimedRow,
        resume: Timestamp,
    ) -> Result<Transition, StoreError> {
        self.outbox
            .release(row.outbox_id, row.previous_state, resume)
            .await?;
        Ok(Transition::Retry {
            state: row.previous_state,
            next_attempt_at: resume,
        })
    }

    /// Graph's list could not be read: nothing was sent, so no delivery is recorded and none is
    /// counted against the give-up limit; the row goes back as it was, after a back-off. Only
    /// the age limit still applies (failures of our own credentials excepted), so a list that
    /// never works ends, after a day, in front of an operator.
    async fn listing_failed(
        &self,
        row: &ClaimedRow,
        owner: &LeaseOwner,
        error: &GraphReadError,
    ) -> Result<Transition, StoreError> {
        let now = self.clock.now();
        let ours = matches!(error, GraphReadError::AuthFailure(_));
        if matches!(error, GraphReadError::Transient(_)) {
            tracing::warn!(error.message = %error, "listing Graph failed; the row waits");
        } else {
            tracing::error!(alert = true, error.message = %error, "ALERT: listing Graph failed");
        }
        let first = row.first_attempt_at.unwrap_or(row.created_at);
        if !ours && now >= first.saturating_add(self.policy.max_age) {
            // Giving up needs a delivery to record the end on.
            let client_request_id = self.ids.new_uuid();
            self.start(row, owner, row.attempts + 1, client_request_id)
                .await?;
            let transition = Transition::Dead {
                reason: format!(
                    "gave up {} s after the first attempt: Graph's list could not be read ({error})",
                    self.policy.max_age.as_secs()
                ),
            };
            let meta = match error {
                GraphReadError::Transient(meta)
                | GraphReadError::AuthFailure(meta)
                | GraphReadError::Refused(meta) => meta.clone(),
                GraphReadError::Paging(_) | GraphReadError::Malformed(_) => {
                    GraphResponseMeta::default()
                }
            };
            let ending = Ending {
                meta,
                outcome: DeliveryOutcome::ReconcileFailed,
                transition: transition.clone(),
                waits_on_operator: false,
                sent: false,
            };
            self.finish(row, client_request_id, ending).await?;
            return Ok(transition);
        }
        let resume = now.saturating_add(self.backoff(row.attempts + 1));
        self.hand_back(row, resume).await
    }

    /// Acts on what Graph's list holds under the natural key (`found`, matched before any slot
    /// was taken) before any resend of a create whose last delivery may have reached Graph:
    /// one match is adopted, none is posted again, several are dead-lettered for an operator.
    async fn reconcile_then_create(
        &self,
        row: &ClaimedRow,
        found: Result<Match, StoreError>,
        client_request_id: Uuid,
        attempt: u32,
    ) -> Ending {
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(error.message = %error, "checking who holds a Graph object failed; trying later");
                return Ending::silent(
                    DeliveryOutcome::ReconcileFailed,
                    Transition::Retry {
                        state: WaitingState::Unknown,
                        next_attempt_at: self.clock.now().saturating_add(self.backoff(attempt)),
                    },
                );
            }
        };
        match found {
            Match::None if row.partner_deleted => Ending::absent_in_graph(),
            Match::None => {
                let ending = self.create(row, client_request_id, attempt).await;
                if let Transition::Retry { .. } = ending.transition
                    && ending.outcome == DeliveryOutcome::Conflict
                {
                    // Graph says it holds the name, yet its list just showed none: a refusal
                    // for good, not a reason to loop list-and-POST.
                    return Ending {
                        transition: Transition::Dead {
                            reason: format!(
                                "Microsoft Graph refused the partner with 409 (code {}) although its list holds no object of that name",
                                ending.meta.error_code.as_deref().unwrap_or("none")
                            ),
                        },
                        ..ending
                    };
                }
                ending
            }
            Match::One(graph_id) => Ending::silent(
                DeliveryOutcome::Adopted,
                Transition::Delivered {
                    in_graph: InGraph::Object(graph_id),
                },
            ),
            Match::Several(ids) => Ending::dead(
                DeliveryOutcome::DuplicateInGraph,
                format!(
                    "duplicate in Graph: {} objects named '{}' ({}); delete the extra ones, then re-queue",
                    ids.len(),
                    row.partner.display_name(),
                    ids.join(", ")
                ),
            ),
        }
    }

    /// A PATCH or DELETE of the partner's object in Graph. Both are idempotent, so an unknown
    /// outcome is simply tried again. The object is found by Graph's id, or by display name
    /// when the id was never learnt.
    async fn change(
        &self,
        row: &ClaimedRow,
        remote: Option<&[RemotePartner]>,
        client_request_id: Uuid,
        attempt: u32,
    ) -> Ending {
        let graph_id = match &row.in_graph {
            // The create ended without Graph ever holding the partner: nothing to change.
            Some(InGraph::Nothing) => return Ending::absent_in_graph(),
            Some(InGraph::Object(id)) => id.clone(),
            None => match GraphListing::find_by_name(row, remote.unwrap_or_default()) {
                Match::One(id) => id,
                // Nothing of that name in Graph: there is nothing to delete.
                Match::None if row.operation == Operation::Delete => {
                    return Ending::absent_in_graph();
                }
                Match::None => {
                    return Ending::dead(
                        DeliveryOutcome::NotFound,
                        "the partner is not in Microsoft Graph, so it cannot be updated".to_owned(),
                    );
                }
                Match::Several(ids) => {
                    return Ending::dead(
                        DeliveryOutcome::DuplicateInGraph,
                        format!(
                            "duplicate in Graph: {} objects named '{}' ({})",
                            ids.len(),
                            row.partner.display_name(),
                            ids.join(", ")
                        ),
                    );
                }
            },
        };
        if let Err(ending) = self.not_paused(WaitingState::Pending).await {
            return ending;
        }
        let result = match row.operation {
            Operation::Delete => {
                self.graph
                    .delete_partner(&graph_id, client_request_id)
                    .await
            }
            Operation::Create | Operation::Update => {
                self.graph
                    .update_partner(&graph_id, &row.partner, client_request_id)
                    .await
            }
        };
        let now = self.clock.now();
        let retry = |state| Transition::Retry {
            state,
            next_attempt_at: now.saturating_add(self.backoff(attempt)),
        };
        let (outcome, transition, waits_on_operator) = match result.outcome {
            WriteOutcome::Applied => (
                DeliveryOutcome::Applied,
                Transition::Delivered {
                    in_graph: InGraph::Object(graph_id),
                },
                false,
            ),
            WriteOutcome::NotApplied { retry_after } => {
                if let Some(after) = retry_after {
                    record_throttle(self.pacer.as_ref(), now, after).await;
                }
                let delay = retry_after.map_or(self.backoff(attempt), |after| {
                    after.max(self.backoff(attempt))
                });
                let transition = Transition::Retry {
                    state: WaitingState::Pending,
                    next_attempt_at: now.saturating_add(delay),
                };
                (DeliveryOutcome::NotApplied, transition, false)
            }
            WriteOutcome::AuthFailure => {
                tracing::error!(alert = true, status = ?result.meta.status, "ALERT: Graph refused our credentials; rows stay pending");
                (
                    DeliveryOutcome::AuthFailure,
                    retry(WaitingState::Pending),
                    true,
                )
            }
            WriteOutcome::Unknown => (
                DeliveryOutcome::Unknown,
                retry(WaitingState::Pending),
                false,
            ),
            WriteOutcome::NotFound => (
                DeliveryOutcome::NotFound,
                Transition::Dead {
                    reason: format!("Microsoft Graph has no object {graph_id} to update"),
                },
                false,
            ),
            WriteOutcome::Rejected => (
                DeliveryOutcome::Rejected,
                Transition::Dead {
                    reason: format!(
                        "Microsoft Graph refused the {}: status {}, code {}",
                        row.operation,
                        result
                            .meta
                            .status
                            .map_or_else(|| "none".to_owned(), |s| s.to_string()),
                        result.meta.error_code.as_deref().unwrap_or("none")
                    ),
                },
                false,
            ),
        };
        Ending {
            meta: result.meta,
            outcome,
            transition,
            waits_on_operator,
            sent: true,
        }
    }

    /// A POST, judged by the same rules as the inline delivery of the create request.
    async fn create(&self, row: &ClaimedRow, client_request_id: Uuid, attempt: u32) -> Ending {
        // Reconciled or never sent, the row is known not to be in Graph: it may wait pending.
        if let Err(ending) = self.not_paused(WaitingState::Pending).await {
            return ending;
        }
        let GraphCallResult { outcome, meta } = self
            .graph
            .create_partner(&row.partner, client_request_id)
            .await;
        let now = self.clock.now();
        if let CreateOutcome::NotApplied {
            retry_after: Some(after),
        } = &outcome
        {
            record_throttle(self.pacer.as_ref(), now, *after).await;
        }
        if outcome == CreateOutcome::AuthFailure {
            tracing::error!(alert = true, status = ?meta.status, code = ?meta.error_code, "ALERT: Graph refused our credentials; rows stay pending");
        }
        let transition = match judge(
            Some(&outcome),
            now,
            self.backoff(attempt),
            self.policy.settle,
        ) {
            Verdict::Move(transition) => transition,
            Verdict::Rejected => Transition::Dead {
                reason: format!(
                    "Microsoft Graph refused the partner: status {}, code {}",
                    meta.status
                        .map_or_else(|| "none".to_owned(), |s| s.to_string()),
                    meta.error_code.as_deref().unwrap_or("none")
                ),
            },
        };
        Ending {
            meta,
            outcome: DeliveryOutcome::from(&outcome),
            transition,
            waits_on_operator: outcome == CreateOutcome::AuthFailure,
            sent: true,
        }
    }

    /// Transient failures past the delivery or age limit are dead-lettered. Rows waiting on
    /// our own credentials are not: that is an operator's fix, and nothing is lost by waiting.
    fn give_up_if_exhausted(
        &self,
        row: &ClaimedRow,
        attempts_in_window: u32,
        ending: Ending,
    ) -> Ending {
        let Transition::Retry { .. } = ending.transition else {
            return ending;
        };
        if ending.waits_on_operator {
            return ending;
        }
        let now = self.clock.now();
        let first = row.first_attempt_at.unwrap_or(row.created_at);
        let age_limit = first.saturating_add(self.policy.max_age);
        let reason = if attempts_in_window >= self.policy.max_attempts {
            format!(
                "gave up after {attempts_in_window} attempts; last outcome {}",
                ending.outcome
            )
        } else if now >= age_limit {
            format!(
                "gave up {} s after the first attempt; last outcome {}",
                self.policy.max_age.as_secs(),
                ending.outcome
            )
        } else {
            return ending;
        };
        Ending {
            transition: Transition::Dead { reason },
            ..ending
        }
    }

    async fn finish(
        &self,
        row: &ClaimedRow,
        client_request_id: Uuid,
        ending: Ending,
    ) -> Result<(), StoreError> {
        let end = DeliveryEnd {
            outbox_id: row.outbox_id,
            partner_id: row.partner.id(),
            client_request_id,
            finished_at: self.clock.now(),
            meta: ending.meta,
            outcome: ending.outcome,
            transition: ending.transition,
        };
        self.outbox.finish_delivery(&end).await?;
        outbox_metrics::count_end(&end);
        Ok(())
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        full_jitter(
            self.policy.retry_base,
            self.policy.backoff_cap,
            attempt,
            self.jitter.fraction(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_between_zero_and_the_capped_exponential_step() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(900);
        let cases = [
            ("first step, top draw", 0, 1.0, Duration::from_secs(10)),
            ("third step, top draw", 3, 1.0, Duration::from_secs(80)),
            ("third step, middle draw", 3, 0.5, Duration::from_secs(40)),
            ("third step, bottom draw", 3, 0.0, Duration::ZERO),
            ("10 s x 128 is past the 15 min cap", 7, 1.0, cap),
            ("huge attempt counts do not overflow", 500, 1.0, cap),
        ];
        for (case, attempts, fraction, expected) in cases {
            assert_eq!(
                full_jitter(base, cap, attempts, fraction),
                expected,
                "case: {case}"
            );
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_unix_seconds(1_700_000_000, 0).expect("in range")
    }

    fn retry_at(state: WaitingState, seconds_later: u64) -> Verdict {
        Verdict::Move(Transition::Retry {
            state,
            next_attempt_at: now().saturating_add(Duration::from_secs(seconds_later)),
        })
    }

    #[test]
    fn each_outcome_class_moves_the_row_as_the_delivery_rules_say() {
        let retry_base = Duration::from_secs(10);
        let settle = Duration::from_secs(130);
        let cases = [
            (
                "created",
                Some(CreateOutcome::Created {
                    graph_id: "g".into(),
                }),
                Verdict::Move(Transition::Delivered {
                    in_graph: InGraph::Object("g".into()),
                }),
            ),
            (
                "429 without Retry-After",
                Some(CreateOutcome::NotApplied { retry_after: None }),
                retry_at(WaitingState::Pending, 10),
            ),
            (
                "429 with a long Retry-After",
                Some(CreateOutcome::NotApplied {
                    retry_after: Some(Duration::from_secs(300)),
                }),
                retry_at(WaitingState::Pending, 300),
            ),
            (
                "429 with a short Retry-After keeps the base delay",
                Some(CreateOutcome::NotApplied {
                    retry_after: Some(Duration::from_secs(2)),
                }),
                retry_at(WaitingState::Pending, 10),
            ),
            (
                "auth failure",
                Some(CreateOutcome::AuthFailure),
                retry_at(WaitingState::Pending, 10),
            ),
            (
                "unknown",
                Some(CreateOutcome::Unknown),
                retry_at(WaitingState::Unknown, 130),
            ),
            (
                "deadline passed",
                None,
                retry_at(WaitingState::Unknown, 130),
            ),
            (
                "conflict",
                Some(CreateOutcome::Conflict),
                retry_at(WaitingState::Unknown, 0),
            ),
            ("rejected", Some(CreateOutcome::Rejected), Verdict::Rejected),
        ];
        for (case, outcome, expected) in cases {
            assert_eq!(
                judge(outcome.as_ref(), now(), retry_base, settle),
                expected,
                "case: {case}"
            );
        }
    }

    #[test]
    fn a_create_cut_off_by_its_deadline_is_recorded_as_such() {
        assert_eq!(
            DeliveryOutcome::of_create(None),
            DeliveryOutcome::DeadlinePassed
        );
        assert_eq!(
            DeliveryOutcome::of_create(Some(&CreateOutcome::Conflict)),
            DeliveryOutcome::Conflict
        );
    }
}
