//! `/api/admin/*`: operator endpoints (the operator token, [`super::auth::guard`]): list,
//! group by reason, replay (some, a group, all) and delete this service's dead letters
//! ([`crate::messaging::dead_letters`]).
//!
//! A service adds them with `.merge(admin::router(SERVICE, queue, &settings))` and documents
//! them with `modifiers(&AdminDocs)`; other operator routes get the same guard from [`protect`].
//! Without a configured operator token the routes answer 403 `admin_disabled`: a forgotten
//! setting never means open access, and refusing to start would take the service down over its
//! least important feature.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, FieldError};
use super::extract::{JsonBody, Violations};
use super::query::{FromQuery, Limit, Offset, Params, QueryFields};
use crate::configuration::ServiceSettings;
use crate::messaging::dead_letters::groups::{DeadLetterGroup, DeadLetterGroups};
use crate::messaging::dead_letters::{
    DeadLetter, DeadLetterError, DeadLetterPage, DeadLetterQueue, RefusedReplay, ReplayReport,
    Selection,
};
use crate::messaging::inbox::DedupWindow;

/// Name of the bearer security scheme in the OpenAPI documents.
pub const SECURITY_SCHEME: &str = super::auth::docs::OPERATOR_SCHEME;

const MAX_REPLAY_IDS: usize = 1_000;
const MAX_ID_CHARS: usize = 128;
/// A reason is a short code (`invalid_payload`); this only bounds what a request may send.
const MAX_REASON_CHARS: usize = 128;

/// What the dead-letter routes share: this service's DLQ.
#[derive(Clone)]
pub struct AdminState {
    dead_letters: Arc<DeadLetterQueue>,
}

/// The dead-letter routes for `queue`, the work queue `service` consumes, for the operator.
pub fn router(service: &str, queue: &str, settings: &ServiceSettings) -> Router {
    let state = AdminState {
        dead_letters: Arc::new(
            DeadLetterQueue::new(
                service,
                &settings.amqp.url,
                queue,
                DedupWindow::new(settings.retention.inbox_window),
            )
            // Checked at start-up; the same nodes, in the same order, as the session.
            .with_addresses(settings.amqp.addresses().unwrap_or_default()),
        ),
    };
    let routes = Router::new()
        .route("/api/admin/dead-letters", get(list_dead_letters))
        .route("/api/admin/dead-letters/groups", get(dead_letter_groups))
        .route("/api/admin/dead-letters/replay", post(replay_dead_letters))
        .route(
            "/api/admin/dead-letters/{message_id}",
            delete(delete_dead_letter),
        )
        .with_state(state);
    protect(routes)
}

/// Puts every route of `routes` behind the operator token ([`super::auth::guard::protect`]).
pub fn protect<S>(routes: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    super::auth::protect(routes)
}

/// Runs a dead-letter operation in its own task, so a client that hangs up does not cut a replay
/// between publishing a message and removing it from the DLQ.
async fn run<T: Send + 'static>(
    operation: impl Future<Output = Result<T, DeadLetterError>> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::spawn(operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ApiError::unavailable(&error)),
        Err(error) => Err(ApiError::internal(&error)),
    }
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Position of the first message to return (0 = the oldest). Default 0.
    #[param(value_type = Option<u32>)]
    pub offset: Offset,
    /// Messages per page, 1 to 500. Default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Limit<50, 500>,
}

impl FromQuery for DeadLetterQuery {
    fn from_query(fields: &mut QueryFields) -> Self {
        Self {
            offset: fields.value("offset"),
            limit: fields.value("limit"),
        }
    }
}

/// Lists this service's dead letters, oldest first, without consuming them.
#[utoipa::path(get, path = "/api/admin/dead-letters", tag = "admin", params(DeadLetterQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "A page of the DLQ", body = DeadLetterPage),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "`offset` or `limit` out of range", body = ErrorBody),
        (status = 503, description = "RabbitMQ is unreachable", body = ErrorBody),
    ))]
pub async fn list_dead_letters(
    State(state): State<AdminState>,
    Params(query): Params<DeadLetterQuery>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let (offset, limit) = (query.offset.0, query.limit.get());
    let dead_letters = state.dead_letters.clone();
    let page = run(async move { dead_letters.list(offset, limit).await }).await?;
    Ok(Json(page))
}

