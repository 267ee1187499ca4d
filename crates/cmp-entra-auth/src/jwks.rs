//! Signing keys: a parsed JSON Web Key Set ([`KeySet`]) and the per-tenant cache of the keys
//! Entra ID publishes ([`RemoteJwks`]): check 4 of `docs/auth.md` ("The checks, in order").
//!
//! # Cache rules, per tenant
//! - The first token of a tenant fetches its keys: the OpenID metadata
//!   (`{authority}/{tid}/v2.0/.well-known/openid-configuration`, or without `/v2.0` for v1
//!   tokens) names the `jwks_uri`, which is then read.
//! - The keys are fetched again once `jwks_refresh_seconds` have passed since the last good
//!   fetch, when the next token of that tenant arrives.
//! - A token whose `kid` is not in the set causes one extra fetch, at most once per
//!   `unknown_kid_refetch_seconds`: that is how a rotated key is picked up before the refresh.
//! - A failed fetch keeps the last good set. It is not retried for
//!   [`FAILED_FETCH_BACKOFF`], so an outage at Entra ID costs one outbound request
//!   per tenant per period, not one per inbound request.
//! - Time comes from the injected [`Clock`], so tests move it instead of sleeping.
//! - A fetch that drops a key some tenant's set held starts a new key generation
//!   ([`RemoteJwks::generation`]): tokens verified under an older one are verified again
//!   (see `verified_tokens`), so a withdrawn key stops being honoured for cached tokens too.
//!
//! The cache holds one entry per allowed tenant at most: tenants outside the allow-list are
//! refused before a key is looked up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cmp_application::Clock;
use cmp_domain::Timestamp;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use uuid::Uuid;

use crate::settings::{ResolvedSettings, TokenVersion, checked_url};

/// Least time between a failed fetch and the next attempt for the same tenant, in seconds.
pub(crate) const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(30);

/// Largest metadata or key-set document read, in bytes. Entra's key sets are a few KiB.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Smallest RSA modulus accepted, in bytes (2048 bits): Entra ID signs with 2048-bit keys.
const MIN_MODULUS_BYTES: usize = 256;

/// The RSA signing keys of one key set, by `kid`.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, Arc<DecodingKey>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One entry of a JWKS, as far as RSA signature keys need it.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl KeySet {
    /// Reads the RSA signature keys of a JWKS document (`{"keys": [...]}`). Entries that are
    /// not RSA signing keys usable with RS256 (other key types, `use: enc`, another `alg`, no
    /// `kid`, a modulus under 2048 bits) are skipped: a set may legitimately hold them.
    ///
    /// # Errors
    /// When the document is not a key set or holds no usable key.
    pub(crate) fn from_jwks(document: &serde_json::Value) -> Result<Self, String> {
        let entries = document
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| "the key set has no 'keys' array".to_owned())?;
        let mut keys = HashMap::new();
        for entry in entries {
            let Ok(jwk) = RawJwk::deserialize(entry) else {
                continue;
            };
            if let Some((kid, key)) = usable_rsa_key(jwk) {
                // A repeated kid keeps its first key; Entra ID never repeats one.
                keys.entry(kid).or_insert_with(|| Arc::new(key));
            }
        }
        if keys.is_empty() {
            return Err("the key set holds no RSA signing key".into());
        }
        Ok(Self { keys })
    }

    /// The key with this `kid`, if the set has it.
    pub(crate) fn get(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys.get(kid).cloned()
    }

    /// Whether this set lacks a `kid` that `older` held: a key was withdrawn. Entra ID names
    /// its keys by thumbprint, so a key is never replaced under the same `kid`.
    fn withdraws_a_key_of(&self, older: &KeySet) -> bool {
        older.keys.keys().any(|kid| !self.keys.contains_key(kid))
    }
}

