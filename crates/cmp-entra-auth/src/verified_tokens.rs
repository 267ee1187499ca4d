//! [`VerifiedTokens`]: the callers of tokens that passed every check, so that the same token
//! presented again is not verified again.
//!
//! An RSA signature check costs far more than the rest of a read request (the `GET` by id
//! spent about a fifth of its time in it), and a client sends the same token with every request
//! until it renews it. Only successes are kept: a refused token is checked in full each time,
//! because the keys may have been refreshed in between.
//!
//! # What a hit proves
//! - The key is a SHA-256 of the whole token string (header, payload and signature). A token
//!   that differs in any byte, including a forged signature over a payload seen before, has
//!   another digest and is verified in full.
//! - A token accepted once stays acceptable until it expires, or until the key that signed it
//!   is withdrawn: the tenant allow-list, the audiences, the version and the issuer are static
//!   configuration, and the token's own bytes cannot change. So an entry is served only
//!   - until its token's `exp` minus the leeway (never past `exp` itself, so a clock slightly
//!     ahead of the signer's cannot stretch a token's life), by the injected [`Clock`]; and
//!   - while the key sets are of the generation the entry was verified under: a fetch that
//!     drops a key from a tenant's set starts a new generation (see `jwks`), and every entry
//!     of an older one is verified again.
//!
//! # Bounds
//! At most `capacity` entries. A full cache first drops expired entries, then the entry that
//! expires soonest, so a flood of distinct valid tokens costs memory for `capacity` entries
//! and evicts the tokens about to be useless first. Refused tokens never take a slot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use cmp_application::{Caller, Clock};
use cmp_domain::Timestamp;
use sha2::{Digest as _, Sha256};

/// Entries kept at most by the service: a few MiB, and far more distinct live tokens than the
/// callers of one deployment hold at once.
pub(crate) const DEFAULT_CAPACITY: usize = 10_000;

/// SHA-256 of a whole token string.
type TokenDigest = [u8; 32];

/// One verified token.
#[derive(Debug)]
struct Entry {
    /// Who the token identified.
    caller: Caller,
    /// First instant the entry is no longer served.
    expires_at: Timestamp,
    /// Tie-breaker of `expires_at` in the eviction order.
    sequence: u64,
    /// The key-set generation the token was verified under.
    key_generation: u64,
}

/// The entries and their eviction order.
#[derive(Debug, Default)]
struct Entries {
    by_digest: HashMap<TokenDigest, Entry>,
    /// Soonest expiry first; `(expires_at, sequence)` is unique.
    by_expiry: BTreeMap<(Timestamp, u64), TokenDigest>,
    next_sequence: u64,
}

impl Entries {
    fn remove(&mut self, digest: &TokenDigest) {
        if let Some(entry) = self.by_digest.remove(digest) {
            self.by_expiry.remove(&(entry.expires_at, entry.sequence));
        }
    }

    /// Removes the entry that expires soonest; answers whether there was one.
    fn evict_soonest(&mut self) -> bool {
        match self.by_expiry.pop_first() {
            Some((_, digest)) => {
                self.by_digest.remove(&digest);
                true
            }
            None => false,
        }
    }

    fn drop_expired(&mut self, now: Timestamp) {
        while self
            .by_expiry
            .first_key_value()
            .is_some_and(|((expires_at, _), _)| *expires_at <= now)
        {
            self.evict_soonest();
        }
    }
}

/// The callers of verified tokens, by token digest; see the [module docs](self).
pub(crate) struct VerifiedTokens {
    capacity: usize,
    clock: Arc<dyn Clock>,
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// A token's digest, computed once per request and used for the lookup and the insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenKey(TokenDigest);

impl TokenKey {
    /// The digest of the whole `token` string.
    pub(crate) fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

impl VerifiedTokens {
    /// An empty cache of at most `capacity` entries, its expiry judged by `clock`.
    pub(crate) fn new(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            capacity,
            clock,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every change under the lock leaves both maps in step before anything can panic
        // (no user code runs under it), so a poisoned lock is still consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The caller of `key` if it was verified under `key_generation` and has not expired.
    pub(crate) fn get(&self, key: TokenKey, key_generation: u64) -> Option<Caller> {
        let now = self.clock.now();
        let mut entries = self.entries();
        let entry = entries.by_digest.get(&key.0)?;
        if entry.expires_at > now && entry.key_generation == key_generation {
            return Some(entry.caller.clone());
        }
        entries.remove(&key.0);
        None
    }

    /// Keeps `caller` for `key` until `valid_until` (exclusive), under `key_generation`. An
    /// entry already expired is not kept; neither is anything when the capacity is zero.
    pub(crate) fn insert(
        &self,
        key: TokenKey,
        caller: Caller,
        valid_until: Timestamp,
        key_generation: u64,
    ) {
        let now = self.clock.now();
        if valid_until <= now || self.capacity == 0 {
            return;
        }
        let mut entries = self.entries();
        entries.remove(&key.0);
        entries.drop_expired(now);
        while entries.by_digest.len() >= self.capacity && entries.evict_soonest() {}
        let sequence = entries.next_sequence;
        entries.next_sequence += 1;
        entries.by_expiry.insert((valid_until, sequence), key.0);
        entries.by_digest.insert(
            key.0,
            Entry {
                caller,
                expires_at: valid_until,
                sequence,
                key_generation,
            },
        );
    }

    /// How many entries are kept, expired ones not yet dropped included.
    pub(crate) fn len(&self) -> usize {
        self.entries().by_digest.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use cmp_application::CallerKind;

    use super::*;

    /// A clock moved by hand, in whole seconds.
    struct ManualClock(AtomicI64);

    impl Clock for ManualClock {
        fn now(&self) -> Timestamp {
            Timestamp::from_unix_seconds(self.0.load(Ordering::SeqCst), 0).expect("in range")
        }
    }

    const START: i64 = 1_800_000_000;

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(START)))
    }

