//! `cmp-server`: runs the compliance-partner onboarding service.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = cmp_server::config::load()?;
    cmp_server::telemetry::init(&settings.telemetry)?;
    let application = cmp_server::Application::build(settings).await?;
    application
        .run_until_stopped(cmp_server::shutdown_signal())
        .await
}
