//! Every duration key of the configuration and its two spellings.
//!
//! A duration is written for people under a unit-less key with a unit in the value
//! (`request_timeout = "30s"`, `backoff_cap = "15m"`, `lease = "2m 40s"`). The key it replaced,
//! with the unit in its name (`request_timeout_ms = 30000`, `max_age_seconds = 86400`), is still
//! read, so existing overlays and `CMP__*` variables keep working. One layer giving both is an
//! error naming both; a later layer may override an earlier one in either spelling.
//!
//! Each layer is rewritten to the unit-less spelling ([`normalise`]) before the layers are
//! merged. The adapters' settings types still read the suffixed keys, so the merged tree is
//! rewritten back for them ([`for_settings_types`]) just before it is deserialised.

use std::time::Duration;

use anyhow::{Context, bail};
use config::{Map, Value, ValueKind};
use serde::{Deserialize, Deserializer};

/// The unit of a key spelled with its unit in its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// `_ms`.
    Milliseconds,
    /// `_seconds`.
    Seconds,
}

impl Unit {
    fn of(self, count: u64) -> Duration {
        match self {
            Self::Milliseconds => Duration::from_millis(count),
            Self::Seconds => Duration::from_secs(count),
        }
    }

    /// `duration` as a whole count of this unit; `None` when it is not one.
    fn count(self, duration: Duration) -> Option<u64> {
        let (count, rest) = match self {
            Self::Milliseconds => (duration.as_millis(), duration.subsec_nanos() % 1_000_000),
            Self::Seconds => (u128::from(duration.as_secs()), duration.subsec_nanos()),
        };
        u64::try_from(count).ok().filter(|_| rest == 0)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Milliseconds => "milliseconds",
            Self::Seconds => "seconds",
        }
    }
}

/// Which spelling the section's settings type reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// The adapter's type reads the suffixed key as an integer.
    Suffixed,
    /// Our own type reads the unit-less key through [`deserialize`].
    UnitLess,
}

/// One duration key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DurationKey {
    /// The section's dotted path, e.g. `graph.client`.
    pub(crate) section: &'static str,
    /// The unit-less key, e.g. `request_timeout`.
    pub(crate) name: &'static str,
    /// The key with its unit, e.g. `request_timeout_ms`.
    pub(crate) suffixed: &'static str,
    /// The unit of `suffixed`.
    pub(crate) unit: Unit,
    reads: Reads,
}

const fn key(
    section: &'static str,
    name: &'static str,
    suffixed: &'static str,
    unit: Unit,
    reads: Reads,
) -> DurationKey {
    DurationKey {
        section,
        name,
        suffixed,
        unit,
        reads,
    }
}

use Reads::{Suffixed, UnitLess};
use Unit::{Milliseconds as Ms, Seconds as S};

/// Every duration key of every section.
#[rustfmt::skip]
pub(crate) const DURATION_KEYS: [DurationKey; 23] = [
    key("http", "request_timeout", "request_timeout_ms", Ms, Suffixed),
    key("http", "header_read_timeout", "header_read_timeout_ms", Ms, Suffixed),
    key("http", "body_read_timeout", "body_read_timeout_ms", Ms, Suffixed),
    key("http", "shutdown_grace", "shutdown_grace_ms", Ms, Suffixed),
    key("sqlite", "busy_timeout", "busy_timeout_ms", Ms, Suffixed),
    key("store.postgres", "connect_timeout", "connect_timeout_ms", Ms, Suffixed),
    key("store.postgres", "statement_timeout", "statement_timeout_ms", Ms, Suffixed),
    key("graph.simulated", "latency", "latency_ms", Ms, Suffixed),
    key("graph.client", "connect_timeout", "connect_timeout_ms", Ms, Suffixed),
    key("graph.client", "request_timeout", "request_timeout_ms", Ms, Suffixed),
    key("graph.client", "token_timeout", "token_timeout_ms", Ms, Suffixed),
    key("graph.client", "retry_budget", "retry_budget_ms", Ms, Suffixed),
    key("outbox", "inline_deadline", "inline_deadline_ms", Ms, UnitLess),
    key("outbox", "lease", "lease_ms", Ms, UnitLess),
    key("outbox", "settle", "settle_ms", Ms, UnitLess),
    key("outbox", "retry_base", "retry_base_ms", Ms, UnitLess),
    key("outbox", "backoff_cap", "backoff_cap_ms", Ms, UnitLess),
    key("outbox", "max_age", "max_age_seconds", S, UnitLess),
    key("outbox", "dispatcher_poll_interval", "dispatcher_poll_interval_ms", Ms, UnitLess),
    key("auth.entra", "leeway", "leeway_seconds", S, Suffixed),
    key("auth.entra", "jwks_refresh", "jwks_refresh_seconds", S, Suffixed),
    key("auth.entra", "unknown_kid_refetch", "unknown_kid_refetch_seconds", S, Suffixed),
    key("auth.entra", "fetch_timeout", "fetch_timeout_ms", Ms, Suffixed),
];

