//! [`Settings`]: the service's configuration, read in layers, each overriding the ones before:
//!
//! 1. the defaults compiled into the binary (`config/default.toml` of the source tree), so the
//!    binary runs from any folder with no file beside it;
//! 2. `default.toml` and then `<environment>.toml` from the configuration folder, each when
//!    present (`CMP_CONFIG_DIR`, default `./config`; `CMP_ENV` picks the environment);
//! 3. `CMP__<SECTION>__<KEY>` environment variables (`CMP__HTTP__PORT=9000`).
//!
//! Durations are written with their unit (`"30s"`, `"5m"`); the older keys with the unit in
//! their name (`request_timeout_ms`) and the `[delivery]` section (now `[outbox]`) are still
//! read. Relative paths are resolved against `service.data_dir`. The rules for operators are in
//! `docs/configuration.md`.
//!
//! # Layout
//! - `durations`: the duration keys and their two spellings.
//! - `layers`: reading one layer and bringing it to the current spelling.
//! - [`effective`]: the merged configuration as `cmp-server config check` prints it, secrets
//!   redacted.

mod durations;
pub mod effective;
mod layers;
mod readiness;

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use cmp_application::OutboxPolicy;
use cmp_entra_auth::EntraAuthSettings;
use cmp_graph_client::{AzureEnvironment, GraphClientSettings, SimulatedGraphSettings};
use cmp_http_api::HttpSettings;
use cmp_sqlite::SqliteSettings;
use config::{File, FileFormat};
use serde::Deserialize;
use uuid::Uuid;

use crate::prometheus::MetricsSettings;
use crate::telemetry::TelemetrySettings;
pub use effective::EffectiveConfig;
pub use readiness::ReadinessSettings;

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

/// `[service]`: where the service keeps its files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// The folder relative paths of the other sections (`sqlite.path`,
    /// `auth.development_key_dir`) are resolved against. Relative itself, it is taken from the
    /// working folder; once loaded it is absolute.
    pub data_dir: PathBuf,
    /// How many nice levels above the rest of the service the runtime's worker threads run (0
    /// to 19; 0 leaves them alone), so that the store's writer thread is not held up behind
    /// request handling on a busy machine (`crate::runtime`).
    pub worker_nice_increment: u8,
}

/// `[outbox]`: timing of the outbox, the deliveries to Graph and the dispatcher that makes
/// them (`docs/delivery.md` tells what each one is for).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    /// How long a create waits for Graph before answering 202.
    #[serde(deserialize_with = "durations::deserialize")]
    pub inline_deadline: Duration,
    /// How long an attempt holds its outbox row.
    #[serde(deserialize_with = "durations::deserialize")]
    pub lease: Duration,
    /// Wait after an unknown outcome before reconciling.
    #[serde(deserialize_with = "durations::deserialize")]
    pub settle: Duration,
    /// First back-off step after a failure that did not apply (the full-jitter base).
    #[serde(deserialize_with = "durations::deserialize")]
    pub retry_base: Duration,
    /// Longest back-off between two attempts of one row.
    #[serde(deserialize_with = "durations::deserialize")]
    pub backoff_cap: Duration,
    /// Attempts after which a transiently failing row is dead.
    pub max_attempts: u32,
    /// Time after the first attempt after which a transiently failing row is dead.
    #[serde(deserialize_with = "durations::deserialize")]
    pub max_age: Duration,
    /// Dispatcher workers; each makes one attempt at a time.
    pub dispatcher_workers: usize,
    /// Rows a worker claims per pass.
    pub dispatcher_batch_size: u32,
    /// Pause between passes that found nothing to do.
    #[serde(deserialize_with = "durations::deserialize")]
    pub dispatcher_poll_interval: Duration,
    /// Reconcile by asking Graph for the display name before walking the collection.
    pub reconcile_by_name: bool,
}

impl OutboxSettings {
    /// The application's outbox policy.
    pub fn policy(&self) -> OutboxPolicy {
        OutboxPolicy {
            inline_deadline: self.inline_deadline,
            lease: self.lease,
            settle: self.settle,
            retry_base: self.retry_base,
            backoff_cap: self.backoff_cap,
            max_attempts: self.max_attempts,
            max_age: self.max_age,
            batch_size: self.dispatcher_batch_size,
            reconcile_by_name: self.reconcile_by_name,
        }
    }
}

