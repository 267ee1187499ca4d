//! [`EntraAuthSettings`]: which Entra ID access tokens the service accepts, and how it fetches
//! the keys that sign them.
//!
//! The checks themselves are described in `docs/auth.md`; every number they use (24 h refresh,
//! 5 min unknown-`kid` refetch, 10 s fetch timeout, 60 s leeway) is a default here, and
//! `docs/configuration.md` lists the keys.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use url::Url;
use uuid::Uuid;

/// The public-cloud Entra ID authority, the default of [`EntraAuthSettings::authority`].
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The tenant of personal Microsoft accounts (MSA). Tokens from it are never accepted: the API
/// supports work or school accounts only (seed permission table: "personal Microsoft account:
/// not supported").
pub const PERSONAL_ACCOUNT_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Microsoft Graph's audiences, as an App ID URI and as an application id. A token for Graph is
/// not meant for us, even though it is a valid Entra ID token, so these are always refused.
pub const GRAPH_AUDIENCES: [&str; 2] = [
    "https://graph.microsoft.com",
    "00000003-0000-0000-c000-000000000000",
];

/// Which access-token version the service accepts. The app registration's
/// `accessTokenAcceptedVersion` decides which one Entra ID issues; the other one is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TokenVersion {
    /// v1.0 tokens: `ver` = `1.0`, `iss` = `https://sts.windows.net/{tid}/`, `aud` = an App ID
    /// URI, client in `appid`.
    #[serde(rename = "v1")]
    V1,
    /// v2.0 tokens: `ver` = `2.0`, `iss` = `{authority}/{tid}/v2.0`, `aud` = the API's client
    /// id, client in `azp`.
    #[serde(rename = "v2")]
    V2,
}

impl TokenVersion {
    /// The name used in the settings (`v1`, `v2`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }

    /// The value of the `ver` claim in tokens of this version.
    pub fn ver_claim(&self) -> &'static str {
        match self {
            Self::V1 => "1.0",
            Self::V2 => "2.0",
        }
    }
}

/// Configuration of inbound token verification. The binary nests it under a section of its
/// choosing; [`EntraAuthSettings::validate`] names the keys relative to that section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraAuthSettings {
    /// The Entra ID authority, without a tenant: metadata is read from
    /// `{authority}/{tid}/v2.0/.well-known/openid-configuration` (v1:
    /// `{authority}/{tid}/.well-known/openid-configuration`). For v2 tokens it is also the
    /// issuer's base, `{authority}/{tid}/v2.0`, which is `login.microsoftonline.com` in the
    /// public cloud and a local fake in tests. https only, except to a loopback host.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// The `aud` values accepted: our API's client id (a GUID) for v2 tokens, our App ID URIs
    /// (e.g. `api://…`) for v1 tokens. Graph's audiences are refused here too.
    pub audiences: Vec<String>,
    /// The one token version accepted; tokens of the other are refused.
    pub token_version: TokenVersion,
    /// The tenants (`tid`, GUIDs) whose callers may use the API.
    pub allowed_tenants: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
    /// How often a tenant's signing keys are fetched again, in seconds (Entra rotates them).
    #[serde(default = "default_jwks_refresh_seconds")]
    pub jwks_refresh_seconds: u64,
    /// Least time between two fetches caused by a token with an unknown `kid`, per tenant, in
    /// seconds: a flood of forged `kid`s costs one outbound request per period, not one each.
    #[serde(default = "default_unknown_kid_refetch_seconds")]
    pub unknown_kid_refetch_seconds: u64,
    /// Timeout of one metadata or key-set request (connect to last byte), in milliseconds.
    #[serde(default = "default_fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
}

fn default_authority() -> String {
    DEFAULT_AUTHORITY.to_owned()
}

fn default_leeway_seconds() -> u64 {
    60
}

fn default_jwks_refresh_seconds() -> u64 {
    86_400
}

fn default_unknown_kid_refetch_seconds() -> u64 {
    300
}

fn default_fetch_timeout_ms() -> u64 {
    10_000
}

/// Longest leeway accepted: more would make `exp` meaningless.
const MAX_LEEWAY_SECONDS: u64 = 300;

/// Longest key refresh period accepted (a week): Entra rotates keys without notice.
const MAX_JWKS_REFRESH_SECONDS: u64 = 7 * 86_400;

