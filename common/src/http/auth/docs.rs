//! The two bearer schemes every service's OpenAPI document declares, so Swagger UI's Authorize
//! button offers both: `operator_token` and `customer_jwt`. A route lists the ones it accepts:
//! `security(("operator_token" = []))`, or for a customer's route
//! `security(("operator_token" = []), ("customer_jwt" = []))` (either one).

use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The operator's bearer scheme.
pub const OPERATOR_SCHEME: &str = "operator_token";
/// The customer's bearer scheme (a JWT).
pub const CUSTOMER_SCHEME: &str = "customer_jwt";

/// Declares both schemes.
pub struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            OPERATOR_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator token (`APP__AUTH__OPERATOR_TOKEN`); `deploy/run.sh` prints the one it generated.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            CUSTOMER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A customer's JWT: `sub` is the customer id, `exp` required; HS256 with `APP__AUTH__JWT_SECRET`, or RS256/ES256 with `APP__AUTH__JWT_PUBLIC_KEY` or `APP__AUTH__JWKS_URL`.",
                    ))
                    .build(),
            ),
        );
    }
}
