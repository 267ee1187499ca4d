//! [`PartnerCache`]: the partners lately read by id, kept in memory so that a repeated
//! `GET …/{id}` costs no trip to a reader connection's thread.
//!
//! A read by id is one statement on a reader, and that statement is one message to the
//! connection's thread and a wake-up back, which is most of what the read costs
//! (`docs/benchmarks.md`, "Reads"). The cache answers repeated reads of the same partner from
//! memory, and is never stale:
//! - every write of the store goes through this process's writer, and the store's writes that
//!   change what a read by id returns (an update, a delete, the undo of a refused create)
//!   [`forget`](PartnerCache::forget) the partner once their transaction has committed, before
//!   they answer their caller, so a caller that wrote then reads sees its write;
//! - a read that missed fills the cache only if nothing was forgotten since it began
//!   ([`ticket`](PartnerCache::ticket), [`fill`](PartnerCache::fill)): a read that began before a
//!   commit may have seen the old version, and must not put it back after the forget;
//! - it holds at most [`CAPACITY`] partners, the least recently read evicted first.
//!
//! Only the SQLite store has it: the file has one writing process. PostgreSQL serves several
//! replicas, whose writes this process would not see.

use std::sync::Mutex;

use cmp_domain::{Partner, PartnerId};
use hashlink::LruCache;

/// Most partners the cache holds: a few hundred bytes each, so well under a few MiB.
pub(crate) const CAPACITY: usize = 4096;

/// The cache. Shared by the store's ports through [`Connections`](crate::connections::Connections).
#[derive(Debug)]
pub(crate) struct PartnerCache {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    partners: LruCache<PartnerId, Partner>,
    /// Bumped by every forget; a fill whose ticket is older is dropped.
    forgets: u64,
}

/// What a read that missed holds while it reads the store: the count of forgets when it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

impl PartnerCache {
    /// An empty cache of at most `capacity` partners.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                partners: LruCache::new(capacity),
                forgets: 0,
            }),
        }
    }

    /// The partner `id` as last read, if the cache holds it.
    pub(crate) fn get(&self, id: PartnerId) -> Option<Partner> {
        self.lock().partners.get(&id).cloned()
    }

    /// Taken before a read of the store whose result may [`fill`](Self::fill) the cache.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.lock().forgets)
    }

    /// Keeps `partner`, read with `ticket`, unless a partner was forgotten since the ticket was
    /// taken (the read may have seen a version older than a committed write).
    pub(crate) fn fill(&self, ticket: Ticket, partner: &Partner) {
        let mut state = self.lock();
        if state.forgets == ticket.0 {
            state.partners.insert(partner.id(), partner.clone());
        }
    }

    /// Drops the partner `id`, after a committed (or failed) write that may have changed it.
    pub(crate) fn forget(&self, id: PartnerId) {
        let mut state = self.lock();
        state.partners.remove(&id);
        state.forgets += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between any two statements, so a panic elsewhere while the
        // lock was held leaves nothing half-done.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use cmp_domain::{DisplayName, NewPartner, PartnerState, Platforms, Timestamp};
    use uuid::Uuid;

    use super::*;

    fn partner(name: &str) -> Partner {
        Partner::restore(
            PartnerId::from_uuid(Uuid::now_v7()),
            NewPartner {
                display_name: DisplayName::parse(name).expect("a valid name"),
                state: PartnerState::Unknown,
                last_heartbeat: Timestamp::MIN,
                platforms: Platforms::none(),
            },
        )
    }

    #[test]
    fn a_filled_partner_is_served_until_it_is_forgotten() {
        let cache = PartnerCache::new(8);
        let alpha = partner("alpha");
        assert_eq!(cache.get(alpha.id()), None);
        cache.fill(cache.ticket(), &alpha);
        assert_eq!(cache.get(alpha.id()), Some(alpha.clone()));
        cache.forget(alpha.id());
        assert_eq!(cache.get(alpha.id()), None);
    }

    #[test]
    fn a_read_that_began_before_a_forget_does_not_fill() {
        let cache = PartnerCache::new(8);
        let alpha = partner("alpha");
        let other = partner("other");
        let before = cache.ticket();
        // A write of any partner commits and forgets while the read is on its way.
        cache.forget(other.id());
        cache.fill(before, &alpha);
        assert_eq!(cache.get(alpha.id()), None);
        // A read that began after it fills.
        cache.fill(cache.ticket(), &alpha);
        assert_eq!(cache.get(alpha.id()), Some(alpha));
    }

    #[test]
    fn the_least_recently_read_partner_goes_first_when_the_cache_is_full() {
        let cache = PartnerCache::new(2);
        let (a, b, c) = (partner("a"), partner("b"), partner("c"));
        cache.fill(cache.ticket(), &a);
        cache.fill(cache.ticket(), &b);
        assert!(cache.get(a.id()).is_some());
        cache.fill(cache.ticket(), &c);
        assert_eq!(cache.get(b.id()), None);
        assert!(cache.get(a.id()).is_some());
        assert!(cache.get(c.id()).is_some());
    }
}
