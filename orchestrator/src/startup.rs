//! The orchestrator's parts on the shared skeleton (`saga_common::service`): the order, saga
//! and analytics routes, the reply handler, the order intake, the timeout scheduler, admission
//! control's recount, the sales rollups' fold and the saga gauges' refresh.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use utoipa::OpenApi;

use saga_common::configuration::ServiceSettings;
use saga_common::http::health::Readiness;
use saga_common::messaging::{BrokerStatus, topology};
use saga_common::retention::{Retention, Rule};
use saga_common::service::{self, Foundation, Parts, Service, Task, TaskError};

use crate::admission::{Admission, recount};
use crate::configuration::Settings;
use crate::orders::intake::Intake;
use crate::saga::replies::SagaReplies;
use crate::state::AppState;

pub const SERVICE: &str = "orchestrator";

pub use crate::configuration::default_settings;

pub struct Orchestrator;

impl AsRef<ServiceSettings> for Settings {
    fn as_ref(&self) -> &ServiceSettings {
        &self.service
    }
}

impl Service for Orchestrator {
    const NAME: &'static str = SERVICE;
    const QUEUE: &'static str = topology::ORCHESTRATOR_REPLIES;
    /// Its refusals are `orders_rejected_total{reason}`.
    const ORDER_ROUTE: Option<&'static str> = Some("/api/orders");
    type Settings = Settings;
    type Migrator = crate::migration::Migrator;
    type Handler = SagaReplies;

    fn default_settings() -> Settings {
        default_settings()
    }

    /// The console's participant URLs.
    fn validate(settings: &Settings) -> Result<(), String> {
        settings.console.validate()
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        crate::api_doc::ApiDoc::openapi()
    }

    /// Finished orders older than `retention.history` (and finished that long ago) with their
    /// transitions, never a saga in flight. A published outbox row is kept while its saga is in
    /// flight, whatever its age: a timeout resend copies the pending command's row
    /// (`outbox::resend`).
    fn retention() -> Retention {
        Retention::shared()
            // A scalar subquery: one lookup by key per row; as a `NOT EXISTS` the generic plan
            // compares every row with every saga in flight.
            .outbox_only_where(
                "(SELECT o.status FROM orders o WHERE o.order_id = outbox.saga_id) \
                 IS DISTINCT FROM 'PENDING'",
            )
            .with(
                Rule::history(
                    "orders",
                    "order_id",
                    "order_id < $2 AND status IN ('COMPLETED', 'FAILED') \
                 AND created_at < $1 AND updated_at < $1",
                )
                .with_dependent("saga_transitions", "order_id"),
            )
    }

    fn register_metrics() {
        crate::saga::facts::register();
    }

    fn assemble(settings: &Settings, foundation: &Foundation) -> Parts<SagaReplies> {
        let admission = Admission::new(&settings.admission);
        let state = AppState {
            db: foundation.db.clone(),
            wakeup: foundation.wakeup.clone(),
            saga: settings.saga.clone(),
            admission: admission.clone(),
        };
        // The queue bound is admission control's: off, a full queue makes requests wait.
        let max_queued = settings
            .admission
            .enabled
            .then_some(settings.admission.max_queued);
        let (intake, writer) = Intake::new(&settings.intake, max_queued);
        let routes = Router::new()
            .merge(crate::orders::router(state.clone(), intake))
            // Operator actions on sagas sit behind the operator token, as the dead letters.
            .merge(saga_common::http::auth::protect(crate::saga::api::router(
                state.clone(),
            )))
            .merge(saga_common::http::auth::protect(crate::saga::bulk::router(
                state.clone(),
            )))
            .merge(saga_common::http::auth::protect(crate::analytics::router(
                state.clone(),
            )))
            .merge(crate::console::router(crate::console::ConsoleState::new(
                state.clone(),
                &settings.console,
                Readiness {
                    db: foundation.db.clone(),
                    broker: foundation.broker.clone(),
                    auth_disabled: false,
                },
            )));
        let handler = SagaReplies {
            settings: settings.saga.clone(),
            admission: admission.clone(),
        };
        // Both stop with the front tier: the intake once HTTP has drained and its last orders
        // are written, the sweep before the relay's last flush (it resends commands).
        let grace = Duration::from_millis(settings.service.shutdown_grace_ms) / 2;
        let timeouts = timeouts(state.clone(), foundation.broker.clone());
        let recount = settings
            .admission
            .enabled
            .then(|| recount::task(foundation.db.clone(), admission));
        let parts = Parts::new(routes, handler)
            .with_task(Task::new("order intake", move |stop| async move {
                writer
                    .spawn(state.db.clone(), state.wakeup.clone(), stop, grace)
                    .await
                    .map_err(TaskError::from)
            }))
            .with_task(timeouts)
            .with_task(crate::analytics::fold::task(foundation.db.clone()))
            .with_task(crate::saga::facts::gauges(
                foundation.db.clone(),
                Duration::from_millis(settings.service.telemetry.gauge_refresh_ms),
            ));
        match recount {
            Some(recount) => parts.with_task(recount),
            None => parts,
        }
    }
}

/// The sweep for overdue sagas; it resends commands, so it stops before the relay's last flush.
/// It asks the broker about the participants' queues on the service's own connection.
fn timeouts(state: AppState, broker: Arc<BrokerStatus>) -> Task {
    Task::new("timeouts", move |stop| async move {
        crate::saga::timeouts::start(state.db, state.saga, state.wakeup, broker, stop)
            .await
            .map_err(TaskError::from)?
            .await
            .map_err(TaskError::from)
    })
}

pub type Application = service::Application<Orchestrator>;

/// What `main` runs (and the fault tests' `fleet-node`).
pub async fn run_from_environment() -> Result<(), Box<dyn std::error::Error>> {
    service::run_from_environment::<Orchestrator>().await
}
