//! [`Settings`]: `config/default.toml`, then `config/<environment>.toml`, then `CMP__*`
//! environment variables (`CMP__HTTP__PORT=9000`). `CMP_ENV` picks the environment and
//! `CMP_CONFIG_DIR` the folder (default `./config`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use cmp_application::DeliveryPolicy;
use cmp_graph_client::SimulatedGraphSettings;
use cmp_http_api::HttpSettings;
use cmp_sqlite::SqliteSettings;
use serde::Deserialize;
use uuid::Uuid;

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
}

/// `[graph]`: the Graph gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSettings {
    /// Which gateway to wire.
    pub mode: GraphMode,
    /// The Entra ID tenant partners are provisioned into; display names are unique per tenant.
    pub tenant_id: Uuid,
    /// The simulated Graph's behaviour.
    pub simulated: SimulatedGraphSettings,
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
    /// First back-off step after a failure that did not apply.
    pub retry_base_ms: u64,
}

impl DeliverySettings {
    /// The application's policy; durations are converted here and nowhere else.
    pub fn policy(&self) -> DeliveryPolicy {
        DeliveryPolicy {
            inline_deadline: Duration::from_millis(self.inline_deadline_ms),
            lease: Duration::from_millis(self.lease_ms),
            settle: Duration::from_millis(self.settle_ms),
            retry_base: Duration::from_millis(self.retry_base_ms),
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
    /// `[telemetry]`.
    pub telemetry: TelemetrySettings,
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

/// Loads `default.toml` and `<environment>.toml` from `directory`, then `CMP__*` variables,
/// and validates the result.
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
    let mut settings: Settings = ::config::Config::builder()
        .add_source(::config::File::from(default_file))
        .add_source(::config::File::from(overlay_file))
        .add_source(
            ::config::Environment::with_prefix("CMP")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .context("reading the configuration")?
        .try_deserialize()
        .context("invalid configuration")?;
    settings.environment = environment;
    settings
        .validate()
        .map_err(|message| anyhow::anyhow!("invalid configuration: {message}"))?;
    Ok(settings)
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
        if self.delivery.lease_ms <= self.delivery.inline_deadline_ms {
            return Err("delivery.lease_ms must be longer than delivery.inline_deadline_ms".into());
        }
        if self.delivery.inline_deadline_ms >= self.http.request_timeout_ms {
            // Otherwise the whole-request timeout could cut a create short after it committed.
            return Err(
                "delivery.inline_deadline_ms must be shorter than http.request_timeout_ms".into(),
            );
        }
        if self.environment == Environment::Production {
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