fn usable_rsa_key(jwk: RawJwk) -> Option<(String, DecodingKey)> {
    if jwk.kty.as_deref() != Some("RSA") {
        return None;
    }
    if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if jwk.alg.as_deref().is_some_and(|a| a != "RS256") {
        return None;
    }
    let kid = jwk.kid.filter(|kid| !kid.is_empty())?;
    let (n, e) = (jwk.n?, jwk.e?);
    let modulus = URL_SAFE_NO_PAD.decode(&n).ok()?;
    let significant = modulus.iter().skip_while(|b| **b == 0).count();
    if significant < MIN_MODULUS_BYTES {
        return None;
    }
    let key = DecodingKey::from_rsa_components(&n, &e).ok()?;
    Some((kid, key))
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyLookupError {
    /// The tenant's key set is known but has no such `kid` (and a refetch is not due).
    UnknownKid,
    /// The tenant's keys could not be fetched and none are cached.
    Unavailable,
}

/// What the cache knows about one tenant.
#[derive(Debug, Default)]
struct TenantKeys {
    /// The last good key set.
    keys: Option<KeySet>,
    /// When the last good set was fetched; the refresh schedule runs from here.
    fetched_at: Option<Timestamp>,
    /// When the last refetch for an unknown `kid` happened, for its throttle.
    unknown_kid_refetch_at: Option<Timestamp>,
    /// When the last fetch failed, for the back-off.
    failed_at: Option<Timestamp>,
}

impl TenantKeys {
    fn refresh_due(&self, now: Timestamp, refresh: Duration) -> bool {
        match (&self.keys, self.fetched_at) {
            (Some(_), Some(fetched_at)) => now >= fetched_at.saturating_add(refresh),
            _ => true,
        }
    }

    fn backing_off(&self, now: Timestamp) -> bool {
        self.failed_at
            .is_some_and(|failed_at| now < failed_at.saturating_add(FAILED_FETCH_BACKOFF))
    }

    fn unknown_kid_refetch_allowed(&self, now: Timestamp, period: Duration) -> bool {
        self.unknown_kid_refetch_at
            .is_none_or(|at| now >= at.saturating_add(period))
    }

    fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys.as_ref().and_then(|keys| keys.get(kid))
    }
}

/// The `jwks_uri` of an OpenID metadata document; nothing else in it is used.
#[derive(Deserialize)]
struct OpenIdConfiguration {
    jwks_uri: String,
}

/// Per-tenant cache of the signing keys Entra ID publishes.
pub(crate) struct RemoteJwks {
    /// Client with the fetch timeout and no redirects.
    http: reqwest::Client,
    /// The authority without a trailing `/`.
    authority: String,
    /// Decides the metadata path (`/v2.0` or not).
    token_version: TokenVersion,
    /// Refresh period.
    refresh: Duration,
    /// Unknown-`kid` refetch throttle.
    unknown_kid_refetch: Duration,
    /// One entry per tenant seen. Each entry has its own async lock, held across a fetch, so
    /// that concurrent tokens of a tenant whose keys are being fetched wait for that one
    /// fetch instead of starting their own. The outer lock is never held across an await.
    tenants: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<TenantKeys>>>>,
    /// Bumped after a fetch withdrew a key, inside the tenant's lock and after the new set is
    /// in place: a token whose key was looked up before the change was verified under the
    /// older generation.
    generation: AtomicU64,
    /// Where "now" comes from.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("authority", &self.authority)
            .field("token_version", &self.token_version)
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Builds the cache and its HTTP client.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (no TLS backend).
    pub(crate) fn new(settings: &ResolvedSettings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        // The workspace builds reqwest without a crypto provider of its own (aws-lc-rs, a long
        // C build); ring becomes the process's. An error means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(settings.fetch_timeout)
            .timeout(settings.fetch_timeout)
            // The metadata names the key-set URL; nothing should move it silently.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client for Entra ID signing keys")?;
        Ok(Self {
            http,
            authority: settings.authority.clone(),
            token_version: settings.token_version,
            refresh: settings.jwks_refresh,
            unknown_kid_refetch: settings.unknown_kid_refetch,
            tenants: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            clock,
        })
    }

