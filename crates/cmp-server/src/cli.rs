//! The command line: which of the binary's jobs to do.
//!
//! Every job reads the configuration the same way (see [`crate::config`]). The exit status is
//! 0 on success, 1 on a failure (the reason on standard error, or `FAIL` from `check-graph`),
//! and 2 on a usage error, which `clap` reports before anything runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cmp_domain::PartnerId;
use uuid::Uuid;

use crate::config::{Loaded, Settings};

/// The crate version and, when the build knew it, the git revision (`0.0.0 (1a2b3c4)`).
pub const VERSION: &str = env!("CMP_VERSION");

/// The exit statuses, shown under every `--help`.
const EXIT_STATUS: &str = "\
Exit status: 0 success; 1 failure (the reason is printed on standard error); 2 usage error.";

/// What `--help` says about the configuration, under the top-level usage.
const CONFIGURATION: &str = "\
Configuration: the built-in defaults, then config/default.toml and config/<CMP_ENV>.toml when
present (CMP_CONFIG_DIR moves the folder; CMP_ENV is development, test or production), then
CMP__<SECTION>__<KEY> environment variables. `cmp-server config check` prints the result.

Exit status: 0 success; 1 failure (the reason is printed on standard error); 2 usage error.";

/// `cmp-server`: the compliance-partner onboarding service and its operator jobs.
#[derive(Debug, Parser)]
#[command(
    name = "cmp-server",
    version = VERSION,
    about = "The compliance-partner onboarding service and its operator jobs.",
    after_help = CONFIGURATION
)]
pub struct Cli {
    /// The job; `serve` when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the binary was asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the service (the default job).
    #[command(after_help = EXIT_STATUS)]
    Serve,
    /// Check the Graph configuration: get a token, list the tenant's partners, print OK or
    /// FAIL with the reason (exit status 1 on FAIL).
    #[command(after_help = EXIT_STATUS)]
    CheckGraph,
    /// Print a bearer token signed with the development key (development auth mode only).
    #[command(after_help = EXIT_STATUS)]
    MintToken(MintOptions),
    /// Inspect or act on the outbox, the queue of deliveries to Graph, in the configured
    /// database; each prints JSON.
    #[command(subcommand, after_help = EXIT_STATUS)]
    Outbox(OutboxCommand),
    /// Check the configuration.
    #[command(subcommand, after_help = EXIT_STATUS)]
    Config(ConfigCommand),
    /// Write a consistent copy of the database to FILE, also while the service runs.
    #[command(
        after_help = "Restore: stop the service, move the copy into place as the configured database \
file (partners.db in the data folder), remove the stale partners.db-wal and partners.db-shm \
beside it, start the service.\n\nExit status: 0 success; 1 failure (the reason is printed on \
standard error); 2 usage error."
    )]
    Backup(BackupOptions),
    /// Copy a SQLite database into PostgreSQL (migrating it first), for moving one box to
    /// several replicas; a rerun copies nothing twice. Checks the row counts at the end. Stop
    /// the service first.
    #[command(after_help = EXIT_STATUS)]
    MigrateStore(MigrateStoreOptions),
}

/// `cmp-server migrate-store --from sqlite:PATH --to postgres:URL`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct MigrateStoreOptions {
    /// The SQLite database: `sqlite:PATH`.
    #[arg(long, value_name = "sqlite:PATH", value_parser = parse_sqlite_source)]
    pub from: PathBuf,
    /// The PostgreSQL database: `postgres:URL` (`postgres:postgres://user@host/db`), or
    /// `postgres:env` to read the URL from CMP__STORE__POSTGRES__URL so that it stays out of
    /// the process list.
    #[arg(long, value_name = "postgres:URL", value_parser = parse_postgres_target)]
    pub to: String,
}

fn parse_sqlite_source(text: &str) -> Result<PathBuf, String> {
    text.strip_prefix("sqlite:")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| "expected sqlite:PATH".to_owned())
}

fn parse_postgres_target(text: &str) -> Result<String, String> {
    match text.strip_prefix("postgres:") {
        Some("env") => std::env::var("CMP__STORE__POSTGRES__URL")
            .map_err(|_| "postgres:env but CMP__STORE__POSTGRES__URL is not set".to_owned()),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(url.to_owned())
        }
        _ => Err("expected postgres:URL (postgres:postgres://...) or postgres:env".to_owned()),
    }
}

