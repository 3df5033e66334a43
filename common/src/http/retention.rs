//! `POST /api/admin/retention/prune[?dry_run=true]`: run the pruner now, or see what it would
//! remove, behind the operator token ([`super::admin::protect`]). Every service has it.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use utoipa::{IntoParams, OpenApi};

use super::error::{ApiError, ErrorBody};
use super::query::{FromQuery, Params, QueryFields};
use crate::retention::{PruneReport, Pruner, RuleReport};

/// The route, for the operator.
pub fn router(pruner: Pruner) -> Router {
    let routes = Router::new()
        .route("/api/admin/retention/prune", post(prune))
        .with_state(pruner);
    super::admin::protect(routes)
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PruneQuery {
    /// `true`: count what a run would remove now, and remove nothing. Default `false`.
    #[param(value_type = Option<bool>)]
    pub dry_run: bool,
}

impl FromQuery for PruneQuery {
    fn from_query(fields: &mut QueryFields) -> Self {
        Self {
            dry_run: fields.value("dry_run"),
        }
    }
}

/// Runs one retention pass now (the scheduled one waits for it, or it for the scheduled one)
/// and reports what it removed per rule and table, with each rule's cutoff; with
/// `dry_run=true` only counts.
#[utoipa::path(post, path = "/api/admin/retention/prune", tag = "admin", params(PruneQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "What was removed (or would be)", body = PruneReport),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "`dry_run` is not true or false", body = ErrorBody),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
    ))]
pub async fn prune(
    State(pruner): State<Pruner>,
    Params(query): Params<PruneQuery>,
) -> Result<Json<PruneReport>, ApiError> {
    // Its own task: a client that hangs up does not cut a run between batches.
    let run = tokio::spawn(async move { pruner.run(query.dry_run).await });
    match run.await {
        Ok(Ok(report)) => Ok(Json(report)),
        Ok(Err(error)) if crate::db::is_unavailable(&error) => Err(ApiError::unavailable(&error)),
        Ok(Err(error)) => Err(ApiError::internal(&error)),
        Err(error) => Err(ApiError::internal(&error)),
    }
}

/// The route's OpenAPI paths and schemas, merged into every service's document with the other
/// admin routes (`super::admin::AdminDocs`).
#[derive(OpenApi)]
#[openapi(paths(prune), components(schemas(PruneReport, RuleReport)))]
pub struct RetentionApi;