/// Counts this service's dead letters by failure reason (up to 10,000 messages looked at), the
/// biggest group first, without consuming them.
#[utoipa::path(get, path = "/api/admin/dead-letters/groups", tag = "admin",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The DLQ by reason", body = DeadLetterGroups),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 503, description = "RabbitMQ is unreachable", body = ErrorBody),
    ))]
pub async fn dead_letter_groups(
    State(state): State<AdminState>,
) -> Result<Json<DeadLetterGroups>, ApiError> {
    let dead_letters = state.dead_letters.clone();
    let groups = run(async move { dead_letters.groups().await }).await?;
    Ok(Json(groups))
}

/// Which dead letters to replay: give exactly one of the three fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message_ids": ["0193a0c4-7d2e-7c61-9b9e-2a4f0f6d1e01"]}))]
pub struct ReplayRequest {
    /// The ids to replay (1 to 1000).
    pub message_ids: Option<Vec<String>>,
    /// `true`: replay every message in the DLQ.
    pub all: Option<bool>,
    /// Replay one group of `GET /api/admin/dead-letters/groups`: every message with this
    /// reason (`unknown`: those without one).
    #[schema(example = "invalid_payload")]
    pub reason: Option<String>,
}

impl ReplayRequest {
    fn selection(self) -> Result<Selection, ApiError> {
        let all = self.all == Some(true);
        let given = usize::from(all)
            + usize::from(self.message_ids.is_some())
            + usize::from(self.reason.is_some());
        if given > 1 {
            let field = if self.reason.is_some() {
                "reason"
            } else {
                "message_ids"
            };
            return Err(ApiError::invalid_field(
                field,
                "give exactly one of `message_ids`, `reason` and `\"all\": true`",
            ));
        }
        if all {
            return Ok(Selection::All);
        }
        if let Some(reason) = self.reason {
            let mut violations = Violations::default();
            violations.check(
                (1..=MAX_REASON_CHARS).contains(&reason.chars().count()),
                "reason",
                format!("must be 1 to {MAX_REASON_CHARS} characters long"),
            );
            violations.check(
                !crate::nul::has_nul(&reason),
                "reason",
                crate::nul::NUL_RULE,
            );
            return violations.finish(Selection::Reason(reason));
        }
        let Some(ids) = self.message_ids else {
            return Err(ApiError::invalid_field(
                "message_ids",
                "give `message_ids` (1 to 1000 ids), a `reason` or `\"all\": true`",
            ));
        };
        let mut violations = Violations::default();
        violations.check(
            (1..=MAX_REPLAY_IDS).contains(&ids.len()),
            "message_ids",
            format!("must hold 1 to {MAX_REPLAY_IDS} ids"),
        );
        for (index, id) in ids.iter().enumerate() {
            violations.check(
                (1..=MAX_ID_CHARS).contains(&id.chars().count()),
                format!("message_ids[{index}]"),
                format!("must be 1 to {MAX_ID_CHARS} characters long"),
            );
        }
        violations.finish(Selection::Ids(ids.into_iter().collect::<BTreeSet<_>>()))
    }
}

/// Replays dead letters (some ids, one reason's group, or all): republishes each (with publisher confirms) to its original exchange and
/// routing key without the failure headers, then removes it from the DLQ. A message older than
/// `retention.inbox_window` is not replayed: it stays in the DLQ and is listed in `refused`
/// (`outside_dedup_window`), since the inbox may have forgotten it and it could take effect twice.
#[utoipa::path(post, path = "/api/admin/dead-letters/replay", tag = "admin",
    security(("operator_token" = [])),
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "What was replayed, not found, not confirmed, or refused", body = ReplayReport),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Not exactly one of `message_ids`, `reason` and `all`, or a bad id or reason", body = ErrorBody),
        (status = 503, description = "RabbitMQ is unreachable", body = ErrorBody),
    ))]
pub async fn replay_dead_letters(
    State(state): State<AdminState>,
    JsonBody(request): JsonBody<ReplayRequest>,
) -> Result<Json<ReplayReport>, ApiError> {
    let selection = request.selection()?;
    let dead_letters = state.dead_letters.clone();
    let report = run(async move { dead_letters.replay(&selection).await }).await?;
    Ok(Json(report))
}

