//! The partner use cases: the driving port [`PartnerUseCases`] and [`PartnerService`].

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use cmp_domain::{NewPartner, Partner, PartnerId, PartnerPatch, Platform, TenantId};

use crate::audit::{AuditAction, AuditEntry};
use crate::delivery::{self, Verdict};
use crate::error::{
    CreatePartnerError, DeletePartnerError, GetPartnerError, ListPartnersError, UpdatePartnerError,
};
use crate::outbox_metrics;
use crate::pacing::{record_throttle, wait_for_slot};
use crate::policy::OutboxPolicy;
use crate::ports::{
    Booking, Budget, ChangeQueued, ChangeWrite, ChangedPartner, Clock, CreateOutcome, DeliveryEnd,
    DeliveryOutcome, GraphGateway, IdSource, InlineDelivery, Lease, LeaseOwner, NewPartnerWrite,
    Outbox, Pacer, PartnerChange, PartnerStore, PartnerUpdate, Sleeper, StoreError, Transition,
    WaitingState,
};
use crate::query::{Filter, ListQuery, PartnerPage};

/// Who asked: the ids of the HTTP request, for the audit log and the lease owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// Our `request-id` for the request.
    pub request_id: String,
    /// Who asked, as `app:<tenant>/<object id>` or `user:<tenant>/<object id>` (see [`crate::Caller`]).
    pub caller: String,
}

/// How a create ended, both with the stored partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatePartnerOutput {
    /// Graph holds the partner: `201 Created`.
    Created(Partner),
    /// Stored and queued; Graph was slow or unavailable: `202 Accepted`.
    Accepted(Partner),
}

/// What the HTTP adapter can ask of the application.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait PartnerUseCases: Send + Sync + 'static {
    /// Creates a partner: stores it with its create row in the outbox, then delivers it to
    /// Graph inline within the configured deadline.
    ///
    /// # Errors
    /// See [`CreatePartnerError`]. On every error nothing is left stored but audit entries,
    /// with one exception: when Graph refused the partner and undoing the local write then
    /// failed ([`CreatePartnerError::Unexpected`]), the partner stays with its leased outbox
    /// row; when the lease lapses the row is reconciled and, Graph holding nothing, ends dead.
    async fn create_partner(
        &self,
        command: NewPartner,
        context: &RequestContext,
    ) -> Result<CreatePartnerOutput, CreatePartnerError>;

    /// Reads a partner by id.
    ///
    /// # Errors
    /// [`GetPartnerError::NotFound`] for an unknown id.
    async fn get_partner(&self, id: PartnerId) -> Result<Partner, GetPartnerError>;

    /// One page of partners as `query` says.
    ///
    /// # Errors
    /// [`ListPartnersError`] when the store fails.
    async fn list_partners(&self, query: &ListQuery) -> Result<PartnerPage, ListPartnersError>;

    /// How many partners `filter` matches.
    ///
    /// # Errors
    /// [`ListPartnersError`] when the store fails.
    async fn count_partners(&self, filter: Option<Filter>) -> Result<u64, ListPartnersError>;

    /// Applies `patch` to a partner (Graph's PATCH: properties present replace the stored
    /// ones), re-checks every invariant, stores it and queues the change for Graph.
    ///
    /// # Errors
    /// See [`UpdatePartnerError`]; on every error nothing is written.
    async fn update_partner(
        &self,
        id: PartnerId,
        patch: PartnerPatch,
        context: &RequestContext,
    ) -> Result<Partner, UpdatePartnerError>;

    /// Deletes a partner for callers at once; Graph is told in the background (or never, when
    /// the partner never reached it). Its display name stays reserved until Graph confirms.
    ///
    /// # Errors
    /// [`DeletePartnerError::NotFound`] for an unknown or already deleted id.
    async fn delete_partner(
        &self,
        id: PartnerId,
        context: &RequestContext,
    ) -> Result<(), DeletePartnerError>;
}

/// The use cases over the driven ports.
pub struct PartnerService {
    partners: Arc<dyn PartnerStore>,
    outbox: Arc<dyn Outbox>,
    graph: Arc<dyn GraphGateway>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    sleeper: Arc<dyn Sleeper>,
    /// The tenant's write budget and `Retry-After` pause, shared with the dispatcher.
    pacer: Arc<dyn Pacer>,
    /// The tenant every partner of this deployment is provisioned into.
    tenant_id: TenantId,
    policy: OutboxPolicy,
}

