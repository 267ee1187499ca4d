//! [`GraphClientSettings`]: how to reach Microsoft Graph and Entra ID, and as whom.
//!
//! Secrets never come from a committed file: the client secret is read from an environment
//! variable (`CMP__GRAPH__CLIENT__CLIENT_SECRET`) or from a file named in the settings
//! (`client_secret_file`, e.g. a mounted Kubernetes secret); the certificate's private key from
//! a PEM file; a federated token from the file the platform mounts; the App Service identity
//! header from `IDENTITY_HEADER`. None of them appears in `Debug` output or logs.
//!
//! # Layout
//! - this file: the settings, national-cloud presets, URL checks, [`ResolvedGraphClient`].
//! - `credential`: the four credentials, the Azure environment variables, their checks.

mod credential;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

pub use self::credential::{AzureEnvironment, Credential, CredentialKind, ManagedIdentityEndpoint};

/// A Microsoft cloud: sets the Graph root, the token authority and the token scope together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    /// The global service (`graph.microsoft.com`).
    Global,
    /// US Government L4 (`graph.microsoft.us`).
    UsGovL4,
    /// US Government L5 / DoD (`dod-graph.microsoft.us`).
    UsGovL5,
    /// China, operated by 21Vianet (`microsoftgraph.chinacloudapi.cn`).
    China,
}

impl Cloud {
    /// Graph's host URL in this cloud (also the token audience).
    fn graph_host(&self) -> &'static str {
        match self {
            Self::Global => "https://graph.microsoft.com",
            Self::UsGovL4 => "https://graph.microsoft.us",
            Self::UsGovL5 => "https://dod-graph.microsoft.us",
            Self::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The Graph beta root in this cloud.
    pub fn graph_root(&self) -> String {
        format!("{}/beta", self.graph_host())
    }

    /// The Entra ID authority of this cloud.
    pub fn authority(&self) -> &'static str {
        match self {
            Self::Global => "https://login.microsoftonline.com",
            Self::UsGovL4 | Self::UsGovL5 => "https://login.microsoftonline.us",
            Self::China => "https://login.chinacloudapi.cn",
        }
    }

    /// The client-credentials scope: the cloud's Graph resource with `/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.graph_host())
    }
}

/// Configuration of the real Graph client (`[graph.client]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphClientSettings {
    /// The cloud; sets `root` and `authority` unless they are given.
    pub cloud: Cloud,
    /// Overrides the cloud's Graph root, e.g. a local fake in tests. Empty: the cloud's.
    pub root: String,
    /// Overrides the cloud's token authority. Empty: the cloud's.
    pub authority: String,
    /// The app registration's application (client) id; for a managed identity, the
    /// user-assigned identity's client id (empty: the system-assigned identity). Empty:
    /// `AZURE_CLIENT_ID`.
    pub client_id: String,
    /// Which credential to use. Left out, the one credential configured decides; workload
    /// identity and managed identity without a file or endpoint set must be named.
    pub credential: Option<CredentialKind>,
    /// The client secret; supply it through `CMP__GRAPH__CLIENT__CLIENT_SECRET`.
    pub client_secret: Option<SecretString>,
    /// A file holding the client secret (trailing whitespace ignored).
    pub client_secret_file: Option<PathBuf>,
    /// PEM file of the certificate registered on the app, for a signed client assertion.
    pub certificate_file: Option<PathBuf>,
    /// PEM file of that certificate's private key (PKCS#8 or PKCS#1 RSA).
    pub private_key_file: Option<PathBuf>,
    /// The federated token file of workload identity federation. Unset:
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub federated_token_file: Option<PathBuf>,
    /// The managed identity endpoint. Empty: `IDENTITY_ENDPOINT` on App Service, Functions and
    /// Container Apps, the instance metadata endpoint elsewhere. Tests point it at a fake.
    pub managed_identity_endpoint: String,
    /// Connect timeout of Graph requests.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout of Graph requests (connect to last body byte).
    pub request_timeout_ms: u64,
    /// Timeout of a token request.
    pub token_timeout_ms: u64,
    /// In-call retries of one logical call.
    pub max_retries: u32,
    /// Most time one call may spend waiting between retries; longer waits go back to the queue.
    pub retry_budget_ms: u64,
    /// Writes per second to the tenant, at most: the write budget of the tenant's pacer.
    pub write_rate_per_second: f64,
    /// Reads per second to the tenant, at most: the read budget of the tenant's pacer.
    pub read_rate_per_second: f64,
    /// Slots of each budget that may start at once after it lay unused (idle, or paused by a
    /// `Retry-After`): the pacer catches up what a pause took. Write rate × 20 s plus this must
    /// stay within Graph's 100 writes per 20 s.
    pub burst: u32,
    /// Pages of a list followed at most before giving up (a loop guard).
    pub max_pages: u32,
    /// When Graph refuses a create with a routing error because the tenant holds pre-seeded
    /// placeholder records, adopt the record of the same display name (list, then PATCH).
    pub adopt_preseeded: bool,
    /// The Azure environment variables credentials may come from; the binary fills it at
    /// start. Not a configuration key.
    #[serde(skip)]
    pub azure: AzureEnvironment,
}

