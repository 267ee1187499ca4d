//! The dispatcher: delivers the outbox rows the create requests could not finish, exactly once
//! (graph-client-behaviour §3.2–§3.5).
//!
//! A background task in the binary calls [`Dispatcher::run_once`] in a loop. Each pass turns
//! lapsed leases into `unknown`, claims due rows, and makes one attempt per row: a row whose
//! last attempt may have reached Graph (`unknown`) is first reconciled against Graph's list by
//! display name, so Graph never receives a second POST for one partner.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmp_domain::{TenantId, Timestamp};
use uuid::Uuid;

use crate::delivery::{self, Verdict};
use crate::ports::{
    AttemptFinish, AttemptStart, ClaimedDelivery, Clock, CreateOutcome, DeliveryQueue,
    DeliveryState, GraphCallResult, GraphGateway, GraphReadError, GraphResponseMeta, IdSource,
    Jitter, Operation, OutboxTransition, PartnerRepository, RemotePartner, StoreError,
    WriteOutcome,
};

/// The dispatcher's rules, all from configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DispatchPolicy {
    /// Rows claimed per pass.
    pub batch_size: u32,
    /// How long a claim holds a row (request timeout + 60 s).
    pub lease: Duration,
    /// Wait after an unknown outcome before reconciling (request timeout + 30 s).
    pub settle: Duration,
    /// Full-jitter back-off base.
    pub backoff_base: Duration,
    /// Full-jitter back-off cap.
    pub backoff_cap: Duration,
    /// Attempts after which a transiently failing row is dead.
    pub max_attempts: u32,
    /// Age of the first attempt after which a transiently failing row is dead.
    pub max_age: Duration,
}