    fn at(seconds_from_start: i64) -> Timestamp {
        Timestamp::from_unix_seconds(START + seconds_from_start, 0).expect("in range")
    }

    fn caller(object_id: &str) -> Caller {
        Caller {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            object_id: object_id.into(),
            app_id: None,
            kind: CallerKind::Application,
            permissions: vec!["DeviceManagementServiceConfig.ReadWrite.All".into()],
        }
    }

    fn cache(capacity: usize, clock: &Arc<ManualClock>) -> VerifiedTokens {
        VerifiedTokens::new(capacity, Arc::clone(clock) as Arc<dyn Clock>)
    }

    #[test]
    fn an_entry_is_served_until_its_end_and_not_from_then_on() {
        let clock = clock();
        let tokens = cache(10, &clock);
        let key = TokenKey::of("a.b.c");
        tokens.insert(key, caller("one"), at(100), 0);

        assert_eq!(tokens.get(key, 0), Some(caller("one")));
        clock.0.store(START + 99, Ordering::SeqCst);
        assert_eq!(tokens.get(key, 0), Some(caller("one")));
        clock.0.store(START + 100, Ordering::SeqCst);
        assert_eq!(tokens.get(key, 0), None);
        assert_eq!(tokens.len(), 0, "an expired entry is dropped when met");
    }

    #[test]
    fn a_token_differing_in_one_byte_is_another_key() {
        let clock = clock();
        let tokens = cache(10, &clock);
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiJ0In0.c2lnbmF0dXJl";
        tokens.insert(TokenKey::of(token), caller("one"), at(100), 0);
        let mut forged = token.to_owned().into_bytes();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let forged = String::from_utf8(forged).expect("still ASCII");

        assert_eq!(tokens.get(TokenKey::of(&forged), 0), None);
        let (without_signature, _) = token.rsplit_once('.').expect("three segments");
        assert_eq!(tokens.get(TokenKey::of(without_signature), 0), None);
        assert_eq!(tokens.get(TokenKey::of(token), 0), Some(caller("one")));
    }

    #[test]
    fn an_entry_of_an_older_key_generation_is_not_served() {
        let clock = clock();
        let tokens = cache(10, &clock);
        let key = TokenKey::of("a.b.c");
        tokens.insert(key, caller("one"), at(100), 3);

        assert_eq!(tokens.get(key, 4), None);
        assert_eq!(tokens.get(key, 3), None, "the stale entry was dropped");
    }

    #[test]
    fn a_full_cache_keeps_its_bound_and_evicts_the_soonest_expiring_entry() {
        let clock = clock();
        let tokens = cache(3, &clock);
        let keys: Vec<TokenKey> = (0..4).map(|i| TokenKey::of(&format!("t.{i}.s"))).collect();
        // Inserted out of expiry order: the second expires first.
        tokens.insert(keys[0], caller("0"), at(300), 0);
        tokens.insert(keys[1], caller("1"), at(100), 0);
        tokens.insert(keys[2], caller("2"), at(200), 0);

        tokens.insert(keys[3], caller("3"), at(400), 0);

        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.get(keys[1], 0), None);
        for (index, key) in keys.iter().enumerate().filter(|(i, _)| *i != 1) {
            assert_eq!(tokens.get(*key, 0), Some(caller(&index.to_string())));
        }
    }

    #[test]
    fn a_flood_of_distinct_tokens_never_grows_past_the_capacity() {
        let clock = clock();
        let tokens = cache(50, &clock);

        for i in 0..1_000_i64 {
            let key = TokenKey::of(&format!("t.{i}.s"));
            tokens.insert(key, caller("flood"), at(1_000 + i), 0);
            assert!(tokens.len() <= 50, "after {i}: {}", tokens.len());
        }

        // The 50 kept are those that expire last.
        assert!(tokens.get(TokenKey::of("t.999.s"), 0).is_some());
        assert!(tokens.get(TokenKey::of("t.950.s"), 0).is_some());
        assert!(tokens.get(TokenKey::of("t.949.s"), 0).is_none());
    }

    #[test]
    fn expired_entries_make_room_before_live_ones_are_evicted() {
        let clock = clock();
        let tokens = cache(2, &clock);
        let (old, live, new) = (
            TokenKey::of("old"),
            TokenKey::of("live"),
            TokenKey::of("new"),
        );
        tokens.insert(old, caller("old"), at(10), 0);
        tokens.insert(live, caller("live"), at(1_000), 0);
        clock.0.store(START + 10, Ordering::SeqCst);

        tokens.insert(new, caller("new"), at(2_000), 0);

        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.get(live, 0), Some(caller("live")));
        assert_eq!(tokens.get(new, 0), Some(caller("new")));
    }

    #[test]
    fn an_entry_already_expired_or_a_zero_capacity_keeps_nothing() {
        let clock = clock();
        let key = TokenKey::of("a.b.c");
        let tokens = cache(10, &clock);
        tokens.insert(key, caller("one"), at(0), 0);
        let none = cache(0, &clock);
        none.insert(key, caller("one"), at(100), 0);

        assert_eq!(tokens.len(), 0);
        assert_eq!(none.len(), 0);
    }
}
