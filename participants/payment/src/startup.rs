//! The payment service's parts on the shared skeleton (`saga_common::service`).

use axum::Router;
use utoipa::OpenApi;

use saga_common::configuration::ServiceSettings;
use saga_common::messaging::topology;
use saga_common::retention::{Retention, Rule};
use saga_common::service::{self, Foundation, Parts, Service};

use crate::commands::PaymentCommands;

pub const SERVICE: &str = "payment";

pub struct Payment;

impl Service for Payment {
    const NAME: &'static str = SERVICE;
    const QUEUE: &'static str = topology::PAYMENT_COMMANDS;
    type Settings = ServiceSettings;
    type Migrator = crate::migration::Migrator;
    type Handler = PaymentCommands;

    /// Port 3001, database `saga_payment`.
    fn default_settings() -> ServiceSettings {
        ServiceSettings::new(3001, "saga_payment")
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        crate::api_doc::ApiDoc::openapi()
    }

    /// Payments older than `retention.history` (and unchanged since), by their UUIDv7 key.
    fn retention() -> Retention {
        Retention::shared().with(Rule::history(
            "payments",
            "payment_id",
            "payment_id < $2 AND created_at < $1 AND updated_at < $1",
        ))
    }

    fn register_metrics() {
        crate::facts::register();
    }

    fn assemble(_: &ServiceSettings, foundation: &Foundation) -> Parts<PaymentCommands> {
        let routes = Router::new()
            .merge(crate::accounts::router(
                foundation.db.clone(),
                foundation.wakeup.clone(),
            ))
            .merge(crate::payments::router(foundation.db.clone()));
        Parts::new(routes, PaymentCommands)
    }
}

pub type Application = service::Application<Payment>;

pub fn default_settings() -> ServiceSettings {
    Payment::default_settings()
}

/// What `main` runs (and the fault tests' `fleet-node`).
pub async fn run_from_environment() -> Result<(), Box<dyn std::error::Error>> {
    service::run_from_environment::<Payment>().await
}
