//! Builds and runs the service.

use axum::Router;
use sea_orm::DatabaseConnection;
use utoipa::OpenApi;

use saga_common::configuration::ServiceSettings;
use saga_common::messaging::outbox::RelayWakeup;
use saga_common::messaging::{Messaging, topology};
use saga_common::service::{Foundation, StartupError};
use saga_common::shutdown::Shutdown;

use crate::migration::Migrator;
use crate::saga::replies::SagaReplies;

pub const SERVICE: &str = "orchestrator";

/// Port 3000, database `saga_orchestrator`.
pub fn default_settings() -> ServiceSettings {
    ServiceSettings::new(3000, "saga_orchestrator")
}

/// What the order handlers share.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    /// Wakes the outbox relay after an order commits, so its first command leaves at once.
    pub wakeup: RelayWakeup,
}

pub struct Application {
    port: u16,
    listener: tokio::net::TcpListener,
    router: Router,
    messaging: Messaging<SagaReplies>,
}

impl Application {
    pub async fn build(settings: ServiceSettings) -> Result<Self, StartupError> {
        let foundation = Foundation::prepare::<Migrator>(&settings).await?;
        let state = AppState {
            db: foundation.db.clone(),
            wakeup: foundation.wakeup.clone(),
        };
        let routes = Router::new()
            .merge(crate::orders::router(state))
            .merge(saga_common::http::health::router(foundation.readiness()));
        let router = saga_common::http::server::finish(routes, crate::api_doc::ApiDoc::openapi());
        let messaging = foundation.messaging(
            SERVICE,
            &settings,
            topology::ORCHESTRATOR_REPLIES,
            SagaReplies {
                db: foundation.db.clone(),
            },
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
