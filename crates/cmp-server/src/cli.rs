//! The command line: which of the binary's jobs to do.

use std::process::ExitCode;

/// What the binary was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Read the configuration, get a Graph token and list the tenant's partners; print a verdict.
    CheckGraph,
    /// Print a bearer token signed with the development key (development auth mode only).
    MintToken(MintOptions),
    /// Inspect or act on the delivery queue.
    Outbox(OutboxCommand),
    /// Print the usage.
    Help,
}

/// `cmp-server outbox ...`: the operator interface on the command line, against the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxCommand {
    /// Rows per state.
    Counts,
    /// Rows in a state (all when `None`), oldest first.
    List {
        /// The state to list.
        state: Option<String>,
        /// At most this many rows.
        limit: u32,
    },
    /// A partner's sync state and attempt history.
    Show {
        /// The partner's id.
        partner_id: String,
    },
    /// A partner's audit entries and every delivery with its attempts.
    History {
        /// The partner's id.
        partner_id: String,
    },
    /// Put a dead row back in the queue.
    Requeue {
        /// The outbox row's id.
        outbox_id: String,
    },
}

/// What `mint-token` puts in the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintOptions {
    /// App roles (`roles`); the write permission when neither roles nor scopes are given.
    pub roles: Vec<String>,
    /// Delegated scopes (`scp`).
    pub scopes: Vec<String>,
    /// Lifetime in seconds.
    pub lifetime_seconds: u64,
    /// The caller's tenant; the first allowed tenant when absent.
    pub tenant_id: Option<String>,
    /// The caller's object id.
    pub object_id: String,
}

/// The object id minted tokens carry unless told otherwise: a fixed "developer" identity.
pub const DEVELOPER_OBJECT_ID: &str = "de7e1095-0000-4000-8000-00000000d3e5";

/// The usage text.
pub const USAGE: &str = "\
cmp-server: the compliance-partner onboarding service

usage:
  cmp-server [serve]      run the service (configuration: config/, CMP_ENV, CMP__* variables)
  cmp-server check-graph  check the Graph configuration: get a token, list the tenant's partners
  cmp-server mint-token [--role ROLE]... [--scope SCOPE]... [--lifetime SECONDS]
                        [--tenant GUID] [--object-id GUID]
                          print a token signed with the development key (development auth
                          mode only); default role DeviceManagementServiceConfig.ReadWrite.All,
                          default lifetime 3600 s
  cmp-server outbox counts                      rows of the delivery queue per state
  cmp-server outbox list [--state S] [--limit N] rows (pending, in_flight, delivered, unknown, dead)
  cmp-server outbox show PARTNER_ID             a partner's sync state and attempt history
  cmp-server outbox history PARTNER_ID          a partner's audit entries and deliveries
  cmp-server outbox requeue OUTBOX_ID           put a dead row back in the queue
  cmp-server help         print this text
";

/// Parses the arguments after the program name.
///
/// # Errors
/// A message naming the argument that is not understood.
pub fn parse(arguments: &[String]) -> Result<Command, String> {
    match arguments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => Ok(Command::Serve),
        ["check-graph"] => Ok(Command::CheckGraph),
        ["help" | "--help" | "-h"] => Ok(Command::Help),
        ["outbox", "counts"] => Ok(Command::Outbox(OutboxCommand::Counts)),
        ["outbox", "show", partner_id] => Ok(Command::Outbox(OutboxCommand::Show {
            partner_id: (*partner_id).to_owned(),
        })),
        ["outbox", "requeue", outbox_id] => Ok(Command::Outbox(OutboxCommand::Requeue {
            outbox_id: (*outbox_id).to_owned(),
        })),
        ["outbox", "list", options @ ..] => parse_list_options(options).map(Command::Outbox),
        ["mint-token", options @ ..] => parse_mint_options(options).map(Command::MintToken),
        other => Err(format!("unknown arguments: {}\n\n{USAGE}", other.join(" "))),
    }
}

fn parse_list_options(options: &[&str]) -> Result<OutboxCommand, String> {
    let (mut state, mut limit) = (None, 100);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("{option} needs a value"))?;
        match *option {
            "--state" => state = Some((*value).to_owned()),
            "--limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--limit needs a positive number")?
            }
            other => return Err(format!("outbox list does not know '{other}'\n\n{USAGE}")),
        }
    }
    Ok(OutboxCommand::List { state, limit })
}

fn parse_mint_options(options: &[&str]) -> Result<MintOptions, String> {
    let mut mint = MintOptions {
        roles: Vec::new(),
        scopes: Vec::new(),
        lifetime_seconds: 3600,
        tenant_id: None,
        object_id: DEVELOPER_OBJECT_ID.to_owned(),
    };
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let mut value = || {
            rest.next()
                .map(|v| (*v).to_owned())
                .ok_or_else(|| format!("{option} needs a value"))
        };
        match *option {
            "--role" => mint.roles.push(value()?),
            "--scope" => mint.scopes.push(value()?),
            "--lifetime" => {
                mint.lifetime_seconds = value()?
                    .parse()
                    .ok()
                    .filter(|seconds| *seconds > 0)
                    .ok_or("--lifetime needs a positive number of seconds")?;
            }
            "--tenant" => mint.tenant_id = Some(value()?),
            "--object-id" => mint.object_id = value()?,
            other => return Err(format!("mint-token does not know '{other}'\n\n{USAGE}")),
        }
    }
    if mint.roles.is_empty() && mint.scopes.is_empty() {
        mint.roles
            .push("DeviceManagementServiceConfig.ReadWrite.All".to_owned());
    }
    Ok(mint)
}

