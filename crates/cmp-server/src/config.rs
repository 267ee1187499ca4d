//! [`Settings`]: `config/default.toml`, then `config/<environment>.toml`, then `CMP__*`
//! environment variables (`CMP__HTTP__PORT=9000`). `CMP_ENV` picks the environment and
//! `CMP_CONFIG_DIR` the folder (default `./config`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use cmp_application::OutboxPolicy;
use cmp_entra_auth::EntraAuthSettings;
use cmp_graph_client::{AzureEnvironment, GraphClientSettings, SimulatedGraphSettings};
use cmp_http_api::HttpSettings;
use cmp_sqlite::SqliteSettings;
use serde::Deserialize;
use uuid::Uuid;

use crate::prometheus::MetricsSettings;
use crate::readiness::ReadinessSettings;
use crate::telemetry::TelemetrySettings;

/// The deployment environment, chosen by `CMP_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// A developer's machine: readable logs, simulated Graph.
    Development,
    /// Automated tests.
    Test,
    /// Production: JSON logs, strict checks.
    Production,
}

impl Environment {
    /// The overlay file's stem.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "development" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" => Ok(Self::Production),
            other => {
                anyhow::bail!("CMP_ENV must be development, test or production, got '{other}'")
            }
        }
    }
}

/// Which Graph the service provisions into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphMode {
    /// The in-process simulated Graph (development and tests).
    Simulated,
    /// Microsoft Graph itself, with the credentials of `[graph.client]`.
    Graph,
}

/// `[graph]`: the Graph gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSettings {
    /// Which gateway to wire.
    pub mode: GraphMode,
    /// The Entra ID tenant partners are provisioned into; display names are unique per tenant.
    pub tenant_id: Uuid,
    /// The simulated Graph's behaviour (`simulated` mode).
    pub simulated: SimulatedGraphSettings,
    /// How to reach Microsoft Graph and as whom (`graph` mode).
    pub client: GraphClientSettings,
}

/// How inbound bearer tokens are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Tokens signed with a local key kept under `development_key_dir` (minted with
    /// `cmp-server mint-token`), checked exactly as Entra ID's are. Refused in production.
    Development,
    /// Entra ID access tokens, keys from the tenant's published key set.
    Entra,
}

/// `[auth]`: inbound bearer-token verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Which keys sign the accepted tokens.
    pub mode: AuthMode,
    /// Where development mode keeps its signing key.
    pub development_key_dir: PathBuf,
    /// The token checks (audiences, tenants, token version, leeway, key refresh).
    pub entra: EntraAuthSettings,
}

/// `[delivery]`: timing of the delivery to Graph (graph-client-behaviour §3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// How long a create waits for Graph before answering 202.
    pub inline_deadline_ms: u64,
    /// How long an attempt holds its outbox row.
    pub lease_ms: u64,
    /// Wait after an unknown outcome before reconciling.
    pub settle_ms: u64,
    /// First back-off step after a failure that did not apply (the full-jitter base).
    pub retry_base_ms: u64,
    /// Longest back-off between two attempts of one row.
    pub backoff_cap_ms: u64,
    /// Attempts after which a transiently failing row is dead.
    pub max_attempts: u32,
    /// Seconds after the first attempt after which a transiently failing row is dead.
    pub max_age_seconds: u64,
    /// Dispatcher workers; each makes one attempt at a time.
    pub dispatcher_workers: usize,
    /// Rows a worker claims per pass.
    pub dispatcher_batch_size: u32,
    /// Pause between passes that found nothing to do.
    pub dispatcher_poll_interval_ms: u64,
}

impl DeliverySettings {
    /// The application's outbox policy; durations are converted here and nowhere else.
    pub fn policy(&self) -> OutboxPolicy {
        OutboxPolicy {
            inline_deadline: Duration::from_millis(self.inline_deadline_ms),
            lease: Duration::from_millis(self.lease_ms),
            settle: Duration::from_millis(self.settle_ms),
            retry_base: Duration::from_millis(self.retry_base_ms),
            backoff_cap: Duration::from_millis(self.backoff_cap_ms),
            max_attempts: self.max_attempts,
            max_age: Duration::from_secs(self.max_age_seconds),
            batch_size: self.dispatcher_batch_size,
        }
    }
}

/// Every setting of the service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[http]`.
    pub http: HttpSettings,
    /// `[sqlite]`.
    pub sqlite: SqliteSettings,
    /// `[graph]`.
    pub graph: GraphSettings,
    /// `[delivery]`.
    pub delivery: DeliverySettings,
    /// `[auth]`.
    pub auth: AuthSettings,
    /// `[telemetry]`.
    pub telemetry: TelemetrySettings,
    /// `[metrics]`.
    pub metrics: MetricsSettings,
    /// `[readiness]`.
    pub readiness: ReadinessSettings,
    /// The environment the settings were loaded for (not a config key).
    #[serde(skip, default = "default_environment")]
    pub environment: Environment,
}

fn default_environment() -> Environment {
    Environment::Development
}

