//! [`GraphClientSettings`]: how to reach Microsoft Graph and Entra ID, and as whom.
//!
//! Secrets never come from a committed file: the client secret is read from an environment
//! variable (`CMP__GRAPH__CLIENT__CLIENT_SECRET`) or from a file named in the settings
//! (`client_secret_file`, e.g. a mounted Kubernetes secret); the certificate's private key from
//! a PEM file. None of them appears in `Debug` output or logs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use uuid::Uuid;

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
    /// The app registration's application (client) id.
    pub client_id: String,
    /// The client secret; supply it through `CMP__GRAPH__CLIENT__CLIENT_SECRET`.
    pub client_secret: Option<SecretString>,
    /// A file holding the client secret (trailing whitespace ignored).
    pub client_secret_file: Option<PathBuf>,
    /// PEM file of the certificate registered on the app, for a signed client assertion.
    pub certificate_file: Option<PathBuf>,
    /// PEM file of that certificate's private key (PKCS#8 or PKCS#1 RSA).
    pub private_key_file: Option<PathBuf>,
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
    /// Writes per second to the tenant, at most.
    pub write_rate_per_second: f64,
    /// Pages of a list followed at most before giving up (a loop guard).
    pub max_pages: u32,
    /// When Graph refuses a create with a routing error because the tenant holds pre-seeded
    /// placeholder records, adopt the record of the same display name (list, then PATCH).
    pub adopt_preseeded: bool,
}

impl std::fmt::Debug for GraphClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClientSettings")
            .field("cloud", &self.cloud)
            .field("root", &self.root)
            .field("authority", &self.authority)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("client_secret_file", &self.client_secret_file)
            .field("certificate_file", &self.certificate_file)
            .field("private_key_file", &self.private_key_file)
            .finish_non_exhaustive()
    }
}

/// How the client proves who it is to Entra ID.
#[derive(Clone)]
pub enum Credential {
    /// A client secret.
    Secret(SecretString),
    /// A certificate: the client signs an assertion with the private key.
    Certificate {
        /// The certificate, PEM.
        certificate_pem: String,
        /// Its private key, PEM.
        private_key_pem: SecretString,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Credential::Secret([redacted])"),
            Self::Certificate { .. } => f.write_str("Credential::Certificate([redacted])"),
        }
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
    /// The tenant.
    pub tenant_id: Uuid,
    /// The client id.
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
    /// Page cap of a list.
    pub max_pages: u32,
    /// Adopt pre-seeded records on a routing refusal.
    pub adopt_preseeded: bool,
}

