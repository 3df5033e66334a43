//! The OpenAPI document of this service's own routes; the skeleton adds the probes, the error
//! body and the dead-letter admin routes.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Inventory participant", description = "Product stock and the reservations and releases the order saga commands."),
    paths(
        crate::products::put_product,
        crate::products::get_product,
        crate::reservations::list_reservations,
    ),
    tags(
        (name = "products", description = "Stock on hand and reserved"),
        (name = "reservations", description = "Stock held for orders, and released"),
    )
)]
pub struct ApiDoc;
