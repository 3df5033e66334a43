//! The one service skeleton. A service names its parts by implementing [`Service`] (settings,
//! migrations, queue and handler, routes, API document, extra tasks); the rest is here, once:
//!
//! - [`Application`]: build (settings check, metrics, authentication, database, migrations,
//!   port, health, docs, admin routes, `/metrics`, messaging, the retention pruner and the
//!   gauges' refresh) and run until stopped.
//! - [`run_from_environment`]: the whole process, what every `main` calls.
//! - [`foundation`]: the database, port and broker status the parts share.
//! - [`tasks`]: the long-running tasks and the order in which they stop.
//! - [`schedule`]: a cron job that never overlaps itself (timeout sweep, pruner).

pub mod foundation;
pub mod schedule;
pub mod tasks;

use std::time::Duration;

use axum::Router;
use sea_orm_migration::MigratorTrait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::configuration::ServiceSettings;
use crate::http::auth::Authenticator;
use crate::messaging::{MessageHandler, Messaging};
use crate::retention::{Pruner, Retention};
use crate::shutdown::Shutdown;

pub use foundation::{Foundation, StartupError};
pub use tasks::{Task, TaskError, TaskFailed};

/// What makes one service different from another.
pub trait Service: 'static {
    /// The service's name: logs, connection names, AMQP `app_id`, consumer tags.
    const NAME: &'static str;
    /// The queue [`Service::Handler`] consumes.
    const QUEUE: &'static str;
    /// [`ServiceSettings`] itself, or a struct that flattens it and adds sections.
    type Settings: Serialize + DeserializeOwned + AsRef<ServiceSettings> + Send;
    type Migrator: MigratorTrait;
    type Handler: MessageHandler;

    /// Built-in defaults, under the file and the environment.
    fn default_settings() -> Self::Settings;

    /// Refuses the service's own settings when they cannot work (the shared sections are
    /// checked by [`Application::build`] itself); by default there is nothing more to check.
    fn validate(_settings: &Self::Settings) -> Result<(), String> {
        Ok(())
    }

    /// The service's own paths; health, errors and the admin routes are added to it.
    fn openapi() -> utoipa::openapi::OpenApi;

    /// What the pruner removes from this service's database and when: the shared outbox and
    /// inbox rules, and the service's own history rules (`crate::retention`).
    fn retention() -> Retention {
        Retention::shared()
    }

    /// The route template whose `POST` refusals count as `orders_rejected_total{reason}` (the
    /// orchestrator's `/api/orders`); `None`, the default: the service takes no orders.
    const ORDER_ROUTE: Option<&'static str> = None;

    /// Describes this service's own metrics and registers them at zero, so every series is
    /// present from the first scrape (docs/observability.md); called once at build, after the
    /// shared metrics.
    fn register_metrics() {}

    /// The service's routes, handler and extra tasks, on the shared foundation.
    fn assemble(settings: &Self::Settings, foundation: &Foundation) -> Parts<Self::Handler>;
}

/// What [`Service::assemble`] hands over.
pub struct Parts<H> {
    /// The service's own routes (health, docs and `/api/admin/dead-letters` come on top).
    pub routes: Router,
    pub handler: H,
    /// Tasks stopped with the HTTP server, before the consumers and the relay's last flush.
    pub tasks: Vec<Task>,
}

impl<H> Parts<H> {
    pub fn new(routes: Router, handler: H) -> Self {
        Self {
            routes,
            handler,
            tasks: Vec::new(),
        }
    }

    pub fn with_task(mut self, task: Task) -> Self {
        self.tasks.push(task);
        self
    }
}

/// A service built and ready to run.
pub struct Application<S: Service> {
    port: u16,
    listener: tokio::net::TcpListener,
    router: Router,
    messaging: Messaging<S::Handler>,
    tasks: Vec<Task>,
    grace: Duration,
}