/// The unit-less name of `key` in `section`, when it is a duration key in either spelling.
pub(crate) fn unit_less_name(section: &str, key: &str) -> Option<&'static str> {
    DURATION_KEYS
        .iter()
        .find(|d| d.section == section && (d.name == key || d.suffixed == key))
        .map(|d| d.name)
}

/// The table at the dotted `path` of `tree`, when there is one.
pub(crate) fn table_mut<'a>(
    tree: &'a mut Map<String, Value>,
    path: &str,
) -> Option<&'a mut Map<String, Value>> {
    path.split('.').try_fold(tree, |table, name| {
        match table.get_mut(name).map(|value| &mut value.kind) {
            Some(ValueKind::Table(inner)) => Some(inner),
            _ => None,
        }
    })
}

/// Rewrites every duration of one layer to its unit-less key with a value such as `"2m 40s"`.
///
/// # Errors
/// When one layer (`origin`) sets both spellings of a key, or a value is not a duration.
pub(crate) fn normalise(tree: &mut Map<String, Value>, origin: &str) -> anyhow::Result<()> {
    for key in &DURATION_KEYS {
        let Some(section) = table_mut(tree, key.section) else {
            continue;
        };
        let (unit_less, suffixed) = (section.remove(key.name), section.remove(key.suffixed));
        let duration = match (unit_less, suffixed) {
            (Some(_), Some(_)) => bail!(
                "{section}.{name} and {section}.{suffixed} are both set in {origin}; keep one",
                section = key.section,
                name = key.name,
                suffixed = key.suffixed,
            ),
            (Some(value), None) => parse_unit_less(key, value.kind)?,
            (None, Some(value)) => parse_suffixed(key, value.kind)?,
            (None, None) => continue,
        };
        section.insert(key.name.to_owned(), text(duration));
    }
    Ok(())
}

/// Rewrites the merged tree's durations to the spelling each settings type reads.
///
/// # Errors
/// When a value does not fit the unit the adapter reads (`leeway = "1500ms"`: whole seconds).
pub(crate) fn for_settings_types(tree: &mut Map<String, Value>) -> anyhow::Result<()> {
    for key in DURATION_KEYS.iter().filter(|d| d.reads == Suffixed) {
        let Some(section) = table_mut(tree, key.section) else {
            continue;
        };
        let Some(value) = section.remove(key.name) else {
            continue;
        };
        let duration = parse_unit_less(key, value.kind)?;
        let count = key.unit.count(duration).with_context(|| {
            format!(
                "{}.{} must be a whole number of {}, got {}",
                key.section,
                key.name,
                key.unit.name(),
                humantime::format_duration(duration)
            )
        })?;
        section.insert(key.suffixed.to_owned(), Value::new(None, count));
    }
    Ok(())
}

/// A duration as the configuration writes it, e.g. `"2m 40s"`.
pub(crate) fn text(duration: Duration) -> Value {
    Value::new(None, humantime::format_duration(duration).to_string())
}

fn parse_unit_less(key: &DurationKey, kind: ValueKind) -> anyhow::Result<Duration> {
    let path = format!("{}.{}", key.section, key.name);
    match kind {
        ValueKind::String(text) => humantime::parse_duration(text.trim()).map_err(|e| {
            anyhow::anyhow!(
                "{path} must be a duration with a unit such as \"30s\", \"5m\" or \"1h 30m\", got \"{text}\": {e}"
            )
        }),
        other => bail!(
            "{path} must be a duration with a unit such as \"30s\" or \"5m\", got {other}; a number of {unit} goes under {section}.{suffixed}",
            unit = key.unit.name(),
            section = key.section,
            suffixed = key.suffixed,
        ),
    }
}

fn parse_suffixed(key: &DurationKey, kind: ValueKind) -> anyhow::Result<Duration> {
    let count = match &kind {
        ValueKind::U64(count) => Some(*count),
        ValueKind::I64(count) => u64::try_from(*count).ok(),
        ValueKind::U128(count) => u64::try_from(*count).ok(),
        ValueKind::I128(count) => u64::try_from(*count).ok(),
        // Files may quote numbers; the environment's are parsed already.
        ValueKind::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    count.map(|count| key.unit.of(count)).with_context(|| {
        format!(
            "{}.{} must be a whole number of {}, got {kind}",
            key.section,
            key.suffixed,
            key.unit.name()
        )
    })
}

/// Reads a unit-less duration key of our own settings types (`"2m 40s"`).
///
/// # Errors
/// When the value is not a duration with a unit.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(text.trim()).map_err(serde::de::Error::custom)
}
