//! Reconciliation: matching a partner with the objects Graph holds, by natural key, when our
//! own record cannot say whether Graph has it (an unknown outcome, an id never learnt).
//!
//! Graph assigns its own ids and offers no idempotency key for this resource, so the display
//! name (unique per tenant, compared as a [`NaturalKey`](cmp_domain::NaturalKey)) is the only
//! handle. An object another partner of ours holds is never adopted, whatever its name says.

use std::sync::{Arc, Mutex, PoisonError};

use cmp_domain::Timestamp;

use crate::pacing::wait_for_slot;
use crate::ports::{
    Booking, Budget, ClaimedRow, Clock, GraphGateway, GraphReadError, GraphResponseMeta, Pacer,
    PartnerStore, RemotePartner, Sleeper, StoreError,
};

/// Graph's list as read for a pass.
pub(crate) type Listing = Result<Arc<Vec<RemotePartner>>, GraphReadError>;

/// A good read of Graph's list and when it started.
type ListingRead = (Timestamp, Arc<Vec<RemotePartner>>);

/// What Graph holds under a row's natural key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Match {
    /// Nothing.
    None,
    /// One object, with this Graph id.
    One(String),
    /// Several objects, with these Graph ids: an operator must choose.
    Several(Vec<String>),
}

impl Match {
    fn of(ids: Vec<String>) -> Self {
        match <[String; 1]>::try_from(ids) {
            Ok([id]) => Self::One(id),
            Err(ids) if ids.is_empty() => Self::None,
            Err(ids) => Self::Several(ids),
        }
    }
}

/// Graph's list of the tenant's partners, and the last good read of it, shared by the workers:
/// a paged list is the call most likely to fail, so one good read serves every row it is fresh
/// enough for (read at or after the row became due).
#[derive(Clone)]
pub(crate) struct GraphListing {
    pub(crate) graph: Arc<dyn GraphGateway>,
    pub(crate) partners: Arc<dyn PartnerStore>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Every read takes a slot of the tenant's read budget.
    pacer: Arc<dyn Pacer>,
    sleeper: Arc<dyn Sleeper>,
    /// The last good read and when it started.
    last: Arc<Mutex<Option<ListingRead>>>,
}

impl GraphListing {
    /// A listing over `graph`, checking holders in `partners`.
    pub(crate) fn new(
        graph: Arc<dyn GraphGateway>,
        partners: Arc<dyn PartnerStore>,
        clock: Arc<dyn Clock>,
        pacer: Arc<dyn Pacer>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Self {
        Self {
            graph,
            partners,
            clock,
            pacer,
            sleeper,
            last: Arc::default(),
        }
    }

    /// Waits for a read slot that starts by `latest`.
    ///
    /// # Errors
    /// A transient [`GraphReadError`] when there is none (nothing was sent).
    async fn read_slot(&self, latest: Timestamp) -> Result<(), GraphReadError> {
        let not_read = |why: String| {
            GraphReadError::Transient(GraphResponseMeta {
                error_message: Some(why),
                ..GraphResponseMeta::default()
            })
        };
        match wait_for_slot(
            self.pacer.as_ref(),
            self.clock.as_ref(),
            self.sleeper.as_ref(),
            Budget::Read,
            latest,
        )
        .await
        {
            Ok(Booking::Booked(_)) => Ok(()),
            Ok(Booking::NoneBefore { .. }) => Err(not_read(
                "not read: the tenant's read budget has no slot within the lease".to_owned(),
            )),
            Err(error) => Err(not_read(format!("not read: {error}"))),
        }
    }

    /// Graph's list as fresh as `row` needs: the last good read when it was made at or after
    /// the row became due, a new read otherwise, on a read slot that starts by `latest` (the
    /// Graph client paces the pages after the first).
    pub(crate) async fn read_for(&self, row: &ClaimedRow, latest: Timestamp) -> Listing {
        let cached = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((read_at, remote)) = cached
            && read_at >= row.due_at
        {
            return Ok(remote);
        }
        self.read_slot(latest).await?;
        let read_at = self.clock.now();
        let remote = Arc::new(self.graph.list_partners().await?);
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last
            .as_ref()
            .is_none_or(|(previous, _)| *previous < read_at)
        {
            *last = Some((read_at, remote.clone()));
        }
        Ok(remote)
    }

    /// The objects of `remote` named like `row`'s partner that no other partner of ours holds.
    ///
    /// # Errors
    /// When the store cannot say who holds an object.
    pub(crate) async fn find(
        &self,
        row: &ClaimedRow,
        remote: &[RemotePartner],
    ) -> Result<Match, StoreError> {
        let mut ids = Vec::new();
        for candidate in Self::named_like(row, remote) {
            // An object another partner holds keeps its name until that partner's rename
            // reaches Graph; it is never this partner's.
            if !self
                .partners
                .graph_id_held_by_another(&candidate.graph_id, row.partner.id())
                .await?
            {
                ids.push(candidate.graph_id.clone());
            }
        }
        Ok(Match::of(ids))
    }

    /// The objects of `remote` named like `row`'s partner, whoever holds them: how an update or
    /// delete finds the object when its id was never learnt.
    pub(crate) fn find_by_name(row: &ClaimedRow, remote: &[RemotePartner]) -> Match {
        Match::of(
            Self::named_like(row, remote)
                .map(|candidate| candidate.graph_id.clone())
                .collect(),
        )
    }

    fn named_like<'a>(
        row: &'a ClaimedRow,
        remote: &'a [RemotePartner],
    ) -> impl Iterator<Item = &'a RemotePartner> {
        remote.iter().filter(|candidate| {
            row.natural_key
                .matches_reported(candidate.display_name.as_deref())
        })
    }
}