impl GraphClientSettings {
    /// Checks the settings for the tenant and reads the credential files.
    ///
    /// # Errors
    /// A message naming the key at fault, fit to stop the service at start.
    pub fn resolve(&self, tenant_id: Uuid) -> Result<ResolvedGraphClient, String> {
        if tenant_id.is_nil() {
            return Err("graph.tenant_id must be the tenant's GUID in graph mode".into());
        }
        if self.client_id.trim().is_empty() {
            return Err("graph.client.client_id must be set in graph mode".into());
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
        let credential = self.credential()?;
        for (key, value) in [
            ("graph.client.connect_timeout_ms", self.connect_timeout_ms),
            ("graph.client.request_timeout_ms", self.request_timeout_ms),
            ("graph.client.token_timeout_ms", self.token_timeout_ms),
        ] {
            if value == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        if !(self.write_rate_per_second.is_finite() && self.write_rate_per_second > 0.0) {
            return Err("graph.client.write_rate_per_second must be a positive number".into());
        }
        if self.max_pages == 0 {
            return Err("graph.client.max_pages must be greater than 0".into());
        }
        Ok(ResolvedGraphClient {
            graph_root,
            token_url,
            scope: self.cloud.scope(),
            tenant_id,
            client_id: self.client_id.trim().to_owned(),
            credential,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            token_timeout: Duration::from_millis(self.token_timeout_ms),
            max_retries: self.max_retries,
            retry_budget: Duration::from_millis(self.retry_budget_ms),
            write_interval: Duration::from_secs_f64(1.0 / self.write_rate_per_second),
            max_pages: self.max_pages,
            adopt_preseeded: self.adopt_preseeded,
        })
    }

    fn credential(&self) -> Result<Credential, String> {
        let certificate = (&self.certificate_file, &self.private_key_file);
        let given = [
            self.client_secret.is_some(),
            self.client_secret_file.is_some(),
            certificate.0.is_some() || certificate.1.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err("graph.client needs exactly one credential: client_secret (from CMP__GRAPH__CLIENT__CLIENT_SECRET), client_secret_file, or certificate_file with private_key_file".into());
        }
        if let Some(secret) = &self.client_secret {
            if secret.expose_secret().trim().is_empty() {
                return Err("graph.client.client_secret is empty".into());
            }
            return Ok(Credential::Secret(secret.clone()));
        }
        if let Some(path) = &self.client_secret_file {
            let text = read(path, "graph.client.client_secret_file")?;
            let secret = text.trim_end();
            if secret.is_empty() {
                return Err(format!(
                    "graph.client.client_secret_file {} is empty",
                    path.display()
                ));
            }
            return Ok(Credential::Secret(SecretString::from(secret.to_owned())));
        }
        match certificate {
            (Some(certificate), Some(key)) => {
                let certificate_pem = read(certificate, "graph.client.certificate_file")?;
                if !certificate_pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(format!(
                        "graph.client.certificate_file {} holds no PEM certificate",
                        certificate.display()
                    ));
                }
                let private_key_pem = read(key, "graph.client.private_key_file")?;
                if !private_key_pem.contains("PRIVATE KEY-----") {
                    return Err(format!(
                        "graph.client.private_key_file {} holds no PEM private key",
                        key.display()
                    ));
                }
                Ok(Credential::Certificate {
                    certificate_pem,
                    private_key_pem: SecretString::from(private_key_pem),
                })
            }
            _ => Err(
                "graph.client.certificate_file and graph.client.private_key_file go together"
                    .into(),
            ),
        }
    }
}

fn read(path: &Path, key: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
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
mod tests {
    use super::*;

    fn settings() -> GraphClientSettings {
        GraphClientSettings {
            cloud: Cloud::Global,
            root: String::new(),
            authority: String::new(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: Some(SecretString::from("s3cret-value".to_owned())),
            client_secret_file: None,
            certificate_file: None,
            private_key_file: None,
            connect_timeout_ms: 30_000,
            request_timeout_ms: 100_000,
            token_timeout_ms: 30_000,
            max_retries: 3,
            retry_budget_ms: 180_000,
            write_rate_per_second: 4.0,
            max_pages: 100,
            adopt_preseeded: false,
        }
    }

    const TENANT: Uuid = Uuid::from_u128(0x72f988bf_86f1_41af_91ab_2d7cd011db47);

    #[test]
    fn each_cloud_sets_root_authority_and_scope_together() {
        let cases = [
            (
                Cloud::Global,
                "https://graph.microsoft.com/beta",
                "https://login.microsoftonline.com/",
                "https://graph.microsoft.com/.default",
            ),
            (
                Cloud::UsGovL4,
                "https://graph.microsoft.us/beta",
                "https://login.microsoftonline.us/",
                "https://graph.microsoft.us/.default",
            ),
            (
                Cloud::UsGovL5,
                "https://dod-graph.microsoft.us/beta",
                "https://login.microsoftonline.us/",
                "https://dod-graph.microsoft.us/.default",
            ),
            (
                Cloud::China,
                "https://microsoftgraph.chinacloudapi.cn/beta",
                "https://login.chinacloudapi.cn/",
                "https://microsoftgraph.chinacloudapi.cn/.default",
            ),
        ];
        for (cloud, root, authority, scope) in cases {
            let resolved = GraphClientSettings {
                cloud,
                ..settings()
            }
            .resolve(TENANT)
            .expect("valid");
            assert_eq!(resolved.graph_root.as_str(), root, "{cloud:?}");
            assert!(
                resolved.token_url.as_str().starts_with(authority),
                "{cloud:?}"
            );
            assert!(
                resolved
                    .token_url
                    .as_str()
                    .ends_with(&format!("{TENANT}/oauth2/v2.0/token")),
                "{cloud:?}"
            );
            assert_eq!(resolved.scope, scope, "{cloud:?}");
        }
    }

    #[test]
    fn plain_http_is_allowed_only_to_loopback() {
        for root in [
            "http://127.0.0.1:8081/beta",
            "http://localhost:9/beta",
            "http://[::1]:9/beta",
            "http://127.9.9.9/beta",
        ] {
            assert!(
                GraphClientSettings {
                    root: root.into(),
                    ..settings()
                }
                .resolve(TENANT)
                .is_ok(),
                "{root}"
            );
        }
        for root in [
            "http://graph.microsoft.com/beta",
            "http://10.0.0.5/beta",
            "ftp://127.0.0.1/beta",
        ] {
            let error = GraphClientSettings {
                root: root.into(),
                ..settings()
            }
            .resolve(TENANT)
            .expect_err(root);
            assert!(error.contains("graph.client.root"), "{error}");
        }
        let error = GraphClientSettings {
            authority: "http://login.example.com".into(),
            ..settings()
        }
        .resolve(TENANT)
        .expect_err("clear-text authority");
        assert!(error.contains("graph.client.authority"), "{error}");
    }

    #[test]
    fn graph_mode_refuses_to_start_without_what_it_needs() {
        let cases = [
            (settings(), Uuid::nil(), "graph.tenant_id"),
            (
                GraphClientSettings {
                    client_id: " ".into(),
                    ..settings()
                },
                TENANT,
                "client_id",
            ),
            (
                GraphClientSettings {
                    client_secret: None,
                    ..settings()
                },
                TENANT,
                "exactly one credential",
            ),
            (
                GraphClientSettings {
                    client_secret_file: Some("/nonexistent/secret".into()),
                    ..settings()
                },
                TENANT,
                "exactly one credential",
            ),
            (
                GraphClientSettings {
                    client_secret: None,
                    client_secret_file: Some("/nonexistent/secret".into()),
                    ..settings()
                },
                TENANT,
                "client_secret_file",
            ),
            (
                GraphClientSettings {
                    client_secret: None,
                    certificate_file: Some("/x.pem".into()),
                    ..settings()
                },
                TENANT,
                "go together",
            ),
            (
                GraphClientSettings {
                    write_rate_per_second: 0.0,
                    ..settings()
                },
                TENANT,
                "write_rate_per_second",
            ),
            (
                GraphClientSettings {
                    max_pages: 0,
                    ..settings()
                },
                TENANT,
                "max_pages",
            ),
        ];
        for (settings, tenant, needle) in cases {
            let error = settings.resolve(tenant).expect_err(needle);
            assert!(error.contains(needle), "expected '{needle}' in: {error}");
        }
    }

    #[test]
    fn a_secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").expect("write");

        let resolved = GraphClientSettings {
            client_secret: None,
            client_secret_file: Some(path),
            ..settings()
        }
        .resolve(TENANT)
        .expect("valid");

        let Credential::Secret(secret) = resolved.credential else {
            panic!("a secret")
        };
        assert_eq!(secret.expose_secret(), "from-file");
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let text = format!(
            "{:?} {:?}",
            settings(),
            settings().resolve(TENANT).expect("valid")
        );
        assert!(!text.contains("s3cret-value"), "{text}");
    }
}