/// Which store holds the partners and the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite file (`[sqlite]`): one box, the embedded default.
    Sqlite,
    /// One PostgreSQL database (`[store.postgres]`) shared by several replicas.
    Postgres,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite` or `postgres`.
    pub kind: StoreKind,
    /// This replica's id on the leases it writes; empty in the file means host name and
    /// process id, filled in at load.
    pub replica_id: String,
    /// `[store.postgres]`.
    pub postgres: PostgresConfig,
}

/// `[store.postgres]`, as configured; [`PostgresConfig::settings`] reads the URL.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The connection URL, from `CMP__STORE__POSTGRES__URL` only (refused in files).
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the connection URL (a mounted secret); empty for none.
    #[serde(default)]
    pub url_file: PathBuf,
    /// Connections in the pool.
    pub pool_size: u32,
    /// How long connecting may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// PostgreSQL's `statement_timeout`, in milliseconds.
    pub statement_timeout_ms: u64,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.url.as_ref().map(|_| "[redacted]"))
            .field("url_file", &self.url_file)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .finish()
    }
}

impl PostgresConfig {
    /// The adapter's settings, the URL read from the variable or the file.
    ///
    /// # Errors
    /// When the URL file cannot be read or is empty; the message names the file, never its
    /// content.
    pub fn settings(&self, replica_id: &str) -> anyhow::Result<cmp_postgres::PostgresSettings> {
        let url = match &self.url {
            Some(url) => url.clone(),
            None => {
                let url = std::fs::read_to_string(&self.url_file).with_context(|| {
                    format!(
                        "reading store.postgres.url_file {}",
                        self.url_file.display()
                    )
                })?;
                let url = url.trim().to_owned();
                anyhow::ensure!(
                    !url.is_empty(),
                    "store.postgres.url_file {} is empty",
                    self.url_file.display()
                );
                url
            }
        };
        Ok(cmp_postgres::PostgresSettings {
            url,
            pool_size: self.pool_size,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
            replica_id: replica_id.to_owned(),
        })
    }

    fn validate(&self) -> Result<(), String> {
        let has_url = self.url.as_deref().is_some_and(|url| !url.is_empty());
        let has_file = !self.url_file.as_os_str().is_empty();
        match (has_url, has_file) {
            (false, false) => {
                return Err("store.kind = \"postgres\" needs store.postgres.url (CMP__STORE__POSTGRES__URL) or store.postgres.url_file".into());
            }
            (true, true) => {
                return Err(
                    "store.postgres.url and store.postgres.url_file are both set; set one".into(),
                );
            }
            _ => {}
        }
        if self.pool_size == 0 {
            return Err("store.postgres.pool_size must be greater than 0".into());
        }
        if self.connect_timeout_ms == 0 {
            return Err("store.postgres.connect_timeout must be greater than 0".into());
        }
        if self.statement_timeout_ms == 0 {
            return Err("store.postgres.statement_timeout must be greater than 0".into());
        }
        Ok(())
    }
}

/// This process's default replica id: the host name and the process id, which tell an operator
/// where to look; a random id when the host name cannot be read.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().replace('/', "-"))
        .filter(|host| !host.is_empty());
    match host {
        Some(host) => format!("{host}-{}", std::process::id()),
        None => Uuid::new_v4().to_string(),
    }
}

/// Every setting of the service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[service]`.
    pub service: ServiceSettings,
    /// `[http]`.
    pub http: HttpSettings,
    /// `[store]`: which store, and PostgreSQL's settings.
    pub store: StoreSettings,
    /// `[sqlite]`.
    pub sqlite: SqliteSettings,
    /// `[graph]`.
    pub graph: GraphSettings,
    /// `[outbox]` (read from `[delivery]` too, for one release).
    pub outbox: OutboxSettings,
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

/// The defaults, compiled in: the first layer of every configuration.
const BUILT_IN_DEFAULTS: &str = include_str!("../../../config/default.toml");

