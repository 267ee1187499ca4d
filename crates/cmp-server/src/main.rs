//! `cmp-server`: runs the compliance-partner onboarding service, or one of its operator jobs.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match cmp_server::cli::parse(&arguments) {
        Ok(command) => cmp_server::cli::run(command).await,
        Err(usage) => Err(anyhow::anyhow!(usage)),
    };
    outcome.unwrap_or_else(|error| {
        // `{:#}` prints the whole chain of context: "invalid configuration: http.port ...".
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}
