//! [`EntraAuthenticator`]: the [`CallerAuthenticator`] that accepts Entra ID access tokens
//! issued for our API, and nothing else.
//!
//! # The checks, in order
//! Numbered as in `docs/auth.md` ("The checks, in order"); the code below refers to them by
//! these numbers.
//! 1. The token reads as a compact JWS of at most 16 KiB.
//! 2. Header `alg` is exactly `RS256` (never `none`, `HS*` or another RSA or EC
//!    variant) and `kid` is present.
//! 3. Pre-check of `tid` alone, on the UNVERIFIED payload: a GUID, not the
//!    personal-account tenant, in `allowed_tenants`. It runs before any key is looked up, so
//!    a token naming a tenant we do not serve causes no outbound request. It is repeated on
//!    the verified claims (step 9).
//! 4. The key: `kid` in that tenant's key set. The set is found through the tenant's
//!    OpenID metadata (`{authority}/{tid}/v2.0/.well-known/openid-configuration`, v1 without
//!    `/v2.0`) and its `jwks_uri`, cached per tenant, fetched again every
//!    `jwks_refresh_seconds`, and at most once per `unknown_kid_refetch_seconds` for an
//!    unknown `kid`. A failed fetch keeps the last good set and is retried no sooner than
//!    30 s later.
//! 5. The signature (jsonwebtoken, RS256 only).
//! 6. `exp` and `nbf`, both required, with `leeway_seconds`; `nbf` validation is
//!    switched on explicitly because jsonwebtoken leaves it off. These two use the system
//!    clock, as jsonwebtoken does; the injected [`Clock`] drives the key cache only.
//! 7. `aud` is one string, not Microsoft Graph's, and in `audiences`.
//! 8. `ver` is the pinned version, and `iss` is exactly `{authority}/{tid}/v2.0` (v2)
//!    or `https://sts.windows.net/{tid}/` (v1), with the token's own `tid`. The v2 issuer is
//!    built from the configured authority (in the public cloud, Entra's v2 issuer host is the
//!    authority's, `login.microsoftonline.com`), which also lets tests use a local authority.
//!    The v1 issuer host is fixed: `sts.windows.net` is the public cloud's; sovereign clouds
//!    use other hosts and are not supported for v1 tokens.
//! 9. `tid` again, now verified.
//!
//! jsonwebtoken also checks `aud` and `iss` itself; when it refuses one of them, the reason is
//! taken from the checks above so that the reason follows their order (the order callers and
//! tests see in `docs/auth.md`).
//!
//! The caller is then `tid` + `oid` (or `sub`), never a name or e-mail claim, which can change
//! and be reused (`docs/auth.md`, "The caller"). Permissions are returned as granted; whether
//! they suffice is for the use case or HTTP layer to decide.
//!
//! A token that passed every check is remembered (by the SHA-256 of the whole token) until
//! shortly before it expires, so the same token presented again skips the checks above; see
//! `verified_tokens` for what a remembered token proves and for the bounds.
//!
//! Refusal reasons are short fixed phrases ("token expired", "unknown signing key", ...):
//! they never contain the token or any value taken from it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cmp_application::{AuthenticationError, Caller, CallerAuthenticator, CallerKind, Clock};
use cmp_domain::Timestamp;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use uuid::Uuid;

use crate::claims::{Audience, EntraClaims, ParseError, UnverifiedToken};
use crate::jwks::{KeyLookupError, KeySet, RemoteJwks};
use crate::settings::{
    EntraAuthSettings, ResolvedSettings, TokenVersion, is_graph_audience, parse_guid,
    personal_account_tenant,
};
use crate::verified_tokens::{self, TokenKey, VerifiedTokens};

/// The only signing algorithm accepted; Entra ID signs access tokens with it.
const ACCEPTED_ALGORITHM: &str = "RS256";

/// Why an [`EntraAuthenticator`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A settings key is wrong; the message names it.
    #[error("{0}")]
    InvalidSettings(String),
    /// The static key set given for development is not a usable JWKS.
    #[error("the static key set is unusable: {0}")]
    InvalidKeySet(String),
    /// The HTTP client for fetching keys could not be built.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Where the signing keys come from.
#[derive(Debug)]
enum KeySource {
    /// Entra ID's published keys, per tenant, fetched and cached.
    Remote(RemoteJwks),
    /// One fixed key set for every tenant: local development ([`crate::DevelopmentSigner`]).
    Static(KeySet),
}