    /// The key generation: it changes whenever a fetch withdrew a key from a tenant's set. Read
    /// it before looking a key up, so that a withdrawal during a verification marks the result
    /// as of the older generation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The key `kid` of `tenant`, fetching the tenant's keys when the rules in the module
    /// docs say so.
    ///
    /// # Errors
    /// [`KeyLookupError::UnknownKid`] when the set lacks `kid`; [`KeyLookupError::Unavailable`]
    /// when no set could ever be fetched for the tenant.
    pub(crate) async fn key(
        &self,
        tenant: Uuid,
        kid: &str,
    ) -> Result<Arc<DecodingKey>, KeyLookupError> {
        let slot = {
            // A poisoned lock only means another thread panicked while inserting; the map
            // itself is still consistent.
            let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(tenants.entry(tenant).or_default())
        };
        let mut state = slot.lock().await;

        let now = self.clock.now();
        let mut fetched = false;
        if state.refresh_due(now, self.refresh) && !state.backing_off(now) {
            self.fetch_into(&mut state, tenant, now).await;
            fetched = true;
        }
        if let Some(key) = state.key(kid) {
            return Ok(key);
        }

        // A just-fetched set is as fresh as a refetch would be.
        if !fetched
            && state.keys.is_some()
            && !state.backing_off(now)
            && state.unknown_kid_refetch_allowed(now, self.unknown_kid_refetch)
        {
            tracing::info!(
                entra.tenant_id = %tenant,
                "unknown signing key id, fetching the tenant's keys again"
            );
            state.unknown_kid_refetch_at = Some(now);
            self.fetch_into(&mut state, tenant, now).await;
            if let Some(key) = state.key(kid) {
                return Ok(key);
            }
        }

        if state.keys.is_some() {
            Err(KeyLookupError::UnknownKid)
        } else {
            Err(KeyLookupError::Unavailable)
        }
    }

