//! Reconciliation: matching a partner with the objects Graph holds, by natural key, when our
//! own record cannot say whether Graph has it (an unknown outcome, an id never learnt).
//!
//! Graph assigns its own ids and offers no idempotency key for this resource, so the display
//! name (unique per tenant, compared as a [`NaturalKey`](cmp_domain::NaturalKey)) is the only
//! handle. An object another partner of ours holds is never adopted, whatever its name says.
//!
//! A row is reconciled with one read when Graph can be trusted to answer a query by name
//! (`$filter=displayName eq '…'`): the answer is checked (every object carries the name, no
//! further page), and an empty answer is believed only once the filter has been seen finding
//! an object by name, because Intune's `$filter` is unreliable on some collections. Otherwise
//! the whole collection is walked, once for every row that waits on it.

use std::sync::{Arc, Mutex, PoisonError};

use cmp_domain::Timestamp;

use crate::pacing::wait_for_slot;
use crate::ports::{
    Booking, Budget, ClaimedRow, Clock, GraphGateway, GraphReadError, GraphResponseMeta,
    NamedPartners, Pacer, PartnerStore, RemotePartner, Sleeper, StoreError,
};

/// Graph's list as read for a pass.
pub(crate) type Listing = Result<Arc<Vec<RemotePartner>>, GraphReadError>;

/// A good read of Graph's list and when it started.
type ListingRead = (Timestamp, Arc<Vec<RemotePartner>>);

/// What this process has learnt of Graph's `$filter` on display names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum FilterTrust {
    /// Not seen working yet: a match is believed, an empty answer is checked by the walk.
    #[default]
    Untested,
    /// Seen finding an object by name, and only objects of that name: every answer is believed.
    Verified,
    /// Seen answering wrong (another name, more pages, a refusal): not asked again.
    Refuted,
}

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
    /// Whether to ask Graph by name first.
    by_name: bool,
    /// What the answers by name have shown so far.
    trust: Arc<Mutex<FilterTrust>>,
}

impl GraphListing {
    /// A listing over `graph`, checking holders in `partners`.
    pub(crate) fn new(
        graph: Arc<dyn GraphGateway>,
        partners: Arc<dyn PartnerStore>,
        clock: Arc<dyn Clock>,
        pacer: Arc<dyn Pacer>,
        sleeper: Arc<dyn Sleeper>,
        by_name: bool,
    ) -> Self {
        Self {
            graph,
            partners,
            clock,
            pacer,
            sleeper,
            last: Arc::default(),
            by_name,
            trust: Arc::default(),
        }
    }

    /// The objects Graph holds named like `row`'s partner: by one query by name where that can
    /// be trusted, else from the walk of the collection (`listing`, this pass's, read on first
    /// need and shared by the rows of the pass). Every read starts by `latest`.
    ///
    /// # Errors
    /// The read's [`GraphReadError`]; nothing was learnt and the row waits.
    pub(crate) async fn named(
        &self,
        row: &ClaimedRow,
        latest: Timestamp,
        listing: &mut Option<Listing>,
    ) -> Result<Vec<RemotePartner>, GraphReadError> {
        let trust = *self.trust.lock().unwrap_or_else(PoisonError::into_inner);
        if self.by_name && trust != FilterTrust::Refuted {
            self.read_slot(latest).await?;
            match self
                .graph
                .find_partners_named(row.partner.display_name().as_str())
                .await
            {
                Ok(answer) => {
                    if let Some(found) = self.judge_answer(row, answer, trust) {
                        return Ok(found);
                    }
                }
                Err(GraphReadError::Refused(meta)) => {
                    tracing::warn!(status = ?meta.status, code = ?meta.error_code, "Graph refused the query by display name; reconciling by walking the collection from now on");
                    self.set_trust(FilterTrust::Refuted);
                }
                Err(error) => return Err(error),
            }
        }
        if listing.is_none() {
            *listing = Some(self.read_for(row, latest).await);
        }
        let remote = match listing.as_ref() {
            Some(Ok(remote)) => remote.clone(),
            Some(Err(error)) => return Err(error.clone()),
            None => Arc::default(),
        };
        let found: Vec<RemotePartner> = Self::named_like(row, &remote).cloned().collect();
        if !found.is_empty() && trust == FilterTrust::Untested && self.by_name {
            // The walk found what the query by name did not (or was not asked): the filter
            // may be missing objects, so it is not believed when it answers nothing.
            tracing::debug!(
                "the walk of the collection found the name; the query by name stays unverified"
            );
        }
        Ok(found)
    }

    /// Checks Graph's answer by name: `Some` when it can be believed, `None` when the walk
    /// must decide.
    fn judge_answer(
        &self,
        row: &ClaimedRow,
        answer: NamedPartners,
        trust: FilterTrust,
    ) -> Option<Vec<RemotePartner>> {
        let all_named = answer.partners.iter().all(|candidate| {
            row.natural_key
                .matches_reported(candidate.display_name.as_deref())
        });
        if answer.more || !all_named {
            tracing::warn!(
                more = answer.more,
                "Graph's answer by display name held other names or more pages: the filter is not applied on this collection; reconciling by walking it from now on"
            );
            self.set_trust(FilterTrust::Refuted);
            return None;
        }
        if !answer.partners.is_empty() {
            if trust == FilterTrust::Untested {
                tracing::info!(
                    "Graph's query by display name found an object by name; believed from now on"
                );
                self.set_trust(FilterTrust::Verified);
            }
            return Some(answer.partners);
        }
        (trust == FilterTrust::Verified).then(Vec::new)
    }

