//! Builds and runs the service.

use axum::Router;
use utoipa::OpenApi;

use saga_common::configuration::ServiceSettings;
use saga_common::messaging::{Messaging, topology};
use saga_common::service::{Foundation, StartupError};
use saga_common::shutdown::Shutdown;

use crate::commands::PaymentCommands;
use crate::migration::Migrator;

pub const SERVICE: &str = "payment";

/// Port 3001, database `saga_payment`.
pub fn default_settings() -> ServiceSettings {
    ServiceSettings::new(3001, "saga_payment")
}

pub struct Application {
    port: u16,
    listener: tokio::net::TcpListener,
    router: Router,
    messaging: Messaging<PaymentCommands>,
}

impl Application {
    pub async fn build(settings: ServiceSettings) -> Result<Self, StartupError> {
        let foundation = Foundation::prepare::<Migrator>(&settings).await?;
        let db = foundation.db.clone();
        let routes = Router::new()
            .merge(crate::accounts::router(db.clone()))
            .merge(crate::payments::router(db.clone()))
            .merge(saga_common::http::health::router(foundation.readiness()))
            .merge(saga_common::http::admin::router(
                SERVICE,
                topology::PAYMENT_COMMANDS,
                &settings,
            ));
        let router = saga_common::http::server::finish(routes, crate::api_doc::ApiDoc::openapi());
        let messaging = foundation.messaging(
            SERVICE,
            &settings,
            topology::PAYMENT_COMMANDS,
            PaymentCommands,
        );
        Ok(Self {
            port: foundation.port,
            listener: foundation.listener,
            router,
            messaging,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> std::io::Result<()> {
        saga_common::service::run(self.listener, self.router, self.messaging, shutdown).await
    }
}

/// The whole process: settings from the environment, JSON logs on stdout, serve until SIGTERM or
/// Ctrl-C. `main` is this and nothing else, so whatever runs this (the fault-injection tests'
/// `fleet-node` too) runs exactly the production service.
pub async fn run_from_environment() -> Result<(), Box<dyn std::error::Error>> {
    let settings = saga_common::configuration::load(&crate::startup::default_settings())?;
    saga_common::telemetry::init(saga_common::telemetry::subscriber(
        SERVICE,
        &settings.log_level,
        std::io::stdout,
    ));
    let app = Application::build(settings).await?;
    app.run_until_stopped(saga_common::shutdown::on_os_signal())
        .await?;
    Ok(())
}