/// Verifies Entra ID access tokens issued for our API and turns them into a [`Caller`].
///
/// Build it with [`EntraAuthenticator::new`] (keys from Entra ID) or
/// [`EntraAuthenticator::with_static_keys`] (a local key set, for development); both run the
/// very same checks, listed in the [module docs](self).
#[derive(Debug)]
pub struct EntraAuthenticator {
    /// The checked settings.
    settings: ResolvedSettings,
    /// jsonwebtoken's validation for the signature and `exp`/`nbf` (plus `aud`/`iss` again).
    /// The issuer varies with the token's `tid`, so it is cloned and completed per token.
    validation: Validation,
    /// The signing keys.
    keys: KeySource,
    /// Callers of the tokens that passed every check, until shortly before they expire.
    verified: VerifiedTokens,
    /// Signatures checked so far (tokens served from `verified` are not checked again).
    signature_checks: AtomicU64,
}

/// A token that passed every check: who it identifies and when it expires.
struct Verified {
    caller: Caller,
    /// The verified `exp`, in seconds since the Unix epoch.
    expires: u64,
}

/// A refusal, with its fixed, safe reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    MissingToken,
    TooLarge,
    Malformed,
    Algorithm,
    MissingKid,
    MissingTenant,
    TenantNotGuid,
    PersonalAccount,
    TenantNotAllowed,
    UnknownKey,
    KeysUnavailable,
    Signature,
    Expired,
    NotYetValid,
    MissingExp,
    MissingNbf,
    MissingAudience,
    MissingIssuer,
    GraphAudience,
    Audience,
    Version,
    Issuer,
    MissingObjectId,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Self::MissingToken => "missing bearer token",
            Self::TooLarge => "token too large",
            Self::Malformed => "token malformed",
            Self::Algorithm => "algorithm not accepted",
            Self::MissingKid => "missing key id",
            Self::MissingTenant => "missing tenant id",
            Self::TenantNotGuid => "tenant id is not a guid",
            Self::PersonalAccount => "personal microsoft accounts are not accepted",
            Self::TenantNotAllowed => "tenant not allowed",
            Self::UnknownKey => "unknown signing key",
            Self::KeysUnavailable => "signing keys unavailable",
            Self::Signature => "invalid signature",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not yet valid",
            Self::MissingExp => "missing expiry",
            Self::MissingNbf => "missing not-before",
            Self::MissingAudience => "missing audience",
            Self::MissingIssuer => "missing issuer",
            Self::GraphAudience => "token is for microsoft graph",
            Self::Audience => "audience not accepted",
            Self::Version => "token version not accepted",
            Self::Issuer => "issuer not accepted",
            Self::MissingObjectId => "missing object id",
        }
    }
}

impl From<Refusal> for AuthenticationError {
    fn from(refusal: Refusal) -> Self {
        AuthenticationError {
            reason: refusal.reason().to_owned(),
            keys_unavailable: matches!(refusal, Refusal::KeysUnavailable),
        }
    }
}

impl EntraAuthenticator {
    /// An authenticator that fetches each tenant's signing keys from Entra ID
    /// (`settings.authority`) and caches them; `clock` drives the cache's schedule.
    ///
    /// # Errors
    /// [`SetupError::InvalidSettings`] naming the bad key; [`SetupError::Unexpected`] when the
    /// HTTP client cannot be built.
    pub fn new(settings: &EntraAuthSettings, clock: Arc<dyn Clock>) -> Result<Self, SetupError> {
        let settings = settings.resolve().map_err(SetupError::InvalidSettings)?;
        let keys = KeySource::Remote(RemoteJwks::new(&settings, Arc::clone(&clock))?);
        Ok(Self::build(settings, keys, clock))
    }