impl PartnerService {
    /// Assembles the service from its ports.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per port, as the constructor of Dispatcher"
    )]
    pub fn new(
        partners: Arc<dyn PartnerStore>,
        outbox: Arc<dyn Outbox>,
        graph: Arc<dyn GraphGateway>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        sleeper: Arc<dyn Sleeper>,
        pacer: Arc<dyn Pacer>,
        tenant_id: TenantId,
        policy: OutboxPolicy,
    ) -> Self {
        Self {
            partners,
            outbox,
            graph,
            clock,
            ids,
            sleeper,
            pacer,
            tenant_id,
            policy,
        }
    }
}

impl PartnerService {
    /// Records how the inline delivery of a create ended and answers the caller: 201 when
    /// Graph holds the partner, 202 otherwise.
    async fn record_inline_end(
        &self,
        partner: Partner,
        end: &DeliveryEnd,
        delivered: bool,
    ) -> CreatePartnerOutput {
        if let Err(error) = self.outbox.finish_delivery(end).await {
            // The row stays leased; when the lease lapses it turns `unknown` and is
            // reconciled, so the partner is neither lost nor posted twice.
            tracing::warn!(partner.id = %partner.id(), error.message = %error, error.cause_chain = ?error, "recording the inline attempt failed; delivery continues in the background");
            return CreatePartnerOutput::Accepted(partner);
        }
        outbox_metrics::count_end(end);
        if delivered {
            CreatePartnerOutput::Created(partner)
        } else {
            CreatePartnerOutput::Accepted(partner)
        }
    }
}

#[async_trait::async_trait]
impl PartnerUseCases for PartnerService {
    #[tracing::instrument(level = "debug", name = "create_partner", skip_all, fields(partner.id))]
    async fn create_partner(
        &self,
        command: NewPartner,
        context: &RequestContext,
    ) -> Result<CreatePartnerOutput, CreatePartnerError> {
        let now = self.clock.now();
        let partner = Partner::create(PartnerId::from_uuid(self.ids.new_uuid()), command, now)?;
        tracing::Span::current().record("partner.id", tracing::field::display(partner.id()));

        let outbox_id = self.ids.new_uuid();
        let client_request_id = self.ids.new_uuid();
        let write = NewPartnerWrite {
            tenant_id: self.tenant_id,
            delivery: InlineDelivery {
                outbox_id,
                lease: Lease {
                    owner: LeaseOwner::request(&context.request_id),
                    expires_at: now.saturating_add(self.policy.lease),
                },
                client_request_id,
            },
            now,
            audit: AuditEntry {
                id: self.ids.new_uuid(),
                partner_id: partner.id(),
                action: AuditAction::Created,
                request_id: context.request_id.clone(),
                caller: context.caller.clone(),
                at: now,
                detail: format!("created partner '{}'", partner.display_name()),
            },
        };
        self.partners
            .insert_partner(&partner, &write)
            .await
            .map_err(|e| match e {
                StoreError::DuplicateDisplayName { display_name } => {
                    CreatePartnerError::DuplicateDisplayName { display_name }
                }
                StoreError::Unexpected(e) => CreatePartnerError::Unexpected(e),
                error @ (StoreError::NotFound | StoreError::LeaseLost | StoreError::Invalid(_)) => {
                    CreatePartnerError::Unexpected(
                        anyhow::Error::new(error).context("inserting a partner"),
                    )
                }
            })?;

        // The partner is committed from here on: whatever Graph does, the caller must not be
        // told it failed in a way that invites a retry (that would meet a 409).
        //
        // A write slot is waited for only while half the deadline is left for the call; when
        // the tenant's next slot is later, waiting cannot help: the create answers 202 at
        // once, and the row waits, pending, for the dispatcher.
        let latest = now.saturating_add(self.policy.inline_deadline / 2);
        let resume = match wait_for_slot(
            self.pacer.as_ref(),
            self.clock.as_ref(),
            self.sleeper.as_ref(),
            Budget::Write,
            latest,
        )
        .await
        {
            Ok(Booking::Booked(_)) => None,
            Ok(Booking::NoneBefore { next_free }) => Some(next_free),
            Err(error) => {
                tracing::warn!(error.message = %error, "the pacer failed; the create is queued");
                Some(self.clock.now().saturating_add(self.policy.retry_base))
            }
        };
        if let Some(resume) = resume {
            let end = DeliveryEnd {
                outbox_id,
                partner_id: partner.id(),
                client_request_id,
                finished_at: self.clock.now(),
                meta: Default::default(),
                outcome: DeliveryOutcome::NotSent,
                transition: Transition::Retry {
                    state: WaitingState::Pending,
                    next_attempt_at: resume,
                },
            };
            return Ok(self.record_inline_end(partner, &end, false).await);
        }
        let deadline = now.saturating_add(self.policy.inline_deadline);
        let left = deadline.saturating_duration_since(self.clock.now());
        let call = self.graph.create_partner(&partner, client_request_id);
        let result = first_of(call, self.sleeper.sleep(left)).await;
        let finished_at = self.clock.now();
        if let Some(result) = &result
            && let CreateOutcome::NotApplied {
                retry_after: Some(after),
            } = result.outcome
        {
            record_throttle(self.pacer.as_ref(), finished_at, after).await;
        }
        let (outcome, meta) = match result {
            Some(result) => (Some(result.outcome), result.meta),
            None => (None, Default::default()),
        };

        match delivery::judge(
            outcome.as_ref(),
            finished_at,
            self.policy.retry_base,
            self.policy.settle,
        ) {
            Verdict::Move(transition) => {
                let delivered = matches!(transition, Transition::Delivered { .. });
                let end = DeliveryEnd {
                    outbox_id,
                    partner_id: partner.id(),
                    client_request_id,
                    finished_at,
                    meta,
                    outcome: DeliveryOutcome::of_create(outcome.as_ref()),
                    transition,
                };
                Ok(self.record_inline_end(partner, &end, delivered).await)
            }
            Verdict::Rejected => {
                let audit = AuditEntry {
                    id: self.ids.new_uuid(),
                    partner_id: partner.id(),
                    action: AuditAction::CreateRejectedByGraph,
                    request_id: context.request_id.clone(),
                    caller: context.caller.clone(),
                    at: finished_at,
                    detail: format!(
                        "Microsoft Graph refused the partner: status {}, code {}, graph request-id {}, client-request-id {}",
                        meta.status
                            .map_or_else(|| "none".to_owned(), |s| s.to_string()),
                        meta.error_code.as_deref().unwrap_or("none"),
                        meta.request_id.as_deref().unwrap_or("none"),
                        client_request_id,
                    ),
                };
                self.outbox
                    .undo_rejected_create(partner.id(), outbox_id, &audit)
                    .await
                    .map_err(|e| {
                        CreatePartnerError::Unexpected(
                            anyhow::Error::new(e).context("undoing a create Graph refused"),
                        )
                    })?;
                // The row went with its partner: a delivery refused, but no dead letter.
                outbox_metrics::count_delivery(DeliveryOutcome::Rejected);
                Err(CreatePartnerError::GraphRejected {
                    status: meta.status.unwrap_or(400),
                    code: meta.error_code,
                    message: meta.error_message,
                })
            }
        }
    }

