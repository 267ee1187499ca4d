//! The dispatcher: the pass loop that works the outbox in the background, finishing the
//! deliveries the create requests could not, and carrying updates and deletes to Graph.
//!
//! A background task in the binary calls [`Dispatcher::run_once`] in a loop. Each pass turns
//! lapsed leases into `unknown`, claims due rows (unless the tenant is paused by a
//! `Retry-After`), and makes one delivery per row by the rules of [`crate::delivery`].

use std::sync::Arc;

use cmp_domain::TenantId;

use crate::delivery::Deliverer;
use crate::policy::OutboxPolicy;
use crate::ports::{
    Clock, GraphGateway, IdSource, Jitter, LeaseOwner, Outbox, Pacer, PartnerStore, Sleeper,
    StoreError, Transition,
};
use crate::reconciliation::GraphListing;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchPass {
    /// Lapsed leases turned `unknown`.
    pub recovered: u64,
    /// Rows claimed.
    pub claimed: usize,
    /// Rows delivered (created, adopted, applied, or rightly absent).
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
#[error("the outbox failed")]
pub struct DispatchError(#[from] StoreError);

/// The dispatcher of one tenant's outbox. A clone shares everything, its lease owner included;
/// [`Dispatcher::worker`] makes one with an owner of its own.
#[derive(Clone)]
pub struct Dispatcher {
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    tenant_id: TenantId,
    /// Names this worker in leases, so a lease shows who holds it.
    owner: LeaseOwner,
    policy: OutboxPolicy,
    /// The delivery rules, with the state shared by every worker of the tenant (its pause and
    /// the last read of Graph's list).
    deliverer: Deliverer,
}

impl Dispatcher {
    /// A dispatcher over the given ports.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per port, as the constructor of PartnerService"
    )]
    pub fn new(
        outbox: Arc<dyn Outbox>,
        partners: Arc<dyn PartnerStore>,
        graph: Arc<dyn GraphGateway>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        jitter: Arc<dyn Jitter>,
        pacer: Arc<dyn Pacer>,
        sleeper: Arc<dyn Sleeper>,
        tenant_id: TenantId,
        policy: OutboxPolicy,
    ) -> Self {
        let owner = LeaseOwner::dispatcher(ids.new_uuid());
        let deliverer = Deliverer {
            outbox: outbox.clone(),
            listings: GraphListing::new(
                graph.clone(),
                partners,
                clock.clone(),
                pacer.clone(),
                sleeper.clone(),
                policy.reconcile_by_name,
            ),
            graph,
            clock: clock.clone(),
            ids: ids.clone(),
            jitter,
            policy,
            pacer,
            sleeper,
        };
        Self {
            outbox,
            clock,
            ids,
            tenant_id,
            owner,
            policy,
            deliverer,
        }
    }

    /// Another worker of the same tenant's outbox: its own lease owner, the same ports, the
    /// same pacer and the same last read of Graph's list.
    pub fn worker(&self) -> Self {
        Self {
            owner: LeaseOwner::dispatcher(self.ids.new_uuid()),
            ..self.clone()
        }
    }

    /// One pass over the outbox: recover lapsed leases, claim due rows (unless the tenant is
    /// paused), and make one delivery for each, in order.
    ///
    /// # Errors
    /// [`DispatchError`] when the store fails; rows already claimed keep their lease and are
    /// recovered as `unknown` when it lapses.
    #[tracing::instrument(name = "dispatch_pass", skip_all)]
    pub async fn run_once(&self) -> Result<DispatchPass, DispatchError> {
        let now = self.clock.now();
        let mut pass = DispatchPass {
            recovered: self.outbox.recover_expired_leases(now).await?,
            ..DispatchPass::default()
        };
        if pass.recovered > 0 {
            tracing::warn!(
                rows = pass.recovered,
                "lapsed leases turned unknown; they will be reconciled"
            );
        }
        if let Some(resume) = self.paused_until(now).await {
            pass.paused = true;
            tracing::debug!(
                ?resume,
                "the tenant is paused by a Retry-After; nothing claimed"
            );
            return Ok(pass);
        }
        let lease_expires_at = now.saturating_add(self.policy.lease);
        // Every wait for a slot ends by half the lease, so the call that follows still runs on
        // a lease with at least half its length to go (the start of a delivery renews it).
        let latest = now.saturating_add(self.policy.lease / 2);
        let claimed = self
            .outbox
            .claim_due(
                self.tenant_id,
                now,
                &self.owner,
                lease_expires_at,
                self.policy.batch_size,
            )
            .await?;
        pass.claimed = claimed.len();
        // Graph's list, read at most once per pass for all the rows that need it: under
        // failures a paged list is the call most likely to fail, so it is not repeated per row.
        let mut listing = None;
        for row in claimed {
            // A 429 met by an earlier row pauses the tenant: the rest wait, unattempted, for
            // their lease to be handed back.
            let now = self.clock.now();
            let transition = if let Some(resume) = self.paused_until(now).await {
                self.deliverer.hand_back(&row, resume).await?
            } else {
                match self
                    .deliverer
                    .deliver(row, &self.owner, &mut listing, latest)
                    .await
                {
                    Ok(transition) => transition,
                    Err(StoreError::LeaseLost) => {
                        // The row waited in this batch past its lease and another worker
                        // claimed it: that worker delivers it; sending it here too could
                        // create it twice.
                        tracing::warn!(
                            "a claimed row's lease lapsed before its delivery; left to its new holder"
                        );
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                }
            };
            match transition {
                Transition::Delivered { .. } => pass.delivered += 1,
                Transition::Retry { .. } => pass.retried += 1,
                Transition::Dead { .. } => pass.dead += 1,
            }
        }
        Ok(pass)
    }

    /// The end of the tenant's `Retry-After` pause, when one is in force at `now`. A pacer that
    /// cannot answer counts as a pause of one back-off step: nothing goes out without a slot.
    async fn paused_until(&self, now: cmp_domain::Timestamp) -> Option<cmp_domain::Timestamp> {
        match self.deliverer.pacer.state().await {
            Ok(state) if state.paused_at(now) => state.paused_until,
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(error.message = %error, "the pacer failed; the pass claims nothing");
                Some(now.saturating_add(self.policy.retry_base))
            }
        }
    }
}

#[cfg(test)]
mod tests;
