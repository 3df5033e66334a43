//! The OpenAPI document of the orchestrator's own routes; the skeleton adds the probes, the
//! error body and the dead-letter admin routes.

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
        crate::saga::bulk::bulk_retry,
        crate::saga::bulk::bulk_compensate,
        crate::analytics::api::get_summary,
        crate::console::overview::get_overview,
        crate::console::proxy::forward,
    ),
    tags(
        (name = "orders", description = "Place orders and follow their sagas"),
        (name = "operations", description = "Operators: search sagas, retry or compensate one or many (bearer token)"),
        (name = "analytics", description = "Operators: sales over a range of minutes, from rollups (bearer token)"),
        (name = "console", description = "Operators: the API behind the console at `/console` (bearer token)"),
    )
)]
pub struct ApiDoc;