    /// Fetches the tenant's keys and stores them; on failure keeps the old set and starts the
    /// back-off.
    async fn fetch_into(&self, state: &mut TenantKeys, tenant: Uuid, now: Timestamp) {
        match self.fetch(tenant).await {
            Ok(keys) => {
                tracing::debug!(entra.tenant_id = %tenant, "fetched the tenant's signing keys");
                let withdrawn = state
                    .keys
                    .as_ref()
                    .is_some_and(|older| keys.withdraws_a_key_of(older));
                state.keys = Some(keys);
                state.fetched_at = Some(now);
                state.failed_at = None;
                if withdrawn {
                    tracing::info!(
                        entra.tenant_id = %tenant,
                        "a signing key was withdrawn; tokens it signed are verified again"
                    );
                    self.generation.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) => {
                tracing::warn!(
                    entra.tenant_id = %tenant,
                    entra.keys_cached = state.keys.is_some(),
                    error.message = %e,
                    error.cause_chain = ?e,
                    "fetching the tenant's signing keys failed; keeping the last good set"
                );
                state.failed_at = Some(now);
            }
        }
    }

    async fn fetch(&self, tenant: Uuid) -> anyhow::Result<KeySet> {
        // The tenant is a parsed GUID, so it cannot change the shape of the path.
        let tenant = tenant.hyphenated();
        let metadata_url = match self.token_version {
            TokenVersion::V2 => format!(
                "{}/{tenant}/v2.0/.well-known/openid-configuration",
                self.authority
            ),
            TokenVersion::V1 => format!(
                "{}/{tenant}/.well-known/openid-configuration",
                self.authority
            ),
        };
        let metadata: OpenIdConfiguration = serde_json::from_slice(
            &self
                .get(&metadata_url)
                .await
                .context("reading the OpenID metadata")?,
        )
        .context("reading jwks_uri from the OpenID metadata")?;
        let jwks_url = checked_url(&metadata.jwks_uri, "jwks_uri").map_err(|e| anyhow!(e))?;
        let jwks: serde_json::Value = serde_json::from_slice(
            &self
                .get(jwks_url.as_str())
                .await
                .context("reading the key set")?,
        )
        .context("the key set is not JSON")?;
        KeySet::from_jwks(&jwks).map_err(|e| anyhow!(e))
    }

    /// GETs `url` and returns its body, refusing non-2xx answers and oversized bodies.
    async fn get(&self, url: &str) -> anyhow::Result<Vec<u8>> {
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("GET {url} answered {status}");
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("reading the body of GET {url}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                bail!("GET {url} answered more than {MAX_DOCUMENT_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2048-bit modulus of the right shape (a leading one bit, then anything), base64url.
    fn modulus() -> String {
        let mut bytes = vec![0xA5_u8; 256];
        bytes[0] = 0xC1;
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn only_rsa_signing_keys_for_rs256_are_kept() {
        let n = modulus();
        let short_n = URL_SAFE_NO_PAD.encode([0xC1_u8; 128]);
        let document = serde_json::json!({"keys": [
            {"kty": "RSA", "use": "sig", "kid": "good", "n": n, "e": "AQAB", "x5t": "ignored"},
            {"kty": "RSA", "kid": "no-use-no-alg", "n": n, "e": "AQAB"},
            {"kty": "RSA", "use": "enc", "kid": "encryption", "n": n, "e": "AQAB"},
            {"kty": "RSA", "alg": "RS512", "kid": "other-alg", "n": n, "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "sig", "n": n, "e": "AQAB"},
            {"kty": "RSA", "use": "sig", "kid": "1024-bit", "n": short_n, "e": "AQAB"},
            "not an object",
        ]});

        let set = KeySet::from_jwks(&document).expect("has usable keys");

        assert!(set.get("good").is_some());
        assert!(set.get("no-use-no-alg").is_some());
        for skipped in ["encryption", "other-alg", "ec", "1024-bit"] {
            assert!(set.get(skipped).is_none(), "{skipped}");
        }
    }

    #[test]
    fn a_set_withdraws_a_key_when_it_lacks_a_kid_the_older_set_held() {
        let n = modulus();
        let set = |kids: &[&str]| {
            let keys: Vec<_> = kids
                .iter()
                .map(|kid| serde_json::json!({"kty": "RSA", "kid": kid, "n": n, "e": "AQAB"}))
                .collect();
            KeySet::from_jwks(&serde_json::json!({ "keys": keys })).expect("usable keys")
        };

        assert!(set(&["b"]).withdraws_a_key_of(&set(&["a", "b"])));
        assert!(!set(&["a", "b", "c"]).withdraws_a_key_of(&set(&["a", "b"])));
        assert!(!set(&["a"]).withdraws_a_key_of(&set(&["a"])));
    }

    #[test]
    fn a_document_without_usable_keys_is_refused() {
        for document in [
            serde_json::json!({}),
            serde_json::json!({"keys": []}),
            serde_json::json!({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}),
        ] {
            assert!(KeySet::from_jwks(&document).is_err(), "{document}");
        }
    }

    #[test]
    fn the_refresh_is_due_without_keys_and_after_the_period() {
        let t0 = Timestamp::from_unix_seconds(1_800_000_000, 0).expect("in range");
        let day = Duration::from_secs(86_400);
        let mut state = TenantKeys::default();
        assert!(state.refresh_due(t0, day));

        state.keys = Some(KeySet::default());
        state.fetched_at = Some(t0);

        assert!(!state.refresh_due(t0.saturating_add(day - Duration::from_secs(1)), day));
        assert!(state.refresh_due(t0.saturating_add(day), day));
    }

    #[test]
    fn a_failed_fetch_backs_off_for_the_documented_period() {
        let t0 = Timestamp::from_unix_seconds(1_800_000_000, 0).expect("in range");
        let state = TenantKeys {
            failed_at: Some(t0),
            ..TenantKeys::default()
        };

        assert!(
            state.backing_off(t0.saturating_add(FAILED_FETCH_BACKOFF - Duration::from_secs(1)))
        );
        assert!(!state.backing_off(t0.saturating_add(FAILED_FETCH_BACKOFF)));
    }
}
