//! The OpenAPI document of this service's own routes; the skeleton adds the probes, the error
//! body and the dead-letter admin routes.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Notification service", description = "E-mail about orders (confirmations, failure notices) and low-stock alerts, sent from a mail outbox."),
    paths(
        crate::notifications::api::list_notifications,
        crate::notifications::api::resend_notification,
    ),
    tags(
        (name = "notifications", description = "Every e-mail owed, its status and its attempts"),
    )
)]
pub struct ApiDoc;