/// What `mint-token` puts in the token.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct MintOptions {
    /// An app role for `roles`; repeatable. DeviceManagementServiceConfig.ReadWrite.All when
    /// neither a role nor a scope is given.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// A delegated scope for `scp`; repeatable.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Lifetime of the token.
    #[arg(
        long = "lifetime",
        value_name = "SECONDS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub lifetime_seconds: u64,
    /// The caller's tenant; the first of auth.entra.allowed_tenants when absent.
    #[arg(long = "tenant", value_name = "GUID")]
    pub tenant_id: Option<String>,
    /// The caller's object id.
    #[arg(long = "object-id", value_name = "GUID", default_value = DEVELOPER_OBJECT_ID)]
    pub object_id: String,
}

/// The role a token gets when the command line asks for none: the write permission, which is
/// what a developer trying the API needs.
const DEFAULT_ROLE: &str = "DeviceManagementServiceConfig.ReadWrite.All";

/// The object id minted tokens carry unless told otherwise: a fixed "developer" identity.
pub const DEVELOPER_OBJECT_ID: &str = "de7e1095-0000-4000-8000-00000000d3e5";

/// `cmp-server outbox ...`: the operator interface on the command line, against the store.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum OutboxCommand {
    /// Rows per state.
    #[command(after_help = EXIT_STATUS)]
    Counts,
    /// Rows in a state (every state when none is given), oldest first.
    #[command(after_help = EXIT_STATUS)]
    List {
        /// The state to list.
        #[arg(long, value_parser = ["pending", "in_flight", "delivered", "unknown", "dead"])]
        state: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// A partner's sync state and attempt history.
    #[command(after_help = EXIT_STATUS)]
    Show {
        /// The partner's id.
        partner_id: PartnerId,
    },
    /// A partner's audit entries and every delivery with its attempts.
    #[command(after_help = EXIT_STATUS)]
    History {
        /// The partner's id.
        partner_id: PartnerId,
    },
    /// Put a dead row back in the queue, as `unknown`: Graph is asked before anything is sent
    /// again.
    #[command(after_help = EXIT_STATUS)]
    Requeue {
        /// The outbox row's id.
        outbox_id: Uuid,
    },
}

/// `cmp-server config ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ConfigCommand {
    /// Load the configuration as `serve` would, check it, and print the result with every
    /// secret redacted; on an invalid configuration, name the key and exit with status 1.
    #[command(after_help = EXIT_STATUS)]
    Check {
        /// How to print it.
        #[arg(long, value_enum, default_value_t = OutputFormat::Toml)]
        format: OutputFormat,
    },
}

/// How `config check` prints the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// TOML, usable as an overlay file.
    Toml,
    /// A JSON object.
    Json,
}

/// `cmp-server backup FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct BackupOptions {
    /// The file to write; it must not exist yet.
    pub file: PathBuf,
}

