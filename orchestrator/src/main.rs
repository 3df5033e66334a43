use saga_common::{configuration, shutdown, telemetry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = configuration::load(&orchestrator::configuration::default_settings())?;
    telemetry::init(telemetry::subscriber(
        "orchestrator",
        &settings.service.log_level,
        std::io::stdout,
    ));
    let app = orchestrator::startup::Application::build(settings).await?;
    let stop = shutdown::Shutdown::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        trigger.trigger();
    });
    app.run_until_stopped(stop).await?;
    Ok(())
}
