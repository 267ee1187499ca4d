//! How the Graph client proves who it is: the four credentials, the Azure environment
//! variables they may come from, and their checks at start (see `docs/graph-credentials.md`).
//!
//! The configuration names the credential in `graph.client.credential`, or, left out, the one
//! credential configured decides. A key of another credential is refused rather than ignored,
//! so a half-changed configuration fails at start, naming the key, instead of at the first
//! token request. Configuration wins over the Azure variables wherever both could supply a
//! value.

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{GraphClientSettings, is_loopback};

/// The instance metadata endpoint of Azure virtual machines, scale sets and AKS nodes.
const INSTANCE_METADATA_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// The credentials the client can use, as named by `graph.client.credential`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A client secret of the app registration.
    Secret,
    /// A certificate of the app registration: a client assertion signed with its key.
    Certificate,
    /// Workload identity federation: a federated token file (AKS) as the client assertion.
    WorkloadIdentity,
    /// An Azure managed identity, from the platform's identity endpoint.
    ManagedIdentity,
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Secret => "secret",
            Self::Certificate => "certificate",
            Self::WorkloadIdentity => "workload_identity",
            Self::ManagedIdentity => "managed_identity",
        })
    }
}

/// The Azure environment variables a credential may come from. The binary reads them once, at
/// start ([`AzureEnvironment::from_process`]); tests set them by hand. An empty variable
/// counts as unset.
#[derive(Clone, Default)]
pub struct AzureEnvironment {
    /// `AZURE_CLIENT_ID`: the client id when `graph.client.client_id` is empty (for a managed
    /// identity: the user-assigned identity's).
    pub client_id: Option<String>,
    /// `AZURE_TENANT_ID`: the tenant when `graph.tenant_id` is left nil.
    pub tenant_id: Option<String>,
    /// `AZURE_FEDERATED_TOKEN_FILE`: the federated token file when
    /// `graph.client.federated_token_file` is not set (AKS workload identity sets it).
    pub federated_token_file: Option<PathBuf>,
    /// `IDENTITY_ENDPOINT`: the managed identity endpoint of App Service, Functions and
    /// Container Apps.
    pub identity_endpoint: Option<String>,
    /// `IDENTITY_HEADER`: the value those platforms require in `X-IDENTITY-HEADER`; it guards
    /// the endpoint against forged requests, so it is treated as a secret.
    pub identity_header: Option<SecretString>,
}

impl AzureEnvironment {
    /// The variables of this process.
    pub fn from_process() -> Self {
        let variable = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        Self {
            client_id: variable("AZURE_CLIENT_ID"),
            tenant_id: variable("AZURE_TENANT_ID"),
            federated_token_file: variable("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            identity_endpoint: variable("IDENTITY_ENDPOINT"),
            identity_header: variable("IDENTITY_HEADER").map(SecretString::from),
        }
    }
}

impl fmt::Debug for AzureEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureEnvironment")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("federated_token_file", &self.federated_token_file)
            .field("identity_endpoint", &self.identity_endpoint)
            .field(
                "identity_header",
                &self.identity_header.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// How the client proves who it is, checked and ready to use.
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
    /// Workload identity federation: the token in this file is the client assertion. The file
    /// is read again for every token request, because the platform rotates it in place.
    WorkloadIdentity {
        /// The federated token file.
        token_file: PathBuf,
    },
    /// An Azure managed identity.
    ManagedIdentity(ManagedIdentityEndpoint),
}

/// Where a managed identity gets its tokens.
#[derive(Clone)]
pub enum ManagedIdentityEndpoint {
    /// The instance metadata service (virtual machines, scale sets, AKS nodes): a GET with
    /// `Metadata: true`.
    InstanceMetadata(Url),
    /// The identity endpoint of App Service, Functions and Container Apps
    /// (`IDENTITY_ENDPOINT`): a GET with `X-IDENTITY-HEADER`.
    AppService {
        /// The endpoint.
        url: Url,
        /// The `X-IDENTITY-HEADER` value (`IDENTITY_HEADER`).
        header: SecretString,
    },
}

impl ManagedIdentityEndpoint {
    /// The endpoint's URL.
    pub fn url(&self) -> &Url {
        match self {
            Self::InstanceMetadata(url) | Self::AppService { url, .. } => url,
        }
    }
}

impl fmt::Display for Credential {
    /// What an operator needs to know of the credential, never any of its secret parts:
    /// `client secret`, `certificate`, `workload identity (federated token file <path>)`,
    /// `managed identity (instance metadata)`, `managed identity (App Service)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("client secret"),
            Self::Certificate { .. } => f.write_str("certificate"),
            Self::WorkloadIdentity { token_file } => write!(
                f,
                "workload identity (federated token file {})",
                token_file.display()
            ),
            Self::ManagedIdentity(ManagedIdentityEndpoint::InstanceMetadata(_)) => {
                f.write_str("managed identity (instance metadata)")
            }
            Self::ManagedIdentity(ManagedIdentityEndpoint::AppService { .. }) => {
                f.write_str("managed identity (App Service)")
            }
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({self})")
    }
}

