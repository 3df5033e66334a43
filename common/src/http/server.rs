//! Router finishing touches shared by every service (the shared part of the API document
//! included), and serving with graceful shutdown.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::admin::AdminDocs;
use super::auth::Authenticator;
use super::error::{ApiError, ErrorBody, FieldError};
use super::extract::BODY_LIMIT_BYTES;
use crate::configuration::RateLimitSettings;
use crate::shutdown::Shutdown;

/// What every service's document holds besides its own paths: the probes, the error body and
/// the dead-letter admin routes with their bearer scheme.
#[derive(OpenApi)]
#[openapi(
    paths(super::health::live, super::health::ready),
    components(schemas(ErrorBody, FieldError)),
    modifiers(&AdminDocs),
    tags((name = "health", description = "Probes"))
)]
struct SharedDocs;

/// Adds Swagger UI (`/api/docs`, document at `/api/docs/openapi.json`: `openapi` and the shared
/// paths), JSON 404/405 answers, the 1 MiB body limit, the rate limits, the authentication
/// layer and the correlation-id middleware to a service's routes.
///
/// Layers run outermost first: the HTTP metrics (so every answer is timed and counted, refusals
/// included; see [`crate::metrics::http`]), correlation id (so a refusal is logged with the id), then
/// authentication, which never refuses (the probes and the docs stay open; guards on the routes
/// decide) but puts the [`Caller`](super::auth::Caller) into the request, then the rate limits,
/// keyed on that caller, then the routes. The rate limits come before the body is read, so a
/// refused request costs no parsing.
pub fn finish(
    routes: Router,
    openapi: utoipa::openapi::OpenApi,
    auth: &Authenticator,
    rate_limit: &RateLimitSettings,
    metrics: crate::metrics::http::HttpMetrics,
) -> Router {
    let mut openapi = openapi.merge_from(SharedDocs::openapi());
    if rate_limit.enabled {
        super::rate_limit::document(&mut openapi);
    }
    let router = routes
        .merge(SwaggerUi::new("/api/docs").url("/api/docs/openapi.json", openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES));
    super::rate_limit::layer(router, rate_limit)
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            super::auth::middleware,
        ))
        .layer(axum::middleware::from_fn(super::correlation::middleware))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::http::middleware,
        ))
}

async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::method_not_allowed()
}

/// Serves until `shutdown`; requests in flight are allowed to finish. Each request carries its
/// peer address (`ConnectInfo<SocketAddr>`), which the rate limits key anonymous callers on.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await
}