impl<S: Service> Application<S> {
    pub async fn build(settings: S::Settings) -> Result<Self, StartupError> {
        S::validate(&settings).map_err(StartupError::Settings)?;
        let common = settings.as_ref();
        common.amqp.validate().map_err(StartupError::Settings)?;
        common
            .retention
            .validate()
            .map_err(StartupError::Settings)?;
        common
            .rate_limit
            .validate()
            .map_err(StartupError::Settings)?;
        common
            .telemetry
            .validate()
            .map_err(StartupError::Settings)?;
        let auth = Authenticator::from_settings(common)
            .await
            .map_err(|e| StartupError::Settings(e.to_string()))?;
        crate::metrics::register(S::QUEUE, S::ORDER_ROUTE.is_some());
        crate::lifecycle::set_success_ratio(common.telemetry.log_success_ratio);
        S::register_metrics();
        let foundation = Foundation::prepare::<S::Migrator>(common).await?;
        let gauges = crate::metrics::gauges::Gauges {
            db: foundation.db.clone(),
            broker: foundation.broker.clone(),
            queue: S::QUEUE,
            every: Duration::from_millis(common.telemetry.gauge_refresh_ms),
        };
        // Read once now, so the first scrape shows the backlog as it is, not zero.
        gauges.refresh().await;
        let parts = S::assemble(&settings, &foundation);
        let pruner = Pruner::new(
            foundation.db.clone(),
            common.retention.clone(),
            &S::retention(),
        );
        let routes = parts
            .routes
            .merge(crate::http::health::router(
                foundation
                    .readiness()
                    .warning_auth_disabled(common.auth.disabled),
            ))
            .merge(crate::http::admin::router(S::NAME, S::QUEUE, common))
            .merge(crate::http::retention::router(pruner.clone()))
            .merge(crate::metrics::router());
        let mut tasks = parts.tasks;
        tasks.push(pruning(pruner));
        tasks.push(gauges.task());
        let http_metrics = crate::metrics::http::HttpMetrics {
            order_route: S::ORDER_ROUTE,
        };
        let router = crate::http::server::finish(
            routes,
            S::openapi(),
            &auth,
            &common.rate_limit,
            http_metrics,
        );
        let messaging = foundation.messaging(S::NAME, common, S::QUEUE, parts.handler);
        Ok(Self {
            port: foundation.port,
            listener: foundation.listener,
            router,
            messaging,
            tasks,
            grace: Duration::from_millis(common.shutdown_grace_ms),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves HTTP, the service's tasks and messaging until `shutdown` or until one of them
    /// ends; then stops HTTP and the tasks, then the consumers and the relay (see [`tasks`]).
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), TaskFailed> {
        let db = self.messaging.db.clone();
        let (listener, router) = (self.listener, self.router);
        let http = Task::new("http", move |stop| async move {
            crate::http::server::serve(listener, router, stop)
                .await
                .map_err(TaskError::from)
        });
        let messaging = self.messaging;
        let messaging = Task::new("messaging", move |stop| async move {
            messaging.run(stop).await;
            Ok(())
        });
        let mut front = vec![http];
        front.extend(self.tasks);
        let outcome = tasks::supervise(shutdown, self.grace, front, vec![messaging]).await;
        let _ = db.close().await;
        tracing::info!("service stopped");
        outcome
    }
}

/// The pruner, on `retention.schedule` unless disabled, a front-tier task: on the stop signal
/// its runs end between two batches.
fn pruning(pruner: Pruner) -> Task {
    Task::new("retention", move |stop| async move {
        pruner.serve(stop).await.map_err(TaskError::from)
    })
}

/// The whole process: settings from the environment, JSON logs on stdout (and traces over OTLP
/// when `telemetry.otlp_endpoint` is set), serve until SIGTERM or Ctrl-C.
/// Every `main` is this and nothing else, so whatever runs it (the fault-injection tests'
/// `fleet-node` too) runs exactly the production service.
pub async fn run_from_environment<S: Service>() -> Result<(), Box<dyn std::error::Error>> {
    let settings = crate::configuration::load(&S::default_settings())?;
    let common = settings.as_ref();
    let telemetry = crate::telemetry::Telemetry::start(S::NAME, &common.telemetry)?;
    crate::telemetry::init(telemetry.subscriber(S::NAME, &common.log_level, std::io::stdout));
    let app = Application::<S>::build(settings)
        .await
        .inspect_err(|error| {
            tracing::error!(%error, "service did not start");
        })?;
    let outcome = app.run_until_stopped(crate::shutdown::on_os_signal()).await;
    // The spans of the last messages handled are exported before the process ends; the flush
    // blocks, and the export it waits for runs on this runtime, so it waits off the workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    outcome?;
    Ok(())
}
