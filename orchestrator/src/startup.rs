//! Builds and runs the service.

use axum::Router;
use sea_orm::DatabaseConnection;
use utoipa::OpenApi;

use saga_common::messaging::outbox::RelayWakeup;
use saga_common::messaging::{Messaging, topology};
use saga_common::service::{Foundation, StartupError};
use saga_common::shutdown::Shutdown;

use crate::configuration::{SagaSettings, Settings};
use crate::migration::Migrator;
use crate::orders::intake::Intake;
use crate::saga::replies::SagaReplies;

pub const SERVICE: &str = "orchestrator";

pub use crate::configuration::default_settings;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    /// Wakes the outbox relay after a commit, so the first command leaves at once.
    pub wakeup: RelayWakeup,
    pub saga: SagaSettings,
    /// Writes new orders, many requests' at a time.
    pub intake: Intake,
}

pub struct Application {
    port: u16,
    listener: tokio::net::TcpListener,
    router: Router,
    messaging: Messaging<SagaReplies>,
    state: AppState,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let foundation = Foundation::prepare::<Migrator>(&settings.service).await?;
        let state = AppState {
            db: foundation.db.clone(),
            wakeup: foundation.wakeup.clone(),
            saga: settings.saga.clone(),
            intake: Intake::start(
                foundation.db.clone(),
                foundation.wakeup.clone(),
                &settings.intake,
            ),
        };
        let routes = Router::new()
            .merge(crate::orders::router(state.clone()))
            // Operator actions on sagas sit behind the same admin token as the dead letters.
            .merge(saga_common::http::admin::protect(
                crate::saga::api::router(state.clone()),
                &settings.service.admin,
            ))
            .merge(saga_common::http::health::router(foundation.readiness()))
            .merge(saga_common::http::admin::router(
                SERVICE,
                topology::ORCHESTRATOR_REPLIES,
                &settings.service,
            ));
        let router = saga_common::http::server::finish(routes, crate::api_doc::ApiDoc::openapi());
        let messaging = foundation.messaging(
            SERVICE,
            &settings.service,
            topology::ORCHESTRATOR_REPLIES,
            SagaReplies {
                settings: settings.saga.clone(),
            },
        );
        Ok(Self {
            port: foundation.port,
            listener: foundation.listener,
            router,
            messaging,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves HTTP and messaging and runs the timeout worker until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> std::io::Result<()> {
        let mut scheduler = crate::saga::timeouts::start(
            self.state.db.clone(),
            self.state.saga.clone(),
            self.state.wakeup.clone(),
        )
        .await
        .map_err(std::io::Error::other)?;
        let outcome =
            saga_common::service::run(self.listener, self.router, self.messaging, shutdown).await;
        if let Err(error) = scheduler.shutdown().await {
            tracing::warn!(%error, "timeout worker did not stop cleanly");
        }
        outcome
    }
}

/// The whole process: settings from the environment, JSON logs on stdout, serve until SIGTERM or
/// Ctrl-C. `main` is this and nothing else, so whatever runs this (the fault-injection tests'
/// `fleet-node` too) runs exactly the production service.
pub async fn run_from_environment() -> Result<(), Box<dyn std::error::Error>> {
    let settings = saga_common::configuration::load(&crate::configuration::default_settings())?;
    saga_common::telemetry::init(saga_common::telemetry::subscriber(
        SERVICE,
        &settings.service.log_level,
        std::io::stdout,
    ));
    let app = Application::build(settings).await?;
    app.run_until_stopped(saga_common::shutdown::on_os_signal())
        .await?;
    Ok(())
}