/// Longest fetch timeout accepted: requests wait for a fetch of their tenant's keys.
const MAX_FETCH_TIMEOUT_MS: u64 = 60_000;

impl EntraAuthSettings {
    /// Settings with the given required values and every other key at its default.
    pub fn new(
        token_version: TokenVersion,
        audiences: Vec<String>,
        allowed_tenants: Vec<String>,
    ) -> Self {
        Self {
            authority: default_authority(),
            audiences,
            token_version,
            allowed_tenants,
            leeway_seconds: default_leeway_seconds(),
            jwks_refresh_seconds: default_jwks_refresh_seconds(),
            unknown_kid_refetch_seconds: default_unknown_kid_refetch_seconds(),
            fetch_timeout_ms: default_fetch_timeout_ms(),
        }
    }

    /// Checks every key.
    ///
    /// # Errors
    /// A message naming the key at fault, fit to stop the service at start.
    pub fn validate(&self) -> Result<(), String> {
        self.resolve().map(|_| ())
    }

    /// Checks every key and returns the values the authenticator works with.
    pub(crate) fn resolve(&self) -> Result<ResolvedSettings, String> {
        let authority = checked_url(self.authority.trim_end_matches('/'), "authority")?;
        if authority.query().is_some() || authority.fragment().is_some() {
            return Err("authority must not have a query or a fragment".into());
        }
        if !authority.username().is_empty() || authority.password().is_some() {
            return Err("authority must not carry credentials".into());
        }

        if self.audiences.is_empty() {
            return Err("audiences must name at least one audience".into());
        }
        let mut audiences = HashSet::new();
        for audience in &self.audiences {
            let audience = audience.trim();
            if audience.is_empty() {
                return Err("audiences must not contain an empty value".into());
            }
            if is_graph_audience(audience) {
                return Err(format!(
                    "audiences must not contain Microsoft Graph's audience '{audience}': tokens for Graph are not meant for this API"
                ));
            }
            // A v2 token's `aud` is always the API's client id, whatever the client asked for,
            // so an App ID URI here would refuse every token.
            if self.token_version == TokenVersion::V2 && parse_guid(audience).is_none() {
                return Err(format!(
                    "audiences: v2 tokens carry the API's client id (a GUID) as aud, got '{audience}'"
                ));
            }
            audiences.insert(audience.to_owned());
        }

        if self.allowed_tenants.is_empty() {
            return Err("allowed_tenants must name at least one tenant".into());
        }
        let mut allowed_tenants = HashSet::new();
        for tenant in &self.allowed_tenants {
            let Some(id) = parse_guid(tenant.trim()) else {
                return Err(format!(
                    "allowed_tenants must hold tenant GUIDs, got '{tenant}'"
                ));
            };
            if id.is_nil() {
                return Err("allowed_tenants must not contain the nil GUID".into());
            }
            if id == personal_account_tenant() {
                return Err(format!(
                    "allowed_tenants must not contain the personal-account tenant {PERSONAL_ACCOUNT_TENANT_ID}"
                ));
            }
            allowed_tenants.insert(id);
        }

        if self.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(format!(
                "leeway_seconds must be at most {MAX_LEEWAY_SECONDS}, got {}",
                self.leeway_seconds
            ));
        }
        within(
            "jwks_refresh_seconds",
            self.jwks_refresh_seconds,
            60,
            MAX_JWKS_REFRESH_SECONDS,
            MAX_JWKS_REFRESH_SECONDS,
        )?;
        within(
            "unknown_kid_refetch_seconds",
            self.unknown_kid_refetch_seconds,
            1,
            self.jwks_refresh_seconds,
            "jwks_refresh_seconds",
        )?;
        within(
            "fetch_timeout_ms",
            self.fetch_timeout_ms,
            1,
            MAX_FETCH_TIMEOUT_MS,
            MAX_FETCH_TIMEOUT_MS,
        )?;

        Ok(ResolvedSettings {
            authority: authority.as_str().trim_end_matches('/').to_owned(),
            audiences,
            token_version: self.token_version,
            allowed_tenants,
            leeway_seconds: self.leeway_seconds,
            jwks_refresh: Duration::from_secs(self.jwks_refresh_seconds),
            unknown_kid_refetch: Duration::from_secs(self.unknown_kid_refetch_seconds),
            fetch_timeout: Duration::from_millis(self.fetch_timeout_ms),
        })
    }
}