/// Runs `command`: loads the configuration, sets up logging, and does the job.
///
/// # Errors
/// Configuration, start-up or serving failures, with the step that failed named.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Help => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            let settings = crate::config::load()?;
            crate::telemetry::init(&settings.telemetry)?;
            let application = crate::Application::build(settings).await?;
            application
                .run_until_stopped(crate::shutdown_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::MintToken(options) => {
            let settings = crate::config::load()?;
            println!("{}", mint_token(&settings, &options)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox(command) => {
            let settings = crate::config::load()?;
            let report = outbox(&settings, &command).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckGraph => {
            let settings = crate::config::load()?;
            let mut stdout = std::io::stdout();
            let healthy = crate::check::check_graph(&settings, &mut stdout).await?;
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Runs an `outbox` command against the configured store and returns its report.
///
/// # Errors
/// When the store cannot be opened, an argument is not understood, or the row is not found.
pub async fn outbox(
    settings: &crate::Settings,
    command: &OutboxCommand,
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    use cmp_application::{OperatorUseCases, OutboxOperations};
    use cmp_http_api::admin::{parse_state, render_counts, render_sync_state};

    let store = cmp_sqlite::SqliteStore::open(&settings.sqlite)
        .await
        .with_context(|| {
            format!(
                "opening the SQLite store at {}",
                settings.sqlite.path.display()
            )
        })?;
    let operations = OutboxOperations::new(
        std::sync::Arc::new(store.outbox()),
        std::sync::Arc::new(crate::system::SystemClock),
    );
    let report = match command {
        OutboxCommand::Counts => operations
            .count_rows()
            .await
            .map(|counts| render_counts(&counts)),
        OutboxCommand::List { state, limit } => {
            let state = match state {
                Some(text) => Some(
                    parse_state(text).ok_or_else(|| anyhow::anyhow!("unknown state '{text}'"))?,
                ),
                None => None,
            };
            operations
                .list_rows(state, *limit)
                .await
                .map(|rows| serde_json::json!({ "value": rows.iter().map(render_sync_state).collect::<Vec<_>>() }))
        }
        OutboxCommand::Show { partner_id } => {
            let partner_id = partner_id
                .parse()
                .map_err(|_| anyhow::anyhow!("'{partner_id}' is not a partner id"))?;
            operations
                .sync_state(partner_id)
                .await
                .map(|sync| render_sync_state(&sync))
        }
        OutboxCommand::History { partner_id } => {
            let partner_id: cmp_domain::PartnerId = partner_id
                .parse()
                .map_err(|_| anyhow::anyhow!("'{partner_id}' is not a partner id"))?;
            operations
                .history(partner_id)
                .await
                .map(|history| cmp_http_api::admin::render_history(partner_id, &history))
        }
        OutboxCommand::Requeue { outbox_id } => {
            let id = uuid::Uuid::try_parse(outbox_id)
                .map_err(|_| anyhow::anyhow!("'{outbox_id}' is not an outbox id"))?;
            operations
                .requeue(id)
                .await
                .map(|()| serde_json::json!({ "outboxId": id.to_string(), "state": "unknown" }))
        }
    };
    store.close().await;
    Ok(report?)
}

/// Mints a development token as `options` say.
///
/// # Errors
/// Outside development auth mode or in production, or when the key cannot be read.
pub fn mint_token(settings: &crate::Settings, options: &MintOptions) -> anyhow::Result<String> {
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

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn arguments_select_the_job() {
        assert_eq!(parse(&args("")), Ok(Command::Serve));
        assert_eq!(parse(&args("serve")), Ok(Command::Serve));
        assert_eq!(parse(&args("check-graph")), Ok(Command::CheckGraph));
        assert_eq!(parse(&args("--help")), Ok(Command::Help));
        let Ok(Command::MintToken(mint)) =
            parse(&args("mint-token --role A --role B --lifetime 60"))
        else {
            panic!("mint-token parses")
        };
        assert_eq!(
            (mint.roles, mint.lifetime_seconds),
            (vec!["A".to_owned(), "B".to_owned()], 60)
        );
        let Ok(Command::MintToken(default)) = parse(&args("mint-token")) else {
            panic!("mint-token parses")
        };
        assert_eq!(
            default.roles,
            vec!["DeviceManagementServiceConfig.ReadWrite.All".to_owned()]
        );
        assert!(parse(&args("mint-token --lifetime 0")).is_err());
        assert!(parse(&args("mint-token --role")).is_err());
        assert_eq!(
            parse(&args("outbox counts")),
            Ok(Command::Outbox(OutboxCommand::Counts))
        );
        assert_eq!(
            parse(&args("outbox list --state dead --limit 5")),
            Ok(Command::Outbox(OutboxCommand::List {
                state: Some("dead".into()),
                limit: 5
            }))
        );
        assert!(parse(&args("outbox list --limit x")).is_err());
        let error = parse(&args("serve --port 1")).expect_err("unknown");
        assert!(
            error.contains("serve --port 1") && error.contains("usage"),
            "{error}"
        );
    }
}