/// Loads the settings as the process environment says (`CMP_ENV`, `CMP_CONFIG_DIR`, `CMP__*`).
///
/// # Errors
/// A message naming the file, variable or key that is wrong.
pub fn load() -> anyhow::Result<Settings> {
    let environment: Environment = std::env::var("CMP_ENV")
        .unwrap_or_else(|_| "development".into())
        .parse()?;
    let directory =
        std::env::var_os("CMP_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from);
    load_from(&directory, environment)
}

/// Loads `default.toml` and `<environment>.toml` from `directory`, then `CMP__*` variables and
/// the Azure credential variables, and validates the result.
///
/// # Errors
/// A message naming the file, variable or key that is wrong.
pub fn load_from(directory: &Path, environment: Environment) -> anyhow::Result<Settings> {
    let default_file = directory.join("default.toml");
    let overlay_file = directory.join(format!("{}.toml", environment.as_str()));
    for file in [&default_file, &overlay_file] {
        anyhow::ensure!(
            file.is_file(),
            "configuration file {} is missing",
            file.display()
        );
    }
    refuse_secrets_in_files(&default_file, &overlay_file)?;
    let mut settings: Settings = ::config::Config::builder()
        .add_source(::config::File::from(default_file))
        .add_source(::config::File::from(overlay_file))
        .add_source(
            ::config::Environment::with_prefix("CMP")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                // Lists come from the environment comma-separated.
                .list_separator(",")
                .with_list_parse_key("auth.entra.audiences")
                .with_list_parse_key("auth.entra.allowed_tenants"),
        )
        .build()
        .context("reading the configuration")?
        .try_deserialize()
        .context("invalid configuration")?;
    settings.environment = environment;
    // The Azure variables (AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE, IDENTITY_ENDPOINT, ...)
    // are the platform's, not ours, so they sit outside the CMP__ namespace; read them here,
    // with the rest of the environment.
    settings.graph.client.azure = AzureEnvironment::from_process();
    settings
        .validate()
        .map_err(|message| anyhow::anyhow!("invalid configuration: {message}"))?;
    Ok(settings)
}

/// Keys whose values are secrets: they may come from the environment (or a file they name),
/// never from the committed configuration files.
const SECRET_KEYS: [&str; 1] = ["graph.client.client_secret"];

fn refuse_secrets_in_files(default_file: &Path, overlay_file: &Path) -> anyhow::Result<()> {
    let files_only = ::config::Config::builder()
        .add_source(::config::File::from(default_file))
        .add_source(::config::File::from(overlay_file))
        .build()
        .context("reading the configuration files")?;
    for key in SECRET_KEYS {
        if files_only.get::<::config::Value>(key).is_ok() {
            let variable = format!("CMP__{}", key.replace('.', "__").to_uppercase());
            anyhow::bail!(
                "{key} must not be set in a configuration file; supply it through {variable}"
            );
        }
    }
    Ok(())
}

impl Settings {
    /// Checks values the types cannot, naming the key at fault.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), String> {
        self.http.validate()?;
        self.graph.simulated.validate()?;
        if self.sqlite.path.as_os_str().is_empty() {
            return Err("sqlite.path must not be empty".into());
        }
        if self.delivery.inline_deadline_ms == 0 {
            return Err("delivery.inline_deadline_ms must be greater than 0".into());
        }
        for (key, value) in [
            (
                "delivery.max_attempts",
                u64::from(self.delivery.max_attempts),
            ),
            (
                "delivery.dispatcher_workers",
                self.delivery.dispatcher_workers as u64,
            ),
            (
                "delivery.dispatcher_batch_size",
                u64::from(self.delivery.dispatcher_batch_size),
            ),
            (
                "delivery.dispatcher_poll_interval_ms",
                self.delivery.dispatcher_poll_interval_ms,
            ),
        ] {
            if value == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        if self.delivery.lease_ms <= self.delivery.inline_deadline_ms {
            return Err("delivery.lease_ms must be longer than delivery.inline_deadline_ms".into());
        }
        if self.delivery.inline_deadline_ms >= self.http.request_timeout_ms {
            // Otherwise the whole-request timeout could cut a create short after it committed.
            return Err(
                "delivery.inline_deadline_ms must be shorter than http.request_timeout_ms".into(),
            );
        }
        if self.graph.mode == GraphMode::Graph {
            self.graph.client.resolve(self.graph.tenant_id)?;
        }
        self.metrics.validate()?;
        self.readiness
            .validate(self.delivery.dispatcher_poll_interval_ms)?;
        self.auth
            .entra
            .validate()
            .map_err(|message| format!("auth.entra.{message}"))?;
        if self.environment == Environment::Production {
            if self.auth.mode == AuthMode::Development {
                return Err("auth.mode = \"development\" is not allowed in production".into());
            }
            if self.http.public_base_url.is_empty() {
                return Err("http.public_base_url must be set in production".into());
            }
            if self.graph.mode == GraphMode::Simulated {
                return Err("graph.mode = \"simulated\" is not allowed in production".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
