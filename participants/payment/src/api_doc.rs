//! The OpenAPI document of this service's own routes; the skeleton adds the probes, the error
//! body and the dead-letter admin routes.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Payment participant", description = "Customer accounts (balance and e-mail address; every write publishes `account.updated` on `saga.events`) and the charges and refunds the order saga commands."),
    paths(
        crate::accounts::put_account,
        crate::accounts::get_account,
        crate::payments::list_payments,
    ),
    tags(
        (name = "accounts", description = "Customer balances and e-mail addresses"),
        (name = "payments", description = "Charges, refunds and declines"),
    )
)]
pub struct ApiDoc;
