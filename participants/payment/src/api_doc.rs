//! The OpenAPI document.

use saga_common::http::admin::AdminDocs;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Payment participant", description = "Customer accounts and the charges and refunds the order saga commands."),
    paths(
        crate::accounts::put_account,
        crate::accounts::get_account,
        crate::payments::list_payments,
        saga_common::http::health::live,
        saga_common::http::health::ready,
    ),
    components(schemas(saga_common::http::ErrorBody, saga_common::http::FieldError)),
    // The /api/admin/dead-letters routes, their schemas and the bearer security scheme.
    modifiers(&AdminDocs),
    tags(
        (name = "accounts", description = "Customer balances"),
        (name = "payments", description = "Charges, refunds and declines"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;
