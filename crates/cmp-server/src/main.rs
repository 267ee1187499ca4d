//! `cmp-server`: runs the compliance-partner onboarding service, or one of its operator jobs.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A usage error, `--help` and `--version` end here, with exit status 2, 0 and 0.
    let cli = cmp_server::cli::Cli::parse();
    // The configuration is read before the runtime starts: it says how the runtime's workers
    // run (`service.worker_nice_increment`).
    let outcome = cmp_server::config::load().and_then(|loaded| {
        let runtime = cmp_server::runtime::build(loaded.settings.service.worker_nice_increment)
            .map_err(|error| anyhow::Error::new(error).context("starting the async runtime"))?;
        runtime.block_on(cmp_server::cli::run(cli, loaded))
    });
    outcome.unwrap_or_else(|error| {
        // `{:#}` prints the whole chain of context: "invalid configuration: http.port ...".
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}