/// [`EntraAuthSettings`] checked and converted once, at construction.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedSettings {
    /// The authority without a trailing `/`, the base of metadata URLs and v2 issuers.
    pub(crate) authority: String,
    /// Accepted `aud` values, trimmed.
    pub(crate) audiences: HashSet<String>,
    /// The pinned token version.
    pub(crate) token_version: TokenVersion,
    /// Allowed tenants, compared as GUIDs so that letter case does not matter.
    pub(crate) allowed_tenants: HashSet<Uuid>,
    /// Leeway on `exp` and `nbf`.
    pub(crate) leeway_seconds: u64,
    /// Key refresh period.
    pub(crate) jwks_refresh: Duration,
    /// Least time between unknown-`kid` refetches of one tenant.
    pub(crate) unknown_kid_refetch: Duration,
    /// Timeout of one fetch.
    pub(crate) fetch_timeout: Duration,
}

/// Parses a GUID in its 36-character hyphenated form only. `Uuid::parse_str` alone also takes
/// the braced, URN and 32-digit forms, none of which Entra ID ever puts in a token; accepting
/// them would give one tenant several spellings.
pub(crate) fn parse_guid(text: &str) -> Option<Uuid> {
    if text.len() != 36 {
        return None;
    }
    Uuid::try_parse(text).ok()
}

/// The personal-account tenant as a GUID.
pub(crate) fn personal_account_tenant() -> Uuid {
    Uuid::from_u128(0x9188040d_6c67_4c5b_b112_36a304b66dad)
}

/// Checks that the setting `key` holds a `value` from `low` to `high`; the error names the upper
/// bound as `high_named`, which is either the number or the setting it comes from.
fn within(
    key: &str,
    value: u64,
    low: u64,
    high: u64,
    high_named: impl std::fmt::Display,
) -> Result<(), String> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{key} must be between {low} and {high_named}, got {value}"
        ))
    }
}

/// Whether `audience` is one of Microsoft Graph's (case and a trailing `/` ignored).
pub(crate) fn is_graph_audience(audience: &str) -> bool {
    let audience = audience.trim_end_matches('/');
    GRAPH_AUDIENCES
        .iter()
        .any(|graph| graph.eq_ignore_ascii_case(audience))
}

