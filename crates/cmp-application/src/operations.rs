//! What operators can see and do with the outbox: a partner's sync state and delivery
//! history, the rows in each state, and re-queuing dead rows.

use std::sync::Arc;

use cmp_domain::PartnerId;
use uuid::Uuid;

use crate::ports::{
    Clock, Outbox, OutboxCounts, OutboxRecord, OutboxState, PartnerHistory, StoreError,
};

/// Why an operator request failed.
#[derive(Debug, thiserror::Error)]
pub enum OperationsError {
    /// No such partner or row.
    #[error("not found")]
    NotFound,
    /// The row is not dead, so there is nothing to re-queue.
    #[error("the outbox row is not dead")]
    NotDead,
    /// The store failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<StoreError> for OperationsError {
    fn from(error: StoreError) -> Self {
        Self::Unexpected(anyhow::Error::new(error).context("reading the outbox"))
    }
}

/// The operator use cases.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait OperatorUseCases: Send + Sync + 'static {
    /// A partner's latest outbox row with its deliveries.
    ///
    /// # Errors
    /// [`OperationsError::NotFound`] when the partner has no outbox row.
    async fn sync_state(&self, partner_id: PartnerId) -> Result<OutboxRecord, OperationsError>;

    /// Rows in `state` (all when `None`), oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`OperationsError::Unexpected`] when the store fails.
    async fn list_rows(
        &self,
        state: Option<OutboxState>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, OperationsError>;

    /// Rows per state.
    ///
    /// # Errors
    /// [`OperationsError::Unexpected`] when the store fails.
    async fn count_rows(&self) -> Result<OutboxCounts, OperationsError>;

    /// A partner's audit entries and every outbox row with its deliveries.
    ///
    /// # Errors
    /// [`OperationsError::NotFound`] when nothing is recorded about the partner.
    async fn history(&self, partner_id: PartnerId) -> Result<PartnerHistory, OperationsError>;

    /// Puts a dead row back in the queue, due now.
    ///
    /// # Errors
    /// [`OperationsError::NotDead`] when no dead row has that id.
    async fn requeue(&self, outbox_id: Uuid) -> Result<(), OperationsError>;
}

/// [`OperatorUseCases`] over the outbox.
pub struct OutboxOperations {
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
}

impl OutboxOperations {
    /// The operator use cases over `outbox`.
    pub fn new(outbox: Arc<dyn Outbox>, clock: Arc<dyn Clock>) -> Self {
        Self { outbox, clock }
    }
}

#[async_trait::async_trait]
impl OperatorUseCases for OutboxOperations {
    async fn sync_state(&self, partner_id: PartnerId) -> Result<OutboxRecord, OperationsError> {
        self.outbox
            .sync_state(partner_id)
            .await?
            .ok_or(OperationsError::NotFound)
    }

    async fn list_rows(
        &self,
        state: Option<OutboxState>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, OperationsError> {
        Ok(self.outbox.list_rows(state, limit).await?)
    }

    async fn count_rows(&self) -> Result<OutboxCounts, OperationsError> {
        Ok(self.outbox.count_rows().await?)
    }

    async fn history(&self, partner_id: PartnerId) -> Result<PartnerHistory, OperationsError> {
        let history = self.outbox.history(partner_id).await?;
        if history.audit.is_empty() && history.rows.is_empty() {
            return Err(OperationsError::NotFound);
        }
        Ok(history)
    }

    #[tracing::instrument(name = "requeue", skip_all, fields(outbox.id = %outbox_id))]
    async fn requeue(&self, outbox_id: Uuid) -> Result<(), OperationsError> {
        if self
            .outbox
            .requeue_dead(outbox_id, self.clock.now())
            .await?
        {
            tracing::info!("dead row re-queued by an operator");
            Ok(())
        } else {
            Err(OperationsError::NotDead)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{MockClock, MockOutbox};
    use cmp_domain::Timestamp;

    fn clock() -> MockClock {
        let mut clock = MockClock::new();
        clock
            .expect_now()
            .return_const(Timestamp::from_unix_seconds(1_700_000_000, 0).expect("in range"));
        clock
    }

    #[tokio::test]
    async fn requeue_reports_a_row_that_is_not_dead() {
        let mut outbox = MockOutbox::new();
        outbox
            .expect_requeue_dead()
            .times(1)
            .returning(|_, _| Ok(false));
        let operations = OutboxOperations::new(Arc::new(outbox), Arc::new(clock()));

        let result = operations.requeue(Uuid::from_u128(1)).await;

        assert!(matches!(result, Err(OperationsError::NotDead)));
    }

    #[tokio::test]
    async fn requeue_moves_a_dead_row_due_now() {
        let mut outbox = MockOutbox::new();
        let now = Timestamp::from_unix_seconds(1_700_000_000, 0).expect("in range");
        outbox
            .expect_requeue_dead()
            .withf(move |id, at| *id == Uuid::from_u128(1) && *at == now)
            .times(1)
            .returning(|_, _| Ok(true));
        let operations = OutboxOperations::new(Arc::new(outbox), Arc::new(clock()));

        let result = operations.requeue(Uuid::from_u128(1)).await;

        assert!(result.is_ok());
    }

    #[tokio::test]
    async fn the_sync_state_of_a_partner_without_a_row_is_not_found() {
        let mut outbox = MockOutbox::new();
        outbox.expect_sync_state().times(1).returning(|_| Ok(None));
        let operations = OutboxOperations::new(Arc::new(outbox), Arc::new(clock()));

        let result = operations
            .sync_state(PartnerId::from_uuid(Uuid::from_u128(9)))
            .await;

        assert!(matches!(result, Err(OperationsError::NotFound)));
    }
}
