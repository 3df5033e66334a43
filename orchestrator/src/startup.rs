//! The orchestrator's parts on the shared skeleton (`saga_common::service`): the order and
//! saga routes, the reply handler, the order intake and the timeout scheduler.

use axum::Router;
use sea_orm::DatabaseConnection;
use utoipa::OpenApi;

use saga_common::configuration::ServiceSettings;
use saga_common::messaging::outbox::RelayWakeup;
use saga_common::messaging::topology;
use saga_common::service::{self, Foundation, Parts, Service, Task, TaskError};

use crate::configuration::{SagaSettings, Settings};
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
    /// Writes new orders, many requests' at a time. Its writer ends once the HTTP server has
    /// stopped and dropped the last handle, after answering every request in flight.
    pub intake: Intake,
}

pub struct Orchestrator;

impl AsRef<ServiceSettings> for Settings {
    fn as_ref(&self) -> &ServiceSettings {
        &self.service
    }
}

impl Service for Orchestrator {
    const NAME: &'static str = SERVICE;
    const QUEUE: &'static str = topology::ORCHESTRATOR_REPLIES;
    type Settings = Settings;
    type Migrator = crate::migration::Migrator;
    type Handler = SagaReplies;

    fn default_settings() -> Settings {
        default_settings()
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        crate::api_doc::ApiDoc::openapi()
    }

    fn assemble(settings: &Settings, foundation: &Foundation) -> Parts<SagaReplies> {
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
            ));
        let handler = SagaReplies {
            settings: settings.saga.clone(),
        };
        Parts::new(routes, handler).with_task(timeouts(state))
    }
}

/// The sweep for overdue sagas; it resends commands, so it stops before the relay's last flush.
fn timeouts(state: AppState) -> Task {
    Task::new("timeouts", move |stop| async move {
        let mut scheduler = crate::saga::timeouts::start(state.db, state.saga, state.wakeup)
            .await
            .map_err(TaskError::from)?;
        stop.wait().await;
        scheduler.shutdown().await.map_err(TaskError::from)
    })
}

pub type Application = service::Application<Orchestrator>;

/// What `main` runs (and the fault tests' `fleet-node`).
pub async fn run_from_environment() -> Result<(), Box<dyn std::error::Error>> {
    service::run_from_environment::<Orchestrator>().await
}
