//! The OpenAPI document.

use saga_common::http::admin::AdminDocs;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Order orchestrator", description = "Places orders and drives each through its saga: charge the payment, reserve the stock, compensate with a refund when stock runs out."),
    paths(
        crate::orders::api::place_order,
        crate::orders::api::get_order,
        crate::orders::api::get_timeline,
        crate::orders::api::list_orders,
        crate::saga::api::list_sagas,
        crate::saga::api::retry_saga,
        crate::saga::api::compensate_saga,
        saga_common::http::health::live,
        saga_common::http::health::ready,
    ),
    components(schemas(saga_common::http::ErrorBody, saga_common::http::FieldError)),
    // The /api/admin/dead-letters routes, their schemas and the bearer security scheme.
    modifiers(&AdminDocs),
    tags(
        (name = "orders", description = "Place orders and follow their sagas"),
        (name = "operations", description = "Operators: stuck sagas, retry, compensate (bearer token)"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;
