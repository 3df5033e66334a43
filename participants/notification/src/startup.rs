//! The notification service's parts on the shared skeleton (`saga_common::service`): the
//! `notification.events` consumer, the operator API and the mail sender task.

use std::sync::Arc;

use axum::Router;
use tokio::sync::Notify;
use utoipa::OpenApi;

use saga_common::messaging::topology;
use saga_common::retention::{Retention, Rule};
use saga_common::service::{self, Foundation, Parts, Service, Task, TaskError};

use crate::configuration::Settings;
use crate::events::NotificationEvents;
use crate::mail::Mailer;
use crate::sender::Sender;

pub const SERVICE: &str = "notification";

pub struct Notification;

impl Service for Notification {
    const NAME: &'static str = SERVICE;
    const QUEUE: &'static str = topology::NOTIFICATION_EVENTS;
    type Settings = Settings;
    type Migrator = crate::migration::Migrator;
    type Handler = NotificationEvents;

    /// Port 3003, database `saga_notification`, mail to the local catcher on port 2525.
    fn default_settings() -> Settings {
        crate::configuration::default_settings()
    }

    /// The `notify` section, and that an SMTP client can be made of it.
    fn validate(settings: &Settings) -> Result<(), String> {
        settings.notify.validate()?;
        Mailer::new(&settings.notify).map(drop)
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        crate::api_doc::ApiDoc::openapi()
    }

    /// Notifications older than `retention.history`, unchanged since and done with (any status
    /// but `PENDING`), by their UUIDv7 id. After that an order's event could be mailed again,
    /// but the inbox forgets it long before (`retention.inbox_window`), and its copy is refused.
    fn retention() -> Retention {
        Retention::shared().with(Rule::history(
            "notifications",
            "id",
            "id < $2 AND created_at < $1 AND updated_at < $1 AND status <> 'PENDING'",
        ))
    }

    fn register_metrics() {
        crate::facts::register();
    }

    fn assemble(settings: &Settings, foundation: &Foundation) -> Parts<NotificationEvents> {
        let wake = Arc::new(Notify::new());
        let routes = Router::new().merge(crate::notifications::router(
            foundation.db.clone(),
            wake.clone(),
        ));
        let handler = NotificationEvents {
            wake: wake.clone(),
            ops_email: settings.notify.ops_email.clone(),
        };
        let sender = match Mailer::new(&settings.notify) {
            Ok(mailer) => Sender {
                db: foundation.db.clone(),
                mailer,
                settings: settings.notify.clone(),
                wake,
            }
            .task(),
            // `validate` made the same client at build; should it fail now, the service stops
            // and says why instead of taking events it cannot mail.
            Err(error) => Task::new("mail", move |_| async move { Err(TaskError::from(error)) }),
        };
        Parts::new(routes, handler).with_task(sender)
    }
}

pub type Application = service::Application<Notification>;

pub fn default_settings() -> Settings {
    Notification::default_settings()
}

/// What `main` runs (and the fault tests' `fleet-node`).
pub async fn run_from_environment() -> Result<(), Box<dyn std::error::Error>> {
    service::run_from_environment::<Notification>().await
}
