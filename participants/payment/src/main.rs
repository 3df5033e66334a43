use saga_common::{configuration, shutdown, telemetry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = configuration::load(&payment::startup::default_settings())?;
    telemetry::init(telemetry::subscriber(
        "payment",
        &settings.log_level,
        std::io::stdout,
    ));
    let app = payment::startup::Application::build(settings).await?;
    let stop = shutdown::Shutdown::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        trigger.trigger();
    });
    app.run_until_stopped(stop).await?;
    Ok(())
}