impl std::fmt::Debug for GraphClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClientSettings")
            .field("cloud", &self.cloud)
            .field("root", &self.root)
            .field("authority", &self.authority)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("client_secret_file", &self.client_secret_file)
            .field("certificate_file", &self.certificate_file)
            .field("private_key_file", &self.private_key_file)
            .field("federated_token_file", &self.federated_token_file)
            .field("managed_identity_endpoint", &self.managed_identity_endpoint)
            .field("azure", &self.azure)
            .finish_non_exhaustive()
    }
}

/// Everything the client needs, checked and resolved from [`GraphClientSettings`].
#[derive(Debug, Clone)]
pub struct ResolvedGraphClient {
    /// Graph root, e.g. `https://graph.microsoft.com/beta`, without a trailing `/`.
    pub graph_root: Url,
    /// The token URL, `{authority}/{tenant}/oauth2/v2.0/token`.
    pub token_url: Url,
    /// The token scope.
    pub scope: String,
    /// The tenant: `graph.tenant_id`, or `AZURE_TENANT_ID` when that is nil.
    pub tenant_id: Uuid,
    /// The app registration's client id; for a managed identity the user-assigned identity's,
    /// empty for the system-assigned one.
    pub client_id: String,
    /// The credential.
    pub credential: Credential,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Token request timeout.
    pub token_timeout: Duration,
    /// In-call retries.
    pub max_retries: u32,
    /// In-call waiting budget.
    pub retry_budget: Duration,
    /// Least time between two writes to the tenant.
    pub write_interval: Duration,
    /// Least time between two reads from the tenant.
    pub read_interval: Duration,
    /// Slots of a budget that may start at once after it lay unused.
    pub burst: u32,
    /// Page cap of a list.
    pub max_pages: u32,
    /// Adopt pre-seeded records on a routing refusal.
    pub adopt_preseeded: bool,
}

impl ResolvedGraphClient {
    /// The budgets of the tenant's pacer.
    pub fn pacer_rates(&self) -> cmp_application::PacerRates {
        cmp_application::PacerRates {
            write_interval: self.write_interval,
            read_interval: self.read_interval,
            burst: self.burst,
        }
    }
}

impl ResolvedGraphClient {
    /// Where tokens come from: the Entra token URL, or the managed identity endpoint.
    pub fn token_endpoint(&self) -> &Url {
        match &self.credential {
            Credential::ManagedIdentity(endpoint) => endpoint.url(),
            Credential::Secret(_)
            | Credential::Certificate { .. }
            | Credential::WorkloadIdentity { .. } => &self.token_url,
        }
    }
}