/// What a delete removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteReport {
    pub message_id: String,
    /// Copies removed (more than 1 only if the same message was dead-lettered twice).
    pub deleted: usize,
}

/// Removes a dead letter for good.
#[utoipa::path(delete, path = "/api/admin/dead-letters/{message_id}", tag = "admin",
    security(("operator_token" = [])),
    params(("message_id" = String, Path, description = "The message's id (1 to 128 characters)")),
    responses(
        (status = 200, description = "Removed", body = DeleteReport),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 404, description = "No dead letter with this id", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ErrorBody),
        (status = 503, description = "RabbitMQ is unreachable", body = ErrorBody),
    ))]
pub async fn delete_dead_letter(
    State(state): State<AdminState>,
    Path(message_id): Path<String>,
) -> Result<Json<DeleteReport>, ApiError> {
    let mut violations = Violations::default();
    violations.check(
        (1..=MAX_ID_CHARS).contains(&message_id.chars().count()),
        "message_id",
        format!("must be 1 to {MAX_ID_CHARS} characters long"),
    );
    violations.check(
        !crate::nul::has_nul(&message_id),
        "message_id",
        crate::nul::NUL_RULE,
    );
    violations.finish(())?;
    let dead_letters = state.dead_letters.clone();
    let id = message_id.clone();
    let deleted = run(async move { dead_letters.delete(&id).await }).await?;
    if deleted == 0 {
        return Err(ApiError::not_found(format!(
            "no dead letter with message id `{message_id}` in {}",
            state.dead_letters.name()
        )));
    }
    Ok(Json(DeleteReport {
        message_id,
        deleted,
    }))
}

/// The admin routes' OpenAPI document; services merge it in through [`AdminDocs`].
#[derive(OpenApi)]
#[openapi(
    paths(list_dead_letters, dead_letter_groups, replay_dead_letters, delete_dead_letter),
    components(schemas(
        DeadLetterPage, DeadLetter, DeadLetterGroups, DeadLetterGroup, ReplayRequest, ReplayReport, RefusedReplay, DeleteReport,
        ErrorBody, FieldError
    )),
    modifiers(&BearerScheme),
    tags((name = "admin", description = "Operator endpoints (dead letters, retention). Require `Authorization: Bearer <operator token>`."))
)]
pub struct AdminApi;

/// Declares the bearer schemes (operator and customer) the paths refer to.
pub use super::auth::docs::BearerSchemes as BearerScheme;

/// Adds the admin paths, schemas and security scheme to a service's document:
/// `#[openapi(..., modifiers(&saga_common::http::admin::AdminDocs))]`.
pub struct AdminDocs;

impl Modify for AdminDocs {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(AdminApi::openapi());
        openapi.merge(super::retention::RetentionApi::openapi());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_names_ids_a_reason_or_all_and_only_one() {
        let ids = ReplayRequest {
            message_ids: Some(vec!["a".into(), "b".into()]),
            all: None,
            reason: None,
        };
        assert_eq!(
            ids.selection().unwrap(),
            Selection::Ids(["a".to_owned(), "b".to_owned()].into())
        );
        let all = ReplayRequest {
            message_ids: None,
            all: Some(true),
            reason: None,
        };
        assert_eq!(all.selection().unwrap(), Selection::All);
        let group = ReplayRequest {
            message_ids: None,
            all: None,
            reason: Some("invalid_payload".into()),
        };
        assert_eq!(
            group.selection().unwrap(),
            Selection::Reason("invalid_payload".into())
        );
        let reason = || Some("invalid_payload".to_owned());
        for (message_ids, all, reason) in [
            (None, None, None),
            (None, Some(false), None),
            (Some(vec![]), None, None),
            (Some(vec!["a".to_owned()]), Some(true), None),
            (Some(vec![String::new()]), None, None),
            (Some(vec!["a".to_owned()]), None, reason()),
            (None, Some(true), reason()),
            (None, None, Some(String::new())),
        ] {
            let error = ReplayRequest {
                message_ids,
                all,
                reason,
            }
            .selection()
            .unwrap_err();
            assert_eq!(error.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        }
    }
}