/// What loading the configuration noticed that an operator should hear about. Loading happens
/// before logging is set up, so the caller reports these once it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A key of the previous release was read as its new name.
    Deprecated {
        /// The dotted key as written, e.g. `delivery.lease_ms`.
        old: String,
        /// The dotted key it was read as, e.g. `outbox.lease`.
        new: String,
    },
    /// `CMP_CONFIG_DIR` names a folder that does not exist.
    FolderMissing(PathBuf),
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deprecated { old, new } => write!(
                f,
                "configuration key {old} ({}) is deprecated and will not be read after the next release; use {new} ({})",
                variable_name(old),
                variable_name(new)
            ),
            Self::FolderMissing(folder) => write!(
                f,
                "CMP_CONFIG_DIR names {}, which does not exist; running on the built-in defaults and CMP__* variables",
                folder.display()
            ),
        }
    }
}

impl Notice {
    /// Logs the notice as a warning (once logging is set up).
    pub fn log(&self) {
        match self {
            Self::Deprecated { old, new } => {
                tracing::warn!(config.key = %old, config.replacement = %new, "{self}");
            }
            Self::FolderMissing(folder) => {
                tracing::warn!(config.dir = %folder.display(), "{self}");
            }
        }
    }
}

/// The environment variable that sets the dotted `key`.
fn variable_name(key: &str) -> String {
    format!("CMP__{}", key.replace('.', "__").to_uppercase())
}

/// The outcome of loading: the settings, the merged configuration for `config check`, what an
/// operator should be told, and where it all came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated settings, paths resolved.
    pub settings: Settings,
    /// The merged configuration in its current spelling, secrets redacted.
    pub effective: EffectiveConfig,
    /// Deprecated keys met and the like, to report once logging is set up.
    pub notices: Vec<Notice>,
    /// The layers read, first to last (`built-in defaults`, files, `CMP__* variables`).
    pub layers: Vec<String>,
}

/// Loads the settings as the process environment says (`CMP_ENV`, `CMP_CONFIG_DIR`, `CMP__*`).
///
/// # Errors
/// A message naming the file, variable or key that is wrong.
pub fn load() -> anyhow::Result<Loaded> {
    let environment: Environment = std::env::var("CMP_ENV")
        .unwrap_or_else(|_| "development".into())
        .parse()?;
    let (directory, named) = match std::env::var_os("CMP_CONFIG_DIR") {
        Some(directory) => (PathBuf::from(directory), true),
        None => (PathBuf::from("config"), false),
    };
    let mut loaded = load_layers(&directory, environment, None)?;
    if named && !directory.is_dir() {
        loaded.notices.push(Notice::FolderMissing(directory));
    }
    Ok(loaded)
}

/// Loads the built-in defaults, then `default.toml` and `<environment>.toml` from `directory`
/// where present, then `CMP__*` variables and the Azure credential variables, and validates the
/// result.
///
/// # Errors
/// A message naming the file, variable or key that is wrong.
pub fn load_from(directory: &Path, environment: Environment) -> anyhow::Result<Settings> {
    load_layers(directory, environment, None).map(|loaded| loaded.settings)
}

/// [`load_from`] with the `CMP__*` variables taken from `variables` instead of the process
/// environment when given (tests).
///
/// # Errors
/// A message naming the file, variable or key that is wrong.
pub fn load_layers(
    directory: &Path,
    environment: Environment,
    variables: Option<HashMap<String, String>>,
) -> anyhow::Result<Loaded> {
    let mut deprecations = layers::Deprecations::new();
    let mut merged = ::config::Config::builder().add_source(layers::read(
        File::from_str(BUILT_IN_DEFAULTS, FileFormat::Toml),
        "the built-in defaults",
        &mut deprecations,
    )?);
    let mut read = vec!["built-in defaults".to_owned()];
    for file in [
        directory.join("default.toml"),
        directory.join(format!("{}.toml", environment.as_str())),
    ] {
        if !file.is_file() {
            continue;
        }
        let origin = file.display().to_string();
        let layer = layers::read(
            File::from(file).format(FileFormat::Toml),
            &origin,
            &mut deprecations,
        )?;
        layers::refuse_secrets(&layer, &origin)?;
        merged = merged.add_source(layer);
        read.push(origin);
    }
    let variables_source = ::config::Environment::with_prefix("CMP")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        // Lists come from the environment comma-separated.
        .list_separator(",")
        .with_list_parse_key("auth.entra.audiences")
        .with_list_parse_key("auth.entra.allowed_tenants")
        .source(variables);
    merged = merged.add_source(layers::read(
        variables_source,
        "the CMP__* environment variables",
        &mut deprecations,
    )?);
    read.push("CMP__* variables".to_owned());

    let merged = merged.build().context("merging the configuration")?;
    let mut for_types = merged.clone();
    if let ::config::ValueKind::Table(tree) = &mut for_types.cache.kind {
        durations::for_settings_types(tree).context("invalid configuration")?;
    }
    let mut settings: Settings = for_types
        .try_deserialize()
        .context("invalid configuration")?;
    settings.environment = environment;
    // The Azure variables (AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE, IDENTITY_ENDPOINT, ...)
    // are the platform's, not ours, so they sit outside the CMP__ namespace; read them here,
    // with the rest of the environment.
    settings.graph.client.azure = AzureEnvironment::from_process();
    settings
        .resolve_paths()
        .and_then(|()| settings.validate())
        .map_err(|message| anyhow::anyhow!("invalid configuration: {message}"))?;
    let effective = EffectiveConfig::new(merged.cache, &settings);
    Ok(Loaded {
        settings,
        effective,
        notices: deprecations
            .into_iter()
            .map(|(old, new)| Notice::Deprecated { old, new })
            .collect(),
        layers: read,
    })
}

