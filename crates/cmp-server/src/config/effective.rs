//! The merged configuration as `cmp-server config check` prints it: every key in its current
//! spelling (durations with their unit, `[outbox]`), paths as the service resolves them, and
//! every secret redacted.
//!
//! Redaction happens when the value is built, so no unredacted copy is ever held for printing.
//! A value is a secret when its key's last word names one (`client_secret`, `password`,
//! `api_key`, `access_token`, ...); a key naming a file or a folder that holds a secret
//! (`client_secret_file`, `private_key_file`) is a path and stays readable. A password inside a
//! URL (`postgres://app:...@db/partners`) is redacted wherever the URL appears.

use config::{Value, ValueKind};

use super::Settings;

/// What replaces a secret.
const REDACTED: &str = "[redacted]";

/// The last word of a key (after its last `_`) that marks its value as a secret.
const SECRET_WORDS: [&str; 13] = [
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "pwd",
    "token",
    "tokens",
    "key",
    "keys",
    "apikey",
    "credential",
    "credentials",
];

/// The merged configuration, redacted; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveConfig(toml::Table);

impl EffectiveConfig {
    /// Builds the printable configuration from the merged tree and the loaded settings.
    pub(crate) fn new(merged: Value, settings: &Settings) -> Self {
        let mut table = match to_toml(merged.kind) {
            Some(toml::Value::Table(table)) => table,
            _ => toml::Table::new(),
        };
        for (section, key, path) in [
            ("service", "data_dir", &settings.service.data_dir),
            ("sqlite", "path", &settings.sqlite.path),
            (
                "auth",
                "development_key_dir",
                &settings.auth.development_key_dir,
            ),
        ] {
            if let Some(toml::Value::Table(section)) = table.get_mut(section) {
                section.insert(key.to_owned(), path.display().to_string().into());
            }
        }
        for (key, value) in table.iter_mut() {
            redact(key, value);
        }
        Self(table)
    }

    /// The value at a dotted key, e.g. `graph.client.client_secret`.
    pub fn get(&self, dotted: &str) -> Option<&toml::Value> {
        let mut parts = dotted.split('.');
        let first = self.0.get(parts.next()?)?;
        parts.try_fold(first, |value, part| value.as_table()?.get(part))
    }

    /// The configuration as TOML, usable as an overlay file.
    ///
    /// # Errors
    /// Only when TOML cannot represent a value, which the configuration never holds.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string_pretty(&self.0)?)
    }

    /// The configuration as a JSON object.
    ///
    /// # Errors
    /// Only when JSON cannot represent a value, which the configuration never holds.
    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(&self.0)?)
    }
}

/// A configuration value as TOML; `None` for the nil TOML has no word for. Keys are sorted, so
/// the output is the same from one run to the next.
fn to_toml(kind: ValueKind) -> Option<toml::Value> {
    let integer = |wide: i128| {
        i64::try_from(wide).map_or_else(|_| wide.to_string().into(), toml::Value::Integer)
    };
    Some(match kind {
        ValueKind::Nil => return None,
        ValueKind::Boolean(flag) => toml::Value::Boolean(flag),
        ValueKind::I64(number) => toml::Value::Integer(number),
        ValueKind::I128(number) => integer(number),
        ValueKind::U64(number) => integer(i128::from(number)),
        ValueKind::U128(number) => {
            i128::try_from(number).map_or_else(|_| number.to_string().into(), integer)
        }
        ValueKind::Float(number) => toml::Value::Float(number),
        ValueKind::String(text) => toml::Value::String(text),
        ValueKind::Table(entries) => {
            let mut entries: Vec<_> = entries.into_iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.cmp(b));
            toml::Value::Table(
                entries
                    .into_iter()
                    .filter_map(|(key, value)| Some((key, to_toml(value.kind)?)))
                    .collect(),
            )
        }
        ValueKind::Array(items) => toml::Value::Array(
            items
                .into_iter()
                .filter_map(|item| to_toml(item.kind))
                .collect(),
        ),
    })
}

/// Whether the value of `key` is a secret.
fn is_secret_key(key: &str) -> bool {
    let last_word = key.rsplit('_').next().unwrap_or(key).to_ascii_lowercase();
    SECRET_WORDS.contains(&last_word.as_str())
}

/// Redacts `value`, found under `key`, and everything below it.
pub(crate) fn redact(key: &str, value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (inner_key, inner) in table.iter_mut() {
                redact(inner_key, inner);
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                redact(key, item);
            }
        }
        scalar if is_secret_key(key) => *scalar = REDACTED.into(),
        toml::Value::String(text) => {
            if let Some(redacted) = without_url_password(text) {
                *text = redacted;
            }
        }
        _ => {}
    }
}

/// `text` with the password of the URL it is replaced, when it is a URL with a password.
fn without_url_password(text: &str) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
    let mut url = url::Url::parse(text).ok()?;
    url.password()?;
    url.set_password(Some("REDACTED")).ok()?;
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_by_the_last_word_of_their_key_and_paths_stay() {
        let mut tree: toml::Value = toml::from_str(
            r#"
            [graph.client]
            client_secret = "s3cret-value"
            client_secret_file = "/run/secrets/graph"
            private_key_file = "/run/secrets/graph.key"
            token_timeout = "30s"
            [store]
            database_url = "postgres://app:hunter2@db.internal:5432/partners"
            authority = "https://login.microsoftonline.com"
            api_key = 12345
            access_tokens = ["one", "two"]
            [auth]
            development_key_dir = "/srv/cmp"
            token_version = "v2"
            "#,
        )
        .expect("toml");

        redact("", &mut tree);

        let text = tree.to_string();
        for secret in ["s3cret-value", "hunter2", "12345", "\"one\"", "\"two\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let at = |section: &str, key: &str| tree[section][key].clone();
        assert_eq!(at("store", "api_key").as_str(), Some(REDACTED));
        assert_eq!(
            at("store", "database_url").as_str(),
            Some("postgres://app:REDACTED@db.internal:5432/partners")
        );
        assert_eq!(
            at("store", "authority").as_str(),
            Some("https://login.microsoftonline.com"),
            "a URL without a password is left alone"
        );
        let client = &tree["graph"]["client"];
        assert_eq!(client["client_secret"].as_str(), Some(REDACTED));
        assert_eq!(
            client["client_secret_file"].as_str(),
            Some("/run/secrets/graph")
        );
        assert_eq!(
            client["private_key_file"].as_str(),
            Some("/run/secrets/graph.key")
        );
        assert_eq!(client["token_timeout"].as_str(), Some("30s"));
        assert_eq!(at("auth", "development_key_dir").as_str(), Some("/srv/cmp"));
        assert_eq!(at("auth", "token_version").as_str(), Some("v2"));
    }
}