impl GraphClientSettings {
    /// Checks the settings for the tenant (`AZURE_TENANT_ID` when `tenant_id` is nil) and reads
    /// the credential files.
    ///
    /// # Errors
    /// A message naming the key at fault, fit to stop the service at start.
    pub fn resolve(&self, tenant_id: Uuid) -> Result<ResolvedGraphClient, String> {
        let tenant_id = self.effective_tenant_id(tenant_id)?;
        let credential = self.credential()?;
        let client_id = self.effective_client_id();
        let needs_client_id = !matches!(credential, Credential::ManagedIdentity(_));
        if needs_client_id && client_id.is_empty() {
            return Err(
                "graph.client.client_id (or AZURE_CLIENT_ID) must be set in graph mode".into(),
            );
        }
        let root_text = if self.root.is_empty() {
            self.cloud.graph_root()
        } else {
            self.root.clone()
        };
        let graph_root = checked_url(root_text.trim_end_matches('/'), "graph.client.root")?;
        let authority_text = if self.authority.is_empty() {
            self.cloud.authority().to_owned()
        } else {
            self.authority.clone()
        };
        let authority = checked_url(
            authority_text.trim_end_matches('/'),
            "graph.client.authority",
        )?;
        let token_url = Url::parse(&format!(
            "{}/{tenant_id}/oauth2/v2.0/token",
            authority.as_str().trim_end_matches('/')
        ))
        .map_err(|e| format!("graph.client.authority does not make a token URL: {e}"))?;
        for (key, value) in [
            ("graph.client.connect_timeout_ms", self.connect_timeout_ms),
            ("graph.client.request_timeout_ms", self.request_timeout_ms),
            ("graph.client.token_timeout_ms", self.token_timeout_ms),
        ] {
            if value == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        for (key, rate) in [
            (
                "graph.client.write_rate_per_second",
                self.write_rate_per_second,
            ),
            (
                "graph.client.read_rate_per_second",
                self.read_rate_per_second,
            ),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("{key} must be a positive number"));
            }
        }
        if self.burst == 0 {
            return Err("graph.client.burst must be at least 1 (1: no catch-up)".into());
        }
        if self.max_pages == 0 {
            return Err("graph.client.max_pages must be greater than 0".into());
        }
        Ok(ResolvedGraphClient {
            graph_root,
            token_url,
            scope: self.cloud.scope(),
            tenant_id,
            client_id,
            credential,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            token_timeout: Duration::from_millis(self.token_timeout_ms),
            max_retries: self.max_retries,
            retry_budget: Duration::from_millis(self.retry_budget_ms),
            write_interval: Duration::from_secs_f64(1.0 / self.write_rate_per_second),
            read_interval: Duration::from_secs_f64(1.0 / self.read_rate_per_second),
            burst: self.burst,
            max_pages: self.max_pages,
            adopt_preseeded: self.adopt_preseeded,
        })
    }

    /// `tenant_id`, or `AZURE_TENANT_ID` when it is nil: the configuration wins.
    fn effective_tenant_id(&self, tenant_id: Uuid) -> Result<Uuid, String> {
        let tenant_id = match (&self.azure.tenant_id, tenant_id.is_nil()) {
            (Some(text), true) => text
                .parse()
                .map_err(|_| format!("AZURE_TENANT_ID is not a GUID: '{text}'"))?,
            _ => tenant_id,
        };
        if tenant_id.is_nil() {
            return Err(
                "graph.tenant_id (or AZURE_TENANT_ID) must be the tenant's GUID in graph mode"
                    .into(),
            );
        }
        Ok(tenant_id)
    }
}

/// Parses `text` as an https URL, or an http URL whose host is loopback: a bearer token or a
/// secret must never cross a network in clear text.
fn checked_url(text: &str, key: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{key} is not a URL ('{text}'): {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
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
mod tests;
