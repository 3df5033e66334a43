//! The OpenAPI document.

use saga_common::http::admin::AdminDocs;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Inventory participant", description = "Product stock and the reservations and releases the order saga commands."),
    paths(
        crate::products::put_product,
        crate::products::get_product,
        crate::reservations::list_reservations,
        saga_common::http::health::live,
        saga_common::http::health::ready,
    ),
    components(schemas(saga_common::http::ErrorBody, saga_common::http::FieldError)),
    // The /api/admin/dead-letters routes, their schemas and the bearer security scheme.
    modifiers(&AdminDocs),
    tags(
        (name = "products", description = "Stock on hand and reserved"),
        (name = "reservations", description = "Stock held for orders, and released"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;