/// Runs `cli` with the configuration `loaded` ([`crate::config::load`]): does the job.
///
/// # Errors
/// Start-up or job failures, with the step that failed named.
pub async fn run(cli: Cli, loaded: Loaded) -> anyhow::Result<ExitCode> {
    let command = cli.command.unwrap_or(Command::Serve);
    if command != Command::Serve {
        // The operator jobs write their result on standard output; warnings go beside it.
        for notice in &loaded.notices {
            eprintln!("warning: {notice}");
        }
    }
    let healthy = match command {
        Command::Serve => {
            serve(loaded).await?;
            true
        }
        Command::CheckGraph => {
            let mut stdout = std::io::stdout();
            crate::check::check_graph(&loaded.settings, &mut stdout).await?
        }
        Command::MintToken(options) => {
            let token = mint_token(&loaded.settings, &options.with_default_role())?;
            println!("{token}");
            true
        }
        Command::Outbox(command) => {
            let report = outbox(&loaded.settings, &command).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            true
        }
        Command::Config(ConfigCommand::Check { format }) => {
            let text = match format {
                OutputFormat::Toml => loaded.effective.to_toml()?,
                OutputFormat::Json => loaded.effective.to_json()?,
            };
            println!("{}", text.trim_end());
            true
        }
        Command::MigrateStore(MigrateStoreOptions { from, to }) => {
            let report = crate::migrate_store::migrate_store(&from, &to).await?;
            for table in report {
                println!(
                    "{}: {} rows in SQLite, {} copied, {} in PostgreSQL",
                    table.table, table.source_rows, table.copied, table.target_rows
                );
            }
            println!("OK");
            true
        }
        Command::Backup(BackupOptions { file }) => {
            backup(&loaded.settings, &file).await?;
            println!("{}", file.display());
            true
        }
    };
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Sets up logging, reports what loading noticed, and serves until SIGINT or SIGTERM.
async fn serve(loaded: Loaded) -> anyhow::Result<()> {
    let Loaded {
        settings,
        notices,
        layers,
        ..
    } = loaded;
    crate::telemetry::init(&settings.telemetry)?;
    for notice in &notices {
        notice.log();
    }
    tracing::info!(
        version = VERSION,
        environment = settings.environment.as_str(),
        config.layers = ?layers,
        data_dir = %settings.service.data_dir.display(),
        store.kind = ?settings.store.kind,
        store.replica_id = %settings.store.replica_id,
        database = %settings.sqlite.path.display(),
        "configuration loaded"
    );
    let application = crate::Application::build(settings).await?;
    application
        .run_until_stopped(crate::shutdown_signal())
        .await
}

impl MintOptions {
    /// These options, with the write permission as the role when none was asked for.
    pub fn with_default_role(mut self) -> Self {
        if self.roles.is_empty() && self.scopes.is_empty() {
            self.roles.push(DEFAULT_ROLE.to_owned());
        }
        self
    }
}

/// Opens the configured store, refusing to create a SQLite file: every job but `serve` reads a
/// database that already exists.
async fn open_existing_store(settings: &Settings) -> anyhow::Result<crate::store::Store> {
    if settings.store.kind == crate::config::StoreKind::Postgres {
        return crate::store::Store::open(settings).await;
    }
    let path = &settings.sqlite.path;
    anyhow::ensure!(
        path.is_file(),
        "there is no database at {} (service.data_dir and sqlite.path say where it is)",
        path.display()
    );
    crate::store::Store::open(settings).await
}

/// Writes a consistent copy of the configured database to `file`.
///
/// # Errors
/// When there is no database, `file` exists, or the copy cannot be written.
pub async fn backup(settings: &Settings, file: &Path) -> anyhow::Result<()> {
    let crate::store::Store::Sqlite(store) = open_existing_store(settings).await? else {
        anyhow::bail!(
            "backup copies a SQLite database; with store.kind = \"postgres\" use PostgreSQL's own tools (pg_dump, base backups)"
        );
    };
    let copied = store.backup_to(file).await;
    store.close().await;
    copied
}

/// Runs an `outbox` command against the configured store and returns its report.
///
/// # Errors
/// When there is no database, it cannot be opened, or the row is not found.
pub async fn outbox(
    settings: &Settings,
    command: &OutboxCommand,
) -> anyhow::Result<serde_json::Value> {
    use cmp_application::{OperatorUseCases, OutboxOperations};
    use cmp_http_api::admin::{parse_state, render_counts, render_history, render_sync_state};

    let store = open_existing_store(settings).await?;
    let operations = OutboxOperations::new(
        store.outbox(),
        std::sync::Arc::new(crate::system::SystemClock),
    );
    let report = match command {
        OutboxCommand::Counts => operations
            .count_rows()
            .await
            .map(|counts| render_counts(&counts)),
        OutboxCommand::List { state, limit } => {
            // clap offers only the states `parse_state` knows.
            let state = state.as_deref().and_then(parse_state);
            operations.list_rows(state, *limit).await.map(|rows| {
                serde_json::json!({ "value": rows.iter().map(render_sync_state).collect::<Vec<_>>() })
            })
        }
        OutboxCommand::Show { partner_id } => operations
            .sync_state(*partner_id)
            .await
            .map(|sync| render_sync_state(&sync)),
        OutboxCommand::History { partner_id } => operations
            .history(*partner_id)
            .await
            .map(|history| render_history(*partner_id, &history)),
        OutboxCommand::Requeue { outbox_id } => operations
            .requeue(*outbox_id)
            .await
            .map(|()| serde_json::json!({ "outboxId": outbox_id.to_string(), "state": "unknown" })),
    };
    store.close().await;
    Ok(report?)
}

/// Mints a development token as `options` say.
///
/// # Errors
/// Outside development auth mode or in production, or when the key cannot be read.
pub fn mint_token(settings: &Settings, options: &MintOptions) -> anyhow::Result<String> {
    anyhow::ensure!(
        settings.auth.mode == crate::config::AuthMode::Development
            && settings.environment != crate::Environment::Production,
        "mint-token works only with auth.mode = \"development\" outside production"
    );
    let entra = &settings.auth.entra;
    let tenant_id = match &options.tenant_id {
        Some(tenant) => tenant.clone(),
        None => entra
            .allowed_tenants
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("auth.entra.allowed_tenants is empty"))?,
    };
    let audience = entra
        .audiences
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("auth.entra.audiences is empty"))?;
    let signer = crate::startup::development_signer(settings)?;
    signer.mint(&cmp_entra_auth::MintRequest {
        tenant_id,
        object_id: options.object_id.clone(),
        app_id: "cmp-development".to_owned(),
        roles: options.roles.clone(),
        scopes: options.scopes.clone(),
        lifetime: std::time::Duration::from_secs(options.lifetime_seconds),
        audience,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(line: &str) -> Result<Option<Command>, ErrorKind> {
        Cli::try_parse_from(std::iter::once("cmp-server").chain(line.split_whitespace()))
            .map(|cli| cli.command)
            .map_err(|error| error.kind())
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn arguments_select_the_job() {
        let partner = "2f2c3e4a-5b6c-4d7e-8f90-a1b2c3d4e5f6";
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("serve"), Ok(Some(Command::Serve)));
        assert_eq!(parse("check-graph"), Ok(Some(Command::CheckGraph)));
        assert_eq!(
            parse(&format!("outbox history {partner}")),
            Ok(Some(Command::Outbox(OutboxCommand::History {
                partner_id: partner.parse().expect("an id")
            })))
        );
        assert_eq!(
            parse("outbox list --state dead --limit 5"),
            Ok(Some(Command::Outbox(OutboxCommand::List {
                state: Some("dead".into()),
                limit: 5
            })))
        );
        assert_eq!(
            parse("config check --format json"),
            Ok(Some(Command::Config(ConfigCommand::Check {
                format: OutputFormat::Json
            })))
        );
        let Ok(Some(Command::MintToken(mint))) =
            parse("mint-token --role A --role B --lifetime 60")
        else {
            panic!("mint-token parses")
        };
        assert_eq!(
            (mint.roles, mint.lifetime_seconds),
            (vec!["A".to_owned(), "B".to_owned()], 60)
        );
    }

    #[test]
    fn a_token_without_roles_or_scopes_gets_the_write_permission() {
        let Ok(Some(Command::MintToken(bare))) = parse("mint-token") else {
            panic!("mint-token parses")
        };
        let Ok(Some(Command::MintToken(scoped))) = parse("mint-token --scope S") else {
            panic!("mint-token parses")
        };

        assert_eq!(
            bare.with_default_role().roles,
            vec![DEFAULT_ROLE.to_owned()]
        );
        assert!(scoped.with_default_role().roles.is_empty());
    }

    #[test]
    fn malformed_arguments_are_usage_errors() {
        let cases = [
            ("mint-token --lifetime 0", ErrorKind::ValueValidation),
            ("mint-token --role", ErrorKind::InvalidValue),
            ("outbox list --limit x", ErrorKind::ValueValidation),
            ("outbox list --limit 1001", ErrorKind::ValueValidation),
            ("outbox list --state gone", ErrorKind::InvalidValue),
            ("outbox show not-an-id", ErrorKind::ValueValidation),
            ("outbox requeue", ErrorKind::MissingRequiredArgument),
            ("serve --port 1", ErrorKind::UnknownArgument),
            ("backup", ErrorKind::MissingRequiredArgument),
            ("launch", ErrorKind::InvalidSubcommand),
        ];
        for (line, kind) in cases {
            assert_eq!(parse(line).err(), Some(kind), "{line}");
        }
    }
}
