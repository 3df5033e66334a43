//! Builds and runs the service.

use std::time::Duration;

use axum::Router;
use utoipa::OpenApi;

use saga_common::messaging::{Messaging, topology};
use saga_common::service::{Foundation, StartupError};
use saga_common::shutdown::Shutdown;

use crate::configuration::Settings;
use crate::migration::Migrator;
use crate::orders::intake::{self, Intake};
use crate::saga::replies::SagaReplies;
use crate::state::AppState;

pub const SERVICE: &str = "orchestrator";

pub use crate::configuration::default_settings;

pub struct Application {
    port: u16,
    listener: tokio::net::TcpListener,
    router: Router,
    messaging: Messaging<SagaReplies>,
    state: AppState,
    intake: intake::Writer,
    grace: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let foundation = Foundation::prepare::<Migrator>(&settings.service).await?;
        let state = AppState {
            db: foundation.db.clone(),
            wakeup: foundation.wakeup.clone(),
            saga: settings.saga.clone(),
        };
        let (intake, writer) = Intake::new(&settings.intake);
        let routes = Router::new()
            .merge(crate::orders::router(state.clone(), intake))
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
            intake: writer,
            grace: Duration::from_millis(settings.service.shutdown_grace_ms),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves HTTP and messaging and runs the order intake and the timeout worker until
    /// `shutdown`; then waits for the intake and the worker, each within the grace period.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> std::io::Result<()> {
        let state = self.state;
        let intake = self.intake.spawn(
            state.db.clone(),
            state.wakeup.clone(),
            shutdown.clone(),
            self.grace,
        );
        let timeouts = crate::saga::timeouts::start(
            state.db.clone(),
            state.saga.clone(),
            state.wakeup.clone(),
            shutdown.clone(),
        )
        .await
        .map_err(std::io::Error::other)?;
        // Side by side: the intake ends once the HTTP server has drained (its handles are gone),
        // while the consumers still drain, before the pool closes.
        let (grace, signal) = (self.grace, shutdown.clone());
        let (outcome, ()) = tokio::join!(
            saga_common::service::run(self.listener, self.router, self.messaging, shutdown),
            async move {
                signal.wait().await;
                for (name, task) in [("order intake", intake), ("timeout worker", timeouts)] {
                    let stopped = async { task.await.is_ok() };
                    if !tokio::time::timeout(grace * 2, stopped)
                        .await
                        .unwrap_or(false)
                    {
                        tracing::warn!(task = name, "did not stop cleanly within the grace period");
                    }
                }
            }
        );
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