impl GraphClientSettings {
    /// The client id: the configured one, else `AZURE_CLIENT_ID`, else empty.
    pub(super) fn effective_client_id(&self) -> String {
        let configured = self.client_id.trim();
        if configured.is_empty() {
            self.azure.client_id.clone().unwrap_or_default()
        } else {
            configured.to_owned()
        }
    }

    /// The credential the settings name or imply, checked and read.
    ///
    /// # Errors
    /// A message naming the key or variable at fault.
    pub(super) fn credential(&self) -> Result<Credential, String> {
        match self.credential_kind()? {
            CredentialKind::Secret => self.secret(),
            CredentialKind::Certificate => self.certificate(),
            CredentialKind::WorkloadIdentity => self.workload_identity(),
            CredentialKind::ManagedIdentity => {
                self.managed_identity().map(Credential::ManagedIdentity)
            }
        }
    }

    /// The credentials set up in the configuration, by the keys that make each, with its kind.
    fn configured_credentials(&self) -> Vec<(&'static str, CredentialKind)> {
        [
            (
                "client_secret",
                CredentialKind::Secret,
                self.client_secret.is_some(),
            ),
            (
                "client_secret_file",
                CredentialKind::Secret,
                self.client_secret_file.is_some(),
            ),
            (
                "certificate_file/private_key_file",
                CredentialKind::Certificate,
                self.certificate_file.is_some() || self.private_key_file.is_some(),
            ),
            (
                "federated_token_file",
                CredentialKind::WorkloadIdentity,
                self.federated_token_file.is_some(),
            ),
            (
                "managed_identity_endpoint",
                CredentialKind::ManagedIdentity,
                !self.managed_identity_endpoint.trim().is_empty(),
            ),
        ]
        .into_iter()
        .filter(|(_, _, configured)| *configured)
        .map(|(keys, kind, _)| (keys, kind))
        .collect()
    }

    /// The named credential, or the one credential configured.
    fn credential_kind(&self) -> Result<CredentialKind, String> {
        let configured = self.configured_credentials();
        match (self.credential, configured.as_slice()) {
            (Some(named), configured) => match configured.iter().find(|(_, kind)| *kind != named) {
                Some((keys, kind)) => Err(format!(
                    "graph.client.credential is \"{named}\" but graph.client.{keys} (for {kind}) is set too; remove it"
                )),
                None => Ok(named),
            },
            (None, [(_, kind)]) => Ok(*kind),
            (None, _) => Err("graph.client needs exactly one credential: client_secret (from CMP__GRAPH__CLIENT__CLIENT_SECRET), client_secret_file, certificate_file with private_key_file, or federated_token_file; or name it in graph.client.credential (secret, certificate, workload_identity, managed_identity)".into()),
        }
    }

