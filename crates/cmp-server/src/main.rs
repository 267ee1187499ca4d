//! `cmp-server`: runs the compliance-partner onboarding service, or one of its operator jobs.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // A usage error, `--help` and `--version` end here, with exit status 2, 0 and 0.
    let cli = cmp_server::cli::Cli::parse();
    cmp_server::cli::run(cli).await.unwrap_or_else(|error| {
        // `{:#}` prints the whole chain of context: "invalid configuration: http.port ...".
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}