    /// An authenticator whose keys are the fixed set `jwks` (a JWKS document such as
    /// [`DevelopmentSigner::jwks`](crate::DevelopmentSigner::jwks)) for every tenant, for
    /// local development. Every other check is the same as with [`EntraAuthenticator::new`],
    /// so minted tokens must match `settings` (v2, an allowed tenant, an accepted audience,
    /// the issuer `{authority}/{tid}/v2.0`). `clock` decides when a verified token stops being
    /// served from memory.
    ///
    /// # Errors
    /// [`SetupError::InvalidSettings`] naming the bad key; [`SetupError::InvalidKeySet`] when
    /// `jwks` holds no RSA signing key.
    pub fn with_static_keys(
        settings: &EntraAuthSettings,
        jwks: &serde_json::Value,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SetupError> {
        let settings = settings.resolve().map_err(SetupError::InvalidSettings)?;
        let keys = KeySet::from_jwks(jwks).map_err(SetupError::InvalidKeySet)?;
        Ok(Self::build(settings, KeySource::Static(keys), clock))
    }

    /// How many token signatures this authenticator has checked. A token presented again
    /// while it is remembered as verified is not checked again and not counted.
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    fn build(settings: ResolvedSettings, keys: KeySource, clock: Arc<dyn Clock>) -> Self {
        // Only RS256, as the header check in `verify` demands (check 2).
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = settings.leeway_seconds;
        validation.validate_exp = true;
        // jsonwebtoken leaves `nbf` unchecked by default (check 6).
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss"]);
        validation.validate_aud = true;
        validation.set_audience(&settings.audiences.iter().collect::<Vec<_>>());
        Self {
            settings,
            validation,
            keys,
            verified: VerifiedTokens::new(verified_tokens::DEFAULT_CAPACITY, clock),
            signature_checks: AtomicU64::new(0),
        }
    }

    /// The generation of the key sets; a static set never changes.
    fn key_generation(&self) -> u64 {
        match &self.keys {
            KeySource::Remote(remote) => remote.generation(),
            KeySource::Static(_) => 0,
        }
    }

    /// Until when a token verified now with this `exp` may be served from memory: the leeway
    /// before `exp`, so never past `exp` itself. `None` when `exp` is beyond any timestamp.
    fn remember_until(&self, expires: u64) -> Option<Timestamp> {
        let expires = Timestamp::from_unix_seconds(i64::try_from(expires).ok()?, 0).ok()?;
        Some(expires.saturating_sub(Duration::from_secs(self.settings.leeway_seconds)))
    }

    async fn verify(&self, bearer_token: &str) -> Result<Verified, Refusal> {
        if bearer_token.is_empty() {
            return Err(Refusal::MissingToken);
        }
        let token = UnverifiedToken::parse(bearer_token).map_err(|e| match e {
            ParseError::TooLarge => Refusal::TooLarge,
            ParseError::Malformed => Refusal::Malformed,
        })?;

        // Check 2: the algorithm allow-list is {RS256}, compared as a string so that `none`,
        // `HS256` and anything jsonwebtoken does not know get the same clear refusal.
        if token.header.alg.as_deref() != Some(ACCEPTED_ALGORITHM) {
            return Err(Refusal::Algorithm);
        }
        let kid = match token.header.kid.as_deref() {
            Some(kid) if !kid.is_empty() => kid,
            _ => return Err(Refusal::MissingKid),
        };

        // Unverified: only `tid` is used before the signature is checked, and only to refuse.
        let claims = token.claims().map_err(|_| Refusal::Malformed)?;
        let tid = claims.tid.as_deref().ok_or(Refusal::MissingTenant)?;
        let tenant = self.check_tenant(Some(tid))?;

        let key = self.key(tenant, kid).await?;

        let mut validation = self.validation.clone();
        validation.set_issuer(&[self.expected_issuer(tid)]);
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        if let Err(e) =
            jsonwebtoken::decode::<serde::de::IgnoredAny>(bearer_token, &key, &validation)
        {
            return Err(self.refusal_for(&e, &claims));
        }

        // From here on `claims` is verified: the signature covers the very payload they were
        // read from.
        self.check_claims(&claims)?;
        // jsonwebtoken has required `exp` as a whole number of seconds.
        let expires = claims
            .exp
            .as_ref()
            .and_then(serde_json::Value::as_u64)
            .ok_or(Refusal::MissingExp)?;
        Ok(Verified {
            caller: self.caller(&claims, tenant)?,
            expires,
        })
    }

    /// Checks 3 and 9: the tenant (run early on the unverified `tid`, again on the verified one).
    fn check_tenant(&self, tid: Option<&str>) -> Result<Uuid, Refusal> {
        let tid = tid.ok_or(Refusal::MissingTenant)?;
        let tenant = parse_guid(tid).ok_or(Refusal::TenantNotGuid)?;
        if tenant == personal_account_tenant() {
            return Err(Refusal::PersonalAccount);
        }
        if !self.settings.allowed_tenants.contains(&tenant) {
            return Err(Refusal::TenantNotAllowed);
        }
        Ok(tenant)
    }

    async fn key(&self, tenant: Uuid, kid: &str) -> Result<Arc<DecodingKey>, Refusal> {
        let found = match &self.keys {
            KeySource::Remote(remote) => remote.key(tenant, kid).await,
            KeySource::Static(set) => set.get(kid).ok_or(KeyLookupError::UnknownKid),
        };
        found.map_err(|e| match e {
            KeyLookupError::UnknownKid => Refusal::UnknownKey,
            KeyLookupError::Unavailable => Refusal::KeysUnavailable,
        })
    }

    /// The issuer a token of tenant `tid` must carry (check 8).
    fn expected_issuer(&self, tid: &str) -> String {
        match self.settings.token_version {
            TokenVersion::V2 => format!("{}/{tid}/v2.0", self.settings.authority),
            TokenVersion::V1 => format!("https://sts.windows.net/{tid}/"),
        }
    }

    /// Maps a jsonwebtoken refusal. Signature and lifetime errors map directly; an `aud` or
    /// `iss` refusal is re-derived from [`Self::check_claims`] so that its reason follows the
    /// order of the checks above (jsonwebtoken checks `iss` before `aud`).
    fn refusal_for(&self, error: &jsonwebtoken::errors::Error, claims: &EntraClaims) -> Refusal {
        match error.kind() {
            ErrorKind::InvalidSignature => Refusal::Signature,
            ErrorKind::ExpiredSignature => Refusal::Expired,
            ErrorKind::ImmatureSignature => Refusal::NotYetValid,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Refusal::Algorithm,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "exp" => Refusal::MissingExp,
                "nbf" => Refusal::MissingNbf,
                "aud" => Refusal::MissingAudience,
                "iss" => Refusal::MissingIssuer,
                _ => Refusal::Malformed,
            },
            ErrorKind::InvalidAudience => {
                self.check_claims(claims).err().unwrap_or(Refusal::Audience)
            }
            ErrorKind::InvalidIssuer => self.check_claims(claims).err().unwrap_or(Refusal::Issuer),
            _ => Refusal::Malformed,
        }
    }