    fn secret(&self) -> Result<Credential, String> {
        match (&self.client_secret, &self.client_secret_file) {
            (Some(secret), None) => {
                if secret.expose_secret().trim().is_empty() {
                    return Err("graph.client.client_secret is empty".into());
                }
                Ok(Credential::Secret(secret.clone()))
            }
            (None, Some(path)) => {
                let text = read(path, "graph.client.client_secret_file")?;
                let secret = text.trim_end();
                if secret.is_empty() {
                    return Err(format!(
                        "graph.client.client_secret_file {} is empty",
                        path.display()
                    ));
                }
                Ok(Credential::Secret(SecretString::from(secret.to_owned())))
            }
            (Some(_), Some(_)) => Err("graph.client needs exactly one credential, but both client_secret and client_secret_file are set".into()),
            (None, None) => Err("graph.client.credential = \"secret\" needs the secret in CMP__GRAPH__CLIENT__CLIENT_SECRET or a graph.client.client_secret_file".into()),
        }
    }

    fn certificate(&self) -> Result<Credential, String> {
        let (Some(certificate), Some(key)) = (&self.certificate_file, &self.private_key_file)
        else {
            return Err(
                "graph.client.certificate_file and graph.client.private_key_file go together"
                    .into(),
            );
        };
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

    /// Checks that the federated token file can be read now, so that a wrong path stops the
    /// service at start; its content is read again for every token request.
    fn workload_identity(&self) -> Result<Credential, String> {
        let (token_file, key) = match (&self.federated_token_file, &self.azure.federated_token_file) {
            (Some(path), _) => (path, "graph.client.federated_token_file"),
            (None, Some(path)) => (path, "AZURE_FEDERATED_TOKEN_FILE"),
            (None, None) => return Err("graph.client.credential = \"workload_identity\" needs graph.client.federated_token_file or AZURE_FEDERATED_TOKEN_FILE".into()),
        };
        if read(token_file, key)?.trim().is_empty() {
            return Err(format!("{key} {} is empty", token_file.display()));
        }
        Ok(Credential::WorkloadIdentity {
            token_file: token_file.clone(),
        })
    }

    /// The App Service form when the platform set `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`,
    /// the instance metadata service otherwise; `managed_identity_endpoint` replaces the URL of
    /// either.
    fn managed_identity(&self) -> Result<ManagedIdentityEndpoint, String> {
        let configured = Some(self.managed_identity_endpoint.trim())
            .filter(|endpoint| !endpoint.is_empty())
            .map(|endpoint| (endpoint, "graph.client.managed_identity_endpoint"));
        match (&self.azure.identity_endpoint, &self.azure.identity_header) {
            (Some(endpoint), Some(header)) => {
                let (text, key) = configured.unwrap_or((endpoint, "IDENTITY_ENDPOINT"));
                Ok(ManagedIdentityEndpoint::AppService {
                    url: identity_endpoint_url(text, key)?,
                    header: header.clone(),
                })
            }
            (None, None) => {
                let (text, key) = configured.unwrap_or((
                    INSTANCE_METADATA_ENDPOINT,
                    "graph.client.managed_identity_endpoint",
                ));
                identity_endpoint_url(text, key).map(ManagedIdentityEndpoint::InstanceMetadata)
            }
            _ => Err("IDENTITY_ENDPOINT and IDENTITY_HEADER go together: the platform sets both for a managed identity, or neither".into()),
        }
    }
}

fn read(path: &Path, key: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
}

/// Parses a managed identity endpoint. Plain http is accepted where it cannot leave the
/// machine: these endpoints are served on a link-local (169.254.0.0/16) or loopback address by
/// design, and the platforms serve them over http only. Anywhere else, https.
fn identity_endpoint_url(text: &str, key: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{key} is not a URL ('{text}'): {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) || is_link_local(&url) => Ok(url),
        "http" => Err(format!(
            "{key} must use https unless its host is link-local or loopback, got '{text}'"
        )),
        other => Err(format!(
            "{key} must be an http(s) URL, got scheme '{other}'"
        )),
    }
}

fn is_link_local(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_link_local(),
        Some(url::Host::Ipv6(ip)) => ip.is_unicast_link_local(),
        _ => false,
    }
}