/// Parses `text` as an https URL, or an http URL whose host is loopback: signing keys fetched
/// in clear text over a network could be swapped by anyone on the path.
pub(crate) fn checked_url(text: &str, key: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{key} is not a URL ('{text}'): {e}"))?;
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "{key} must use https unless its host is loopback, got '{text}'"
        )),
        other => Err(format!("{key} must be an https URL, got scheme '{other}'")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_ID: &str = "6f0a3c2e-1b7d-4e55-9a8b-0c1d2e3f4a5b";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn settings() -> EntraAuthSettings {
        EntraAuthSettings::new(
            TokenVersion::V2,
            vec![CLIENT_ID.into()],
            vec![TENANT.into()],
        )
    }

    #[test]
    fn omitted_keys_take_the_documented_defaults() {
        let parsed: EntraAuthSettings = serde_json::from_value(serde_json::json!({
            "audiences": [CLIENT_ID],
            "token_version": "v2",
            "allowed_tenants": [TENANT],
        }))
        .expect("parses");

        assert_eq!(parsed, settings());
        assert_eq!(parsed.authority, "https://login.microsoftonline.com");
        assert_eq!(parsed.leeway_seconds, 60);
        assert_eq!(parsed.jwks_refresh_seconds, 86_400);
        assert_eq!(parsed.unknown_kid_refetch_seconds, 300);
        assert_eq!(parsed.fetch_timeout_ms, 10_000);
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn unknown_keys_and_unknown_versions_are_refused_when_parsing() {
        let unknown_key = serde_json::from_value::<EntraAuthSettings>(serde_json::json!({
            "audiences": [CLIENT_ID], "token_version": "v2", "allowed_tenants": [TENANT],
            "audience": CLIENT_ID,
        }));
        let unknown_version = serde_json::from_value::<EntraAuthSettings>(serde_json::json!({
            "audiences": [CLIENT_ID], "token_version": "2.0", "allowed_tenants": [TENANT],
        }));

        assert!(unknown_key.is_err());
        assert!(unknown_version.is_err());
    }

    #[test]
    fn validate_names_the_key_at_fault() {
        let cases: Vec<(&str, EntraAuthSettings, &str)> = vec![
            (
                "plain http to a remote host",
                EntraAuthSettings {
                    authority: "http://login.example.com".into(),
                    ..settings()
                },
                "authority",
            ),
            (
                "authority with a query",
                EntraAuthSettings {
                    authority: "https://login.microsoftonline.com/?x=1".into(),
                    ..settings()
                },
                "authority",
            ),
            (
                "no audiences",
                EntraAuthSettings {
                    audiences: vec![],
                    ..settings()
                },
                "audiences",
            ),
            (
                "graph's audience as a uri",
                EntraAuthSettings {
                    token_version: TokenVersion::V1,
                    audiences: vec!["https://graph.microsoft.com/".into()],
                    ..settings()
                },
                "audiences",
            ),
            (
                "graph's audience as an app id",
                EntraAuthSettings {
                    audiences: vec!["00000003-0000-0000-C000-000000000000".into()],
                    ..settings()
                },
                "audiences",
            ),
            (
                "an app id uri with v2 tokens",
                EntraAuthSettings {
                    audiences: vec!["api://compliance-partners".into()],
                    ..settings()
                },
                "audiences",
            ),
            (
                "no tenants",
                EntraAuthSettings {
                    allowed_tenants: vec![],
                    ..settings()
                },
                "allowed_tenants",
            ),
            (
                "a tenant that is not a guid",
                EntraAuthSettings {
                    allowed_tenants: vec!["contoso.onmicrosoft.com".into()],
                    ..settings()
                },
                "allowed_tenants",
            ),
            (
                "a braced guid",
                EntraAuthSettings {
                    allowed_tenants: vec![format!("{{{TENANT}}}")],
                    ..settings()
                },
                "allowed_tenants",
            ),
            (
                "the personal-account tenant",
                EntraAuthSettings {
                    allowed_tenants: vec![PERSONAL_ACCOUNT_TENANT_ID.to_uppercase()],
                    ..settings()
                },
                "allowed_tenants",
            ),
            (
                "a leeway of ten minutes",
                EntraAuthSettings {
                    leeway_seconds: 600,
                    ..settings()
                },
                "leeway_seconds",
            ),
            (
                "a refresh period of zero",
                EntraAuthSettings {
                    jwks_refresh_seconds: 0,
                    ..settings()
                },
                "jwks_refresh_seconds",
            ),
            (
                "unthrottled unknown-kid refetches",
                EntraAuthSettings {
                    unknown_kid_refetch_seconds: 0,
                    ..settings()
                },
                "unknown_kid_refetch_seconds",
            ),
            (
                "a fetch timeout of zero",
                EntraAuthSettings {
                    fetch_timeout_ms: 0,
                    ..settings()
                },
                "fetch_timeout_ms",
            ),
        ];

        for (name, settings, key) in cases {
            let message = settings.validate().expect_err(name);
            assert!(
                message.starts_with(key),
                "{name}: '{message}' should name {key}"
            );
        }
    }

    #[test]
    fn app_id_uris_are_accepted_for_v1_and_loopback_http_for_tests() {
        let v1 = EntraAuthSettings {
            token_version: TokenVersion::V1,
            audiences: vec!["api://compliance-partners".into(), CLIENT_ID.into()],
            authority: "http://127.0.0.1:8089/".into(),
            ..settings()
        };

        let resolved = v1.resolve().expect("valid");

        assert_eq!(resolved.authority, "http://127.0.0.1:8089");
        assert!(resolved.audiences.contains("api://compliance-partners"));
    }

    #[test]
    fn guids_are_read_in_the_hyphenated_form_only() {
        assert!(parse_guid(TENANT).is_some());
        assert!(parse_guid(&TENANT.to_uppercase()).is_some());
        assert!(parse_guid(&TENANT.replace('-', "")).is_none());
        assert!(parse_guid(&format!("urn:uuid:{TENANT}")).is_none());
        assert!(parse_guid("common").is_none());
        assert_eq!(
            parse_guid(PERSONAL_ACCOUNT_TENANT_ID),
            Some(personal_account_tenant())
        );
    }
}
