//! Reading one layer of the configuration and bringing it to the current spelling: the
//! `[delivery]` section read as `[outbox]`, and durations under their unit-less keys.
//!
//! Layers are normalised one at a time so that a conflict is judged where it was written: one
//! file giving `lease` and `lease_ms` is an error, an overlay giving `lease_ms` over the
//! built-in `lease` is an override.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use config::{Config, Map, Source, Value, ValueKind};

use super::durations;

/// The section the outbox settings were read from before it was renamed; read for one more
/// release.
const LEGACY_OUTBOX_SECTION: &str = "delivery";

/// The keys of `[outbox]` that are not durations (their names did not change).
const OUTBOX_COUNTS: [&str; 3] = [
    "max_attempts",
    "dispatcher_workers",
    "dispatcher_batch_size",
];

/// Keys whose values are secrets: they may come from the environment (or a file they name),
/// never from a configuration file.
const SECRET_KEYS: [&str; 2] = ["graph.client.client_secret", "store.postgres.url"];

/// Deprecated keys met while reading, each old dotted key with the key it is read as.
pub(crate) type Deprecations = BTreeMap<String, String>;

/// Reads `source` and brings it to the current spelling. `origin` names it in messages.
///
/// # Errors
/// When the source cannot be read, or a key or value in it is wrong, naming `origin`.
pub(crate) fn read(
    source: impl Source + Send + Sync + 'static,
    origin: &str,
    deprecations: &mut Deprecations,
) -> anyhow::Result<Config> {
    let mut layer = Config::builder()
        .add_source(source)
        .build()
        .with_context(|| format!("reading {origin}"))?;
    let ValueKind::Table(tree) = &mut layer.cache.kind else {
        bail!("{origin} does not hold a table of settings");
    };
    move_legacy_outbox_section(tree, origin, deprecations)?;
    durations::normalise(tree, origin)?;
    Ok(layer)
}

/// Refuses a secret written in a configuration file.
///
/// # Errors
/// Naming the key and the environment variable to use instead, never the value.
pub(crate) fn refuse_secrets(layer: &Config, origin: &str) -> anyhow::Result<()> {
    for key in SECRET_KEYS {
        if layer.get::<Value>(key).is_ok() {
            let variable = format!("CMP__{}", key.replace('.', "__").to_uppercase());
            bail!(
                "{key} must not be set in a configuration file ({origin}); supply it through {variable}"
            );
        }
    }
    Ok(())
}

/// Moves the keys of `[delivery]` into `[outbox]` under their new names' spellings and notes
/// each one in `deprecations`.
fn move_legacy_outbox_section(
    tree: &mut Map<String, Value>,
    origin: &str,
    deprecations: &mut Deprecations,
) -> anyhow::Result<()> {
    let Some(legacy) = tree.remove(LEGACY_OUTBOX_SECTION) else {
        return Ok(());
    };
    let ValueKind::Table(legacy) = legacy.kind else {
        bail!("{LEGACY_OUTBOX_SECTION} in {origin} must be a section (it is now [outbox])");
    };
    let outbox = tree
        .entry("outbox".to_owned())
        .or_insert_with(|| Value::new(None, Map::<String, Value>::new()));
    let ValueKind::Table(outbox) = &mut outbox.kind else {
        bail!("outbox in {origin} must be a section");
    };
    let current_name = |key: &str| -> Option<String> {
        durations::unit_less_name("outbox", key)
            .or_else(|| OUTBOX_COUNTS.into_iter().find(|count| *count == key))
            .map(str::to_owned)
    };
    for (key, value) in legacy {
        let Some(new_name) = current_name(&key) else {
            bail!(
                "{LEGACY_OUTBOX_SECTION}.{key} in {origin} is not a configuration key (the section is now [outbox])"
            );
        };
        if outbox
            .keys()
            .any(|present| current_name(present).as_deref() == Some(new_name.as_str()))
        {
            bail!(
                "{LEGACY_OUTBOX_SECTION}.{key} and outbox.{new_name} are both set in {origin}; keep outbox.{new_name}"
            );
        }
        deprecations.insert(
            format!("{LEGACY_OUTBOX_SECTION}.{key}"),
            format!("outbox.{new_name}"),
        );
        // Moved with its own spelling: a `_ms` key keeps meaning milliseconds.
        outbox.insert(key, value);
    }
    Ok(())
}