    #[tracing::instrument(level = "debug", name = "list_partners", skip_all)]
    async fn list_partners(&self, query: &ListQuery) -> Result<PartnerPage, ListPartnersError> {
        Ok(self.partners.list_partners(self.tenant_id, query).await?)
    }

    #[tracing::instrument(level = "debug", name = "count_partners", skip_all)]
    async fn count_partners(&self, filter: Option<Filter>) -> Result<u64, ListPartnersError> {
        Ok(self.partners.count_partners(self.tenant_id, filter).await?)
    }

    #[tracing::instrument(level = "debug", name = "update_partner", skip_all, fields(partner.id = %id))]
    async fn update_partner(
        &self,
        id: PartnerId,
        patch: PartnerPatch,
        context: &RequestContext,
    ) -> Result<Partner, UpdatePartnerError> {
        let now = self.clock.now();
        let audit_id = self.ids.new_uuid();
        let request_id = context.request_id.clone();
        let caller = context.caller.clone();
        // Applied by the store to the partner as stored when the write runs, so a concurrent
        // PATCH of the same partner is merged over, not lost, and never refused.
        let change: PartnerChange = Box::new(move |current: &Partner| {
            let updated = current.patched(&patch, now)?;
            let changes = changed_properties(current, &updated);
            let detail = if changes.is_empty() {
                "no property changed".to_owned()
            } else {
                changes.join("; ")
            };
            Ok(ChangedPartner {
                partner: updated,
                audit: AuditEntry {
                    id: audit_id,
                    partner_id: id,
                    action: AuditAction::Updated,
                    request_id,
                    caller,
                    at: now,
                    detail,
                },
            })
        });
        let update = PartnerUpdate {
            tenant_id: self.tenant_id,
            outbox_id: self.ids.new_uuid(),
            now,
            change,
        };
        match self.partners.update_partner(id, update).await {
            Ok(updated) => {
                tracing::debug!(
                    folded = updated.queued == ChangeQueued::Folded,
                    "partner updated"
                );
                Ok(updated.partner)
            }
            Err(StoreError::NotFound) => Err(UpdatePartnerError::NotFound(id)),
            Err(StoreError::Invalid(error)) => Err(UpdatePartnerError::Invalid(error)),
            Err(StoreError::DuplicateDisplayName { display_name }) => {
                Err(UpdatePartnerError::DuplicateDisplayName { display_name })
            }
            Err(other @ (StoreError::LeaseLost | StoreError::Unexpected(_))) => {
                Err(UpdatePartnerError::Unexpected(
                    anyhow::Error::new(other).context("updating a partner"),
                ))
            }
        }
    }