    fn set_trust(&self, trust: FilterTrust) {
        let mut current = self.trust.lock().unwrap_or_else(PoisonError::into_inner);
        // Refuted stays refuted.
        if *current != FilterTrust::Refuted {
            *current = trust;
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

#[cfg(test)]
mod tests {
    use cmp_domain::{NaturalKey, Timestamp};
    use uuid::Uuid;

    use super::*;
    use crate::ports::{MockGraphGateway, MockPartnerStore, Operation, WaitingState};
    use crate::test_support::{
        NoWait, fixed_clock, now, partner_named, seconds_after_now, unspaced_pacer,
    };

    const NAME: &str = "Contoso Compliance";

    fn unknown_row() -> ClaimedRow {
        ClaimedRow {
            outbox_id: Uuid::from_u128(0xb0),
            operation: Operation::Create,
            in_graph: None,
            partner_deleted: false,
            partner: partner_named(0xa0, NAME),
            natural_key: NaturalKey::fold(NAME),
            previous_state: WaitingState::Unknown,
            attempts: 1,
            attempts_in_window: 1,
            first_attempt_at: Some(now()),
            created_at: now(),
            due_at: now(),
        }
    }

    fn remote(graph_id: &str, name: &str) -> RemotePartner {
        RemotePartner {
            graph_id: graph_id.to_owned(),
            display_name: Some(name.to_owned()),
        }
    }

    fn answer(partners: Vec<RemotePartner>, more: bool) -> Result<NamedPartners, GraphReadError> {
        Ok(NamedPartners { partners, more })
    }

    fn listing_over(graph: MockGraphGateway) -> GraphListing {
        GraphListing::new(
            Arc::new(graph),
            Arc::new(MockPartnerStore::new()),
            Arc::new(fixed_clock()),
            unspaced_pacer(),
            Arc::new(NoWait),
            true,
        )
    }

    fn latest() -> Timestamp {
        seconds_after_now(60)
    }

    /// Reconciles `unknown_row()` with a listing of its own pass.
    async fn named(listings: &GraphListing) -> Vec<RemotePartner> {
        listings
            .named(&unknown_row(), latest(), &mut None)
            .await
            .expect("Graph answers")
    }

    #[tokio::test]
    async fn a_match_by_name_is_believed_and_verifies_the_filter_so_that_an_empty_answer_is_too() {
        let mut graph = MockGraphGateway::new();
        let mut answers = vec![
            answer(Vec::new(), false),
            answer(vec![remote("g1", NAME)], false),
        ];
        graph
            .expect_find_partners_named()
            .times(2)
            .returning(move |_| answers.pop().expect("two answers"));
        graph.expect_list_partners().never();
        let listings = listing_over(graph);

        assert_eq!(named(&listings).await, vec![remote("g1", NAME)]);
        assert_eq!(named(&listings).await, Vec::new(), "one read, no walk");
    }

    #[tokio::test]
    async fn an_empty_answer_before_the_filter_was_seen_working_is_checked_by_the_walk() {
        let mut graph = MockGraphGateway::new();
        graph
            .expect_find_partners_named()
            .times(1)
            .returning(|_| answer(Vec::new(), false));
        graph
            .expect_list_partners()
            .times(1)
            .returning(|| Ok(vec![remote("g0", "Other"), remote("g1", NAME)]));
        let listings = listing_over(graph);

        assert_eq!(named(&listings).await, vec![remote("g1", NAME)]);
    }

    #[tokio::test]
    async fn an_unfiltered_or_refused_answer_turns_the_query_by_name_off_for_good() {
        for (case, first) in [
            (
                "another name in the answer",
                answer(vec![remote("g0", "Other"), remote("g1", NAME)], false),
            ),
            (
                "more pages announced",
                answer(vec![remote("g1", NAME)], true),
            ),
            (
                "filter refused",
                Err(GraphReadError::Refused(GraphResponseMeta::default())),
            ),
        ] {
            let mut graph = MockGraphGateway::new();
            graph
                .expect_find_partners_named()
                .times(1)
                .return_once(move |_| first);
            // One walk: the second row, due no later than it was read, is served by it too.
            graph
                .expect_list_partners()
                .times(1)
                .returning(|| Ok(vec![remote("g0", "Other"), remote("g1", NAME)]));
            let listings = listing_over(graph);

            assert_eq!(named(&listings).await, vec![remote("g1", NAME)], "{case}");
            assert_eq!(
                named(&listings).await,
                vec![remote("g1", NAME)],
                "{case}: the second row is not asked about by name"
            );
        }
    }
}