impl Default for DispatchPolicy {
    fn default() -> Self {
        Self {
            batch_size: 16,
            lease: Duration::from_secs(160),
            settle: Duration::from_secs(130),
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(15 * 60),
            max_attempts: 50,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchPass {
    /// Lapsed leases turned `unknown`.
    pub recovered: u64,
    /// Rows claimed.
    pub claimed: usize,
    /// Rows delivered (created or adopted).
    pub delivered: usize,
    /// Rows sent back to wait.
    pub retried: usize,
    /// Rows given up.
    pub dead: usize,
    /// Whether the tenant's queue was paused by a `Retry-After` (nothing claimed).
    pub paused: bool,
}

/// Why a pass failed: the store did. Graph's failures are outcomes, never errors.
#[derive(Debug, thiserror::Error)]
#[error("the delivery queue failed")]
pub struct DispatchError(#[from] StoreError);

/// The dispatcher of one tenant's queue. A clone shares everything, its lease owner included;
/// [`Dispatcher::worker`] makes one with an owner of its own.
#[derive(Clone)]
pub struct Dispatcher {
    repository: Arc<dyn PartnerRepository>,
    queue: Arc<dyn DeliveryQueue>,
    graph: Arc<dyn GraphGateway>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    jitter: Arc<dyn Jitter>,
    tenant_id: TenantId,
    /// Names this dispatcher in leases (`dispatcher:<uuid>`), so a lease shows who holds it.
    owner: String,
    policy: DispatchPolicy,
    /// A 429 throttles the whole tenant, not one row: nothing is claimed before this instant.
    /// Shared by every worker of the tenant.
    paused_until: Arc<Mutex<Option<Timestamp>>>,
    /// The last list of Graph read successfully, and when, shared by the workers: a paged list
    /// is the call most likely to fail, so one good read serves every row it is fresh enough
    /// for (read at or after the row became due).
    last_listing: Arc<Mutex<Option<ListingRead>>>,
}

/// A good read of Graph's list and when it started.
type ListingRead = (Timestamp, Arc<Vec<RemotePartner>>);

/// Graph's list as read for a pass.
type Listing = Result<Arc<Vec<RemotePartner>>, GraphReadError>;

/// The parts of one attempt's ending that vary by path.
struct Ending {
    meta: GraphResponseMeta,
    label: &'static str,
    transition: OutboxTransition,
    /// The failure is ours to fix (credentials, permissions): the row waits, however long,
    /// and is never given up.
    waits_on_operator: bool,
}

impl Dispatcher {
    /// A dispatcher over the given ports.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per port, as the constructor of PartnerService"
    )]
    pub fn new(
        repository: Arc<dyn PartnerRepository>,
        queue: Arc<dyn DeliveryQueue>,
        graph: Arc<dyn GraphGateway>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        jitter: Arc<dyn Jitter>,
        tenant_id: TenantId,
        policy: DispatchPolicy,
    ) -> Self {
        let owner = format!("dispatcher:{}", ids.new_uuid());
        Self {
            repository,
            queue,
            graph,
            clock,
            ids,
            jitter,
            tenant_id,
            owner,
            policy,
            paused_until: Arc::new(Mutex::new(None)),
            last_listing: Arc::new(Mutex::new(None)),
        }
    }

    /// Another worker of the same tenant queue: its own lease owner, the same ports, and the
    /// same tenant pause.
    pub fn worker(&self) -> Self {
        Self {
            owner: format!("dispatcher:{}", self.ids.new_uuid()),
            ..self.clone()
        }
    }

    /// One pass over the queue: recover lapsed leases, claim due rows (unless the tenant is
    /// paused), and make one attempt for each, in order.
    ///
    /// # Errors
    /// [`DispatchError`] when the store fails; rows already claimed keep their lease and are
    /// recovered as `unknown` when it lapses.
    #[tracing::instrument(name = "dispatch_pass", skip_all)]
    pub async fn run_once(&self) -> Result<DispatchPass, DispatchError> {
        let now = self.clock.now();
        let mut pass = DispatchPass {
            recovered: self.queue.recover_expired_leases(now).await?,
            ..DispatchPass::default()
        };
        if pass.recovered > 0 {
            tracing::warn!(
                rows = pass.recovered,
                "lapsed leases turned unknown; they will be reconciled"
            );
        }
        if self.paused(now) {
            pass.paused = true;
            return Ok(pass);
        }
        let lease_expires_at = now.saturating_add(self.policy.lease);
        let claimed = self
            .queue
            .claim_due(
                self.tenant_id,
                now,
                &self.owner,
                lease_expires_at,
                self.policy.batch_size,
            )
            .await?;
        pass.claimed = claimed.len();
        // Graph's list, fetched at most once per pass for all the rows that need it: under
        // failures a paged list is the call most likely to fail, so it is not repeated per row.
        let mut listing = None;
        for row in claimed {
            // A 429 met by an earlier row pauses the tenant: the rest wait, unattempted, for
            // their lease to be handed back.
            let transition = if self.paused(self.clock.now()) {
                self.hand_back(&row).await?
            } else {
                match self.deliver(row, &mut listing).await {
                    Ok(transition) => transition,
                    Err(DispatchError(StoreError::LeaseLost)) => {
                        // The row waited in this batch past its lease and another worker
                        // claimed it: that worker delivers it; sending it here too could
                        // create it twice.
                        tracing::warn!(
                            "a claimed row's lease lapsed before its attempt; left to its new holder"
                        );
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            };
            match transition {
                OutboxTransition::Delivered { .. } => pass.delivered += 1,
                OutboxTransition::Retry { .. } => pass.retried += 1,
                OutboxTransition::Dead { .. } => pass.dead += 1,
            }
        }
        Ok(pass)
    }

    /// Returns a claimed row to its previous state without an attempt, due when the pause ends.
    async fn hand_back(&self, row: &ClaimedDelivery) -> Result<OutboxTransition, DispatchError> {
        let resume = self.pause_end().unwrap_or_else(|| self.clock.now());
        self.queue
            .release(row.outbox_id, row.previous_state, resume)
            .await?;
        Ok(OutboxTransition::Retry {
            state: row.previous_state,
            next_attempt_at: resume,
        })
    }

    /// One attempt for one claimed row.
    #[tracing::instrument(name = "deliver", skip_all, fields(outbox.id = %row.outbox_id, partner.id = %row.partner.id()))]
    async fn deliver(
        &self,
        row: ClaimedDelivery,
        listing: &mut Option<Listing>,
    ) -> Result<OutboxTransition, DispatchError> {
        let needs_listing = match row.operation {
            Operation::Create => row.previous_state == DeliveryState::Unknown,
            Operation::Update | Operation::Delete => row.graph_id.is_none(),
        };
        let remote = if needs_listing {
            if listing.is_none() {
                *listing = Some(self.listing_for(&row).await);
            }
            match listing.as_ref() {
                Some(Ok(remote)) => Some(remote.as_slice()),
                Some(Err(error)) => return self.listing_failed(&row, error).await,
                None => None,
            }
        } else {
            None
        };

        let attempt = row.attempts + 1;
        let client_request_id = self.ids.new_uuid();
        let started_at = self.clock.now();
        self.queue
            .start_attempt(&AttemptStart {
                outbox_id: row.outbox_id,
                attempt,
                client_request_id,
                started_at,
                lease_owner: self.owner.clone(),
                lease_expires_at: started_at.saturating_add(self.policy.lease),
            })
            .await?;

        let ending = match (row.operation, remote) {
            (Operation::Create, Some(remote)) => {
                self.reconcile_then_create(&row, remote, client_request_id, attempt)
                    .await
            }
            // A deleted partner whose create was never applied need not reach Graph at all.
            (Operation::Create, None) if row.partner_deleted => Self::absent_in_graph(),
            (Operation::Create, None) => self.create(&row, client_request_id, attempt).await,
            (Operation::Update | Operation::Delete, remote) => {
                self.change(&row, remote, client_request_id, attempt).await
            }
        };
        let ending = self.give_up_if_exhausted(&row, row.attempts_in_window + 1, ending);
        if let OutboxTransition::Dead { reason } = &ending.transition {
            tracing::error!(alert = true, outbox.id = %row.outbox_id, reason = %reason, "ALERT: delivery dead-lettered; an operator must act");
        }
        let transition = ending.transition.clone();
        self.finish(&row, client_request_id, ending).await?;
        Ok(transition)
    }

    /// Graph's list as fresh as `row` needs: the last good read when it was made at or after the
    /// row became due, a new read otherwise.
    async fn listing_for(&self, row: &ClaimedDelivery) -> Listing {
        let cached = self
            .last_listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some((read_at, remote)) = cached
            && read_at >= row.due_at
        {
            return Ok(remote);
        }
        let read_at = self.clock.now();
        let remote = Arc::new(self.graph.list_partners().await?);
        let mut last = self
            .last_listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last
            .as_ref()
            .is_none_or(|(previous, _)| *previous < read_at)
        {
            *last = Some((read_at, remote.clone()));
        }
        Ok(remote)
    }

    /// Graph's list could not be read: nothing was sent, so no attempt is recorded and none is
    /// counted against the give-up limit; the row goes back as it was, after a back-off. Only
    /// the age limit still applies (failures of our own credentials excepted), so a list that
    /// never works ends, after a day, in front of an operator.
    async fn listing_failed(
        &self,
        row: &ClaimedDelivery,
        error: &GraphReadError,
    ) -> Result<OutboxTransition, DispatchError> {
        let now = self.clock.now();
        let ours = matches!(error, GraphReadError::AuthFailure(_));
        if matches!(error, GraphReadError::Transient(_)) {
            tracing::warn!(error.message = %error, "listing Graph failed; the row waits");
        } else {
            tracing::error!(alert = true, error.message = %error, "ALERT: listing Graph failed");
        }
        let first = row.first_attempt_at.unwrap_or(row.created_at);
        if !ours && now >= first.saturating_add(self.policy.max_age) {
            // Giving up needs an attempt to record the end on.
            let client_request_id = self.ids.new_uuid();
            self.queue
                .start_attempt(&AttemptStart {
                    outbox_id: row.outbox_id,
                    attempt: row.attempts + 1,
                    client_request_id,
                    started_at: now,
                    lease_owner: self.owner.clone(),
                    lease_expires_at: now.saturating_add(self.policy.lease),
                })
                .await?;
            let transition = OutboxTransition::Dead {
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
            self.finish(
                row,
                client_request_id,
                Ending {
                    meta,
                    label: "reconcile_failed",
                    transition: transition.clone(),
                    waits_on_operator: false,
                },
            )
            .await?;
            return Ok(transition);
        }
        let next_attempt_at = now.saturating_add(self.backoff(row.attempts + 1));
        self.queue
            .release(row.outbox_id, row.previous_state, next_attempt_at)
            .await?;
        Ok(OutboxTransition::Retry {
            state: row.previous_state,
            next_attempt_at,
        })
    }

    /// §3.4: match Graph's list on the natural key before any resend.
    async fn reconcile_then_create(
        &self,
        row: &ClaimedDelivery,
        remote: &[RemotePartner],
        client_request_id: Uuid,
        attempt: u32,
    ) -> Ending {
        let mut matches = Vec::new();
        for candidate in remote
            .iter()
            .filter(|c| row.natural_key.matches_reported(c.display_name.as_deref()))
        {
            // An object another partner holds keeps its name until that partner's rename
            // reaches Graph; it is never this partner's.
            match self
                .queue
                .graph_id_held_by_another(&candidate.graph_id, row.partner.id())
                .await
            {
                Ok(true) => continue,
                Ok(false) => matches.push(candidate),
                Err(error) => {
                    tracing::warn!(error.message = %error, "checking who holds a Graph object failed; trying later");
                    return Ending {
                        meta: GraphResponseMeta::default(),
                        label: "reconcile_failed",
                        waits_on_operator: false,
                        transition: OutboxTransition::Retry {
                            state: DeliveryState::Unknown,
                            next_attempt_at: self.clock.now().saturating_add(self.backoff(attempt)),
                        },
                    };
                }
            }
        }
        match matches.as_slice() {
            [] if row.partner_deleted => Self::absent_in_graph(),
            [] => {
                let ending = self.create(row, client_request_id, attempt).await;
                if let OutboxTransition::Retry { .. } = ending.transition
                    && ending.label == "conflict"
                {
                    // Graph says it holds the name, yet its list just showed none: a refusal
                    // for good (§3.1), not a reason to loop list-and-POST.
                    return Ending {
                        transition: OutboxTransition::Dead {
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
            [single] => Ending {
                waits_on_operator: false,
                meta: GraphResponseMeta::default(),
                label: "adopted",
                transition: OutboxTransition::Delivered {
                    graph_id: single.graph_id.clone(),
                },
            },
            several => Ending {
                waits_on_operator: false,
                meta: GraphResponseMeta::default(),
                label: "duplicate_in_graph",
                transition: OutboxTransition::Dead {
                    reason: format!(
                        "duplicate in Graph: {} objects named '{}' ({}); delete the extra ones, then re-queue",
                        several.len(),
                        row.partner.display_name(),
                        several
                            .iter()
                            .map(|r| r.graph_id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
            },
        }
    }

    /// A PATCH or DELETE of the partner's object in Graph. Both are idempotent, so an unknown
    /// outcome is simply tried again. The object is found by Graph's id, or by display name
    /// when the id was never learnt.
    async fn change(
        &self,
        row: &ClaimedDelivery,
        remote: Option<&[RemotePartner]>,
        client_request_id: Uuid,
        attempt: u32,
    ) -> Ending {
        let graph_id = match &row.graph_id {
            // The create ended without Graph ever holding the partner: nothing to change.
            Some(id) if id == NOT_IN_GRAPH => return Self::absent_in_graph(),
            Some(id) => id.clone(),
            None => match self.find_by_name(row, remote.unwrap_or_default()) {
                Ok(Some(id)) => id,
                // Nothing of that name in Graph: there is nothing to delete.
                Ok(None) if row.operation == Operation::Delete => return Self::absent_in_graph(),
                Ok(None) => {
                    return self
                        .dead("the partner is not in Microsoft Graph, so it cannot be updated");
                }
                Err(reason) => return self.dead(&reason),
            },
        };
        let result = match row.operation {
            Operation::Delete => {
                self.graph
                    .delete_partner(&graph_id, client_request_id)
                    .await
            }
            _ => {
                self.graph
                    .update_partner(&graph_id, &row.partner, client_request_id)
                    .await
            }
        };
        let now = self.clock.now();
        let retry = |state| OutboxTransition::Retry {
            state,
            next_attempt_at: now.saturating_add(self.backoff(attempt)),
        };
        let (label, transition, waits_on_operator) = match result.outcome {
            WriteOutcome::Applied => ("applied", OutboxTransition::Delivered { graph_id }, false),
            WriteOutcome::NotApplied { retry_after } => {
                if let Some(after) = retry_after {
                    self.pause(now.saturating_add(after));
                }
                let delay = retry_after.map_or(self.backoff(attempt), |after| {
                    after.max(self.backoff(attempt))
                });
                let transition = OutboxTransition::Retry {
                    state: DeliveryState::Pending,
                    next_attempt_at: now.saturating_add(delay),
                };
                ("not_applied", transition, false)
            }
            WriteOutcome::AuthFailure => {
                tracing::error!(alert = true, status = ?result.meta.status, "ALERT: Graph refused our credentials; rows stay pending");
                ("auth_failure", retry(DeliveryState::Pending), true)
            }
            WriteOutcome::Unknown => ("unknown", retry(DeliveryState::Pending), false),
            WriteOutcome::NotFound => (
                "not_found",
                OutboxTransition::Dead {
                    reason: format!("Microsoft Graph has no object {graph_id} to update"),
                },
                false,
            ),
            WriteOutcome::Rejected => (
                "rejected",
                OutboxTransition::Dead {
                    reason: format!(
                        "Microsoft Graph refused the {}: status {}, code {}",
                        row.operation.as_str(),
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
            label,
            transition,
            waits_on_operator,
        }
    }

    /// Graph's id of the single object in `remote` named like the row's partner; `Ok(None)`
    /// when there is none; the reason to give up when several are.
    fn find_by_name(
        &self,
        row: &ClaimedDelivery,
        remote: &[RemotePartner],
    ) -> Result<Option<String>, String> {
        let matches: Vec<_> = remote
            .iter()
            .filter(|candidate| {
                row.natural_key
                    .matches_reported(candidate.display_name.as_deref())
            })
            .collect();
        match matches.as_slice() {
            [] => Ok(None),
            [single] => Ok(Some(single.graph_id.clone())),
            several => Err(format!(
                "duplicate in Graph: {} objects named '{}' ({})",
                several.len(),
                row.partner.display_name(),
                several
                    .iter()
                    .map(|r| r.graph_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The partner is not in Graph and need not be: a deleted partner's create, or a delete
    /// that finds nothing to delete.
    fn absent_in_graph() -> Ending {
        Ending {
            meta: GraphResponseMeta::default(),
            label: "absent_in_graph",
            transition: OutboxTransition::Delivered {
                graph_id: NOT_IN_GRAPH.to_owned(),
            },
            waits_on_operator: false,
        }
    }

    fn dead(&self, reason: &str) -> Ending {
        Ending {
            meta: GraphResponseMeta::default(),
            label: "dead",
            transition: OutboxTransition::Dead {
                reason: reason.to_owned(),
            },
            waits_on_operator: false,
        }
    }

    /// A POST, judged by the same rules as the inline attempt of the create request.
    async fn create(&self, row: &ClaimedDelivery, client_request_id: Uuid, attempt: u32) -> Ending {
        let GraphCallResult { outcome, meta } = self
            .graph
            .create_partner(&row.partner, client_request_id)
            .await;
        let now = self.clock.now();
        if let CreateOutcome::NotApplied {
            retry_after: Some(after),
        } = &outcome
        {
            self.pause(now.saturating_add(*after));
        }
        if outcome == CreateOutcome::AuthFailure {
            tracing::error!(alert = true, status = ?meta.status, code = ?meta.error_code, "ALERT: Graph refused our credentials; rows stay pending");
        }
        let label = delivery::outcome_label(Some(&outcome));
        let transition = match delivery::judge(
            Some(&outcome),
            now,
            self.backoff(attempt),
            self.policy.settle,
        ) {
            Verdict::Move(transition) => transition,
            Verdict::Rejected => OutboxTransition::Dead {
                reason: format!(
                    "Microsoft Graph refused the partner: status {}, code {}",
                    meta.status
                        .map_or_else(|| "none".to_owned(), |s| s.to_string()),
                    meta.error_code.as_deref().unwrap_or("none")
                ),
            },
        };
        let waits_on_operator = outcome == CreateOutcome::AuthFailure;
        Ending {
            meta,
            label,
            transition,
            waits_on_operator,
        }
    }

    /// Transient failures past the attempt or age limit are dead-lettered. Rows waiting on our
    /// own credentials are not: that is an operator's fix, and nothing is lost by waiting.
    fn give_up_if_exhausted(
        &self,
        row: &ClaimedDelivery,
        attempts_in_window: u32,
        ending: Ending,
    ) -> Ending {
        let OutboxTransition::Retry { .. } = ending.transition else {
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
                ending.label
            )
        } else if now >= age_limit {
            format!(
                "gave up {} s after the first attempt; last outcome {}",
                self.policy.max_age.as_secs(),
                ending.label
            )
        } else {
            return ending;
        };
        Ending {
            transition: OutboxTransition::Dead { reason },
            ..ending
        }
    }

    async fn finish(
        &self,
        row: &ClaimedDelivery,
        client_request_id: Uuid,
        ending: Ending,
    ) -> Result<(), DispatchError> {
        let finish = AttemptFinish {
            outbox_id: row.outbox_id,
            partner_id: row.partner.id(),
            client_request_id,
            finished_at: self.clock.now(),
            meta: ending.meta,
            outcome_label: ending.label,
            transition: ending.transition,
        };
        self.repository.finish_attempt(&finish).await?;
        Ok(())
    }

    fn backoff(&self, attempt: u32) -> Duration {
        delivery::full_jitter(
            self.policy.backoff_base,
            self.policy.backoff_cap,
            attempt,
            self.jitter.fraction(),
        )
    }

    fn paused(&self, now: Timestamp) -> bool {
        self.pause_end().is_some_and(|end| now < end)
    }

    fn pause_end(&self) -> Option<Timestamp> {
        *self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pause(&self, until: Timestamp) {
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *paused = Some(paused.map_or(until, |current| current.max(until)));
    }
}

/// The graph id recorded for a delete that found nothing of that name in Graph.
pub const NOT_IN_GRAPH: &str = "not-in-graph";

#[cfg(test)]
mod tests;