    #[tracing::instrument(level = "debug", name = "delete_partner", skip_all, fields(partner.id = %id))]
    async fn delete_partner(
        &self,
        id: PartnerId,
        context: &RequestContext,
    ) -> Result<(), DeletePartnerError> {
        let write = ChangeWrite {
            tenant_id: self.tenant_id,
            outbox_id: self.ids.new_uuid(),
            now: self.clock.now(),
            audit: self.audit(
                id,
                AuditAction::Deleted,
                context,
                "deleted by the caller".to_owned(),
            ),
        };
        match self.partners.delete_partner(id, &write).await {
            Ok(ChangeQueued::Folded) => {
                tracing::info!(partner.id = %id, "partner deleted before it reached Graph; nothing to tell Graph");
                Ok(())
            }
            Ok(ChangeQueued::Queued) => Ok(()),
            Err(StoreError::NotFound) => Err(DeletePartnerError::NotFound(id)),
            Err(other) => Err(DeletePartnerError::Unexpected(
                anyhow::Error::new(other).context("deleting a partner"),
            )),
        }
    }

    #[tracing::instrument(level = "debug", name = "get_partner", skip_all, fields(partner.id = %id))]
    async fn get_partner(&self, id: PartnerId) -> Result<Partner, GetPartnerError> {
        match self.partners.get_partner(id).await {
            Ok(Some(partner)) => Ok(partner),
            Ok(None) => Err(GetPartnerError::NotFound(id)),
            Err(e) => Err(GetPartnerError::Unexpected(
                anyhow::Error::new(e).context("reading a partner"),
            )),
        }
    }
}

impl PartnerService {
    fn audit(
        &self,
        partner_id: PartnerId,
        action: AuditAction,
        context: &RequestContext,
        detail: String,
    ) -> AuditEntry {
        AuditEntry {
            id: self.ids.new_uuid(),
            partner_id,
            action,
            request_id: context.request_id.clone(),
            caller: context.caller.clone(),
            at: self.clock.now(),
            detail,
        }
    }
}

/// The Graph property names that differ between `before` and `after`, for the audit log.
fn changed_properties(before: &Partner, after: &Partner) -> Vec<String> {
    let mut changed = Vec::new();
    if before.display_name() != after.display_name() {
        changed.push(format!(
            "displayName: '{}' -> '{}'",
            before.display_name(),
            after.display_name()
        ));
    }
    if before.state() != after.state() {
        changed.push(format!(
            "partnerState: {} -> {}",
            before.state(),
            after.state()
        ));
    }
    if before.last_heartbeat() != after.last_heartbeat() {
        changed.push("lastHeartbeatDateTime".to_owned());
    }
    for platform in Platform::ALL {
        let (old, new) = (before.platform(platform), after.platform(platform));
        if old.onboarded() != new.onboarded() {
            changed.push(format!(
                "{platform}Onboarded: {} -> {}",
                old.onboarded(),
                new.onboarded()
            ));
        }
        if old.assignments() != new.assignments() {
            changed.push(format!(
                "{platform}EnrollmentAssignments ({} -> {})",
                old.assignments().len(),
                new.assignments().len()
            ));
        }
    }
    changed
}

/// Runs `work` until it completes or `deadline` does, whichever is first; `None` when the
/// deadline won. `work` is polled first, so a ready result is never lost to a ready deadline.
/// Written on `std` alone so the application needs no async runtime.
async fn first_of<W: Future, D: Future>(work: W, deadline: D) -> Option<W::Output> {
    let mut work = pin!(work);
    let mut deadline = pin!(deadline);
    poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests;