/// `path` resolved against `base`: kept when absolute, joined otherwise, without the `.`
/// components a join leaves (`data/./key` reads badly in a log line).
fn resolve_against(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    base.join(path)
        .components()
        .filter(|component| *component != Component::CurDir)
        .collect()
}

impl Settings {
    /// Makes `service.data_dir` absolute (from the working folder) and resolves the relative
    /// paths of the other sections against it.
    ///
    /// # Errors
    /// When the data folder is empty or the working folder cannot be read.
    fn resolve_paths(&mut self) -> Result<(), String> {
        if self.service.data_dir.as_os_str().is_empty() {
            return Err("service.data_dir must not be empty".into());
        }
        let data_dir = std::path::absolute(&self.service.data_dir).map_err(|e| {
            format!(
                "service.data_dir {} cannot be made absolute: {e}",
                self.service.data_dir.display()
            )
        })?;
        if self.service.worker_nice_increment > 19 {
            return Err("service.worker_nice_increment must be between 0 and 19".into());
        }
        if self.sqlite.path.as_os_str().is_empty() {
            return Err("sqlite.path must not be empty".into());
        }
        self.sqlite.path = resolve_against(&data_dir, &self.sqlite.path);
        if !self.store.postgres.url_file.as_os_str().is_empty() {
            self.store.postgres.url_file =
                resolve_against(&data_dir, &self.store.postgres.url_file);
        }
        if self.store.replica_id.is_empty() {
            self.store.replica_id = default_replica_id();
        }
        self.auth.development_key_dir = resolve_against(&data_dir, &self.auth.development_key_dir);
        self.service.data_dir = data_dir;
        Ok(())
    }

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
        if self.store.replica_id.contains('/') {
            return Err("store.replica_id must not contain '/'".into());
        }
        if self.store.kind == StoreKind::Postgres {
            self.store.postgres.validate()?;
        }
        let outbox = &self.outbox;
        for (key, zero) in [
            ("outbox.inline_deadline", outbox.inline_deadline.is_zero()),
            ("outbox.max_attempts", outbox.max_attempts == 0),
            ("outbox.dispatcher_workers", outbox.dispatcher_workers == 0),
            (
                "outbox.dispatcher_batch_size",
                outbox.dispatcher_batch_size == 0,
            ),
            (
                "outbox.dispatcher_poll_interval",
                outbox.dispatcher_poll_interval.is_zero(),
            ),
        ] {
            if zero {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        if outbox.lease <= outbox.inline_deadline {
            return Err("outbox.lease must be longer than outbox.inline_deadline".into());
        }
        if outbox.inline_deadline >= Duration::from_millis(self.http.request_timeout_ms) {
            // Otherwise the whole-request timeout could cut a create short after it committed.
            return Err("outbox.inline_deadline must be shorter than http.request_timeout".into());
        }
        if self.graph.mode == GraphMode::Graph {
            self.graph.client.resolve(self.graph.tenant_id)?;
        }
        self.metrics.validate()?;
        self.readiness
            .validate(self.outbox.dispatcher_poll_interval)?;
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
