//! The tracing subscriber: readable lines in development, JSON in production, `RUST_LOG`
//! overriding the configured filter.

use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One compact human-readable line per event.
    Compact,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Configuration of logging (`[telemetry]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Line format.
    pub format: LogFormat,
    /// `EnvFilter` directives used when `RUST_LOG` is not set.
    pub filter: String,
}

/// Installs the global subscriber.
///
/// # Errors
/// When the filter does not parse or a subscriber is already installed.
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<()> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) => EnvFilter::try_new(&settings.filter)
            .map_err(|e| anyhow::anyhow!("telemetry.filter is not a valid filter: {e}"))?,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match settings.format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json())
            .try_init(),
        LogFormat::Compact => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}
