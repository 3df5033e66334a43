//! The inventory service's parts on the shared skeleton (`saga_common::service`).

use axum::Router;
use utoipa::OpenApi;

use saga_common::configuration::ServiceSettings;
use saga_common::messaging::topology;
use saga_common::retention::{Retention, Rule};
use saga_common::service::{self, Foundation, Parts, Service};

use crate::commands::InventoryCommands;

pub const SERVICE: &str = "inventory";

pub struct Inventory;

impl Service for Inventory {
    const NAME: &'static str = SERVICE;
    const QUEUE: &'static str = topology::INVENTORY_COMMANDS;
    type Settings = ServiceSettings;
    type Migrator = crate::migration::Migrator;
    type Handler = InventoryCommands;

    /// Port 3002, database `saga_inventory`.
    fn default_settings() -> ServiceSettings {
        ServiceSettings::new(3002, "saga_inventory")
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        crate::api_doc::ApiDoc::openapi()
    }

    /// Reservations older than `retention.history` (and unchanged since) with their lines, by
    /// the order's UUIDv7 id.
    fn retention() -> Retention {
        Retention::shared().with(
            Rule::history(
                "reservations",
                "order_id",
                "order_id < $2 AND created_at < $1 AND updated_at < $1",
            )
            .with_dependent("reservation_lines", "order_id"),
        )
    }

    fn register_metrics() {
        crate::facts::register();
    }

    fn assemble(_: &ServiceSettings, foundation: &Foundation) -> Parts<InventoryCommands> {
        let routes = Router::new()
            .merge(crate::products::router(foundation.db.clone()))
            .merge(crate::reservations::router(foundation.db.clone()));
        Parts::new(routes, InventoryCommands)
    }
}

pub type Application = service::Application<Inventory>;

pub fn default_settings() -> ServiceSettings {
    Inventory::default_settings()
}

/// What `main` runs (and the fault tests' `fleet-node`).
pub async fn run_from_environment() -> Result<(), Box<dyn std::error::Error>> {
    service::run_from_environment::<Inventory>().await
}