    /// Checks 7 to 9 on claims whose signature has been verified.
    fn check_claims(&self, claims: &EntraClaims) -> Result<(), Refusal> {
        // Check 7. Entra ID always sends one audience; a list is refused rather than searched,
        // so a token cannot be for us "among others".
        let audience = match &claims.aud {
            None => return Err(Refusal::MissingAudience),
            Some(Audience::Many(list)) if list.iter().any(|a| is_graph_audience(a)) => {
                return Err(Refusal::GraphAudience);
            }
            Some(Audience::Many(_)) => return Err(Refusal::Audience),
            Some(Audience::One(audience)) => audience,
        };
        if is_graph_audience(audience) {
            return Err(Refusal::GraphAudience);
        }
        if !self.settings.audiences.contains(audience.as_str()) {
            return Err(Refusal::Audience);
        }

        // Check 8: the pinned version, by `ver` and by the issuer's form.
        if claims.ver.as_deref() != Some(self.settings.token_version.ver_claim()) {
            return Err(Refusal::Version);
        }
        let tid = claims.tid.as_deref().ok_or(Refusal::MissingTenant)?;
        if claims.iss.as_deref() != Some(self.expected_issuer(tid).as_str()) {
            return Err(Refusal::Issuer);
        }

        // Check 9: the tenant, now on verified claims.
        self.check_tenant(Some(tid)).map(|_| ())
    }

    /// Who is calling, by `tid` + `oid` (or `sub`) (`docs/auth.md`, "The caller").
    fn caller(&self, claims: &EntraClaims, tenant: Uuid) -> Result<Caller, Refusal> {
        let object_id = [&claims.oid, &claims.sub]
            .into_iter()
            .flatten()
            .find(|id| !id.is_empty())
            .ok_or(Refusal::MissingObjectId)?;
        let app_id = match self.settings.token_version {
            TokenVersion::V2 => claims.azp.clone(),
            TokenVersion::V1 => claims.appid.clone(),
        };
        let is_application = claims.idtyp.as_deref() == Some("app")
            || (claims.scp.is_none() && claims.roles.is_some());
        let (kind, permissions) = if is_application {
            (
                CallerKind::Application,
                claims.roles.clone().unwrap_or_default(),
            )
        } else {
            let scopes = claims.scp.as_deref().unwrap_or_default();
            let mut seen = HashSet::new();
            (
                CallerKind::Delegated,
                scopes
                    .split_whitespace()
                    .filter(|scope| seen.insert(*scope))
                    .map(str::to_owned)
                    .collect(),
            )
        };
        Ok(Caller {
            tenant_id: tenant.hyphenated().to_string(),
            object_id: object_id.to_owned(),
            app_id,
            kind,
            permissions,
        })
    }
}

#[async_trait]
impl CallerAuthenticator for EntraAuthenticator {
    #[tracing::instrument(level = "debug", name = "entra_auth.authenticate", skip_all)]
    async fn authenticate(&self, bearer_token: &str) -> Result<Caller, AuthenticationError> {
        let key = TokenKey::of(bearer_token);
        // Read before any key is looked up: see `RemoteJwks::generation`.
        let key_generation = self.key_generation();
        if let Some(caller) = self.verified.get(key, key_generation) {
            return Ok(caller);
        }
        match self.verify(bearer_token).await {
            Ok(Verified { caller, expires }) => {
                if let Some(until) = self.remember_until(expires) {
                    self.verified
                        .insert(key, caller.clone(), until, key_generation);
                }
                Ok(caller)
            }
            Err(refusal) => {
                tracing::debug!(auth.reason = refusal.reason(), "bearer token refused");
                Err(refusal.into())
            }
        }
    }
}
