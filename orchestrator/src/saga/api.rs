//! Operator endpoints: see the sagas in progress (and the stuck ones), retry or compensate one.
//! Both actions are recorded in the saga's timeline (`operator.retry`, `operator.compensate`).
//! The routes sit behind the operator token (`saga_common::http::auth::protect`).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use saga_common::http::correlation::record_order;
use saga_common::http::extract::parse_uuid;
use saga_common::http::query::{FromQuery, Limit, Params, QueryFields};
use saga_common::http::{ApiError, ErrorBody};
use saga_common::lifecycle::Subject;

use super::engine::Applied;
use super::facts;
use super::machine::{FailureReason, SagaEvent};
use super::plan::ApplyError;
use super::status::{OrderStatus, StateName};
use super::store::{self, Saga};
use super::timeouts::act;
use crate::state::AppState;

pub const OPERATOR_RETRY: &str = "operator.retry";
pub const OPERATOR_COMPENSATE: &str = "operator.compensate";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/sagas", get(list_sagas))
        .route("/api/sagas/{order_id}/retry", post(retry_saga))
        .route("/api/sagas/{order_id}/compensate", post(compensate_saga))
        .with_state(state)
}

/// A saga as an operator sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaView {
    pub order_id: Uuid,
    pub state: StateName,
    pub status: OrderStatus,
    pub failure_reason: Option<FailureReason>,
    /// When the timeout worker acts next; null once final.
    pub deadline_at: Option<DateTime<Utc>>,
    /// Past its deadline and not yet handled by the worker.
    pub stuck: bool,
    /// Resends of the pending command in the current state, held ones (the participant was
    /// down, its queue already held the command) included. The next waits twice as long.
    pub resends: i32,
    /// Id of the command the saga waits on (resent with this id).
    pub pending_message_id: Option<Uuid>,
    pub version: i32,
    pub correlation_id: String,
    pub updated_at: DateTime<Utc>,
}

impl SagaView {
    fn of(order: &Saga, now: DateTime<Utc>) -> Self {
        Self {
            order_id: order.order_id,
            state: order.state.into(),
            status: OrderStatus::of(order.state),
            failure_reason: order.state.failure_reason(),
            deadline_at: order.deadline_at,
            stuck: order.deadline_at.is_some_and(|d| d <= now),
            resends: order.resends,
            pending_message_id: order.pending_message_id,
            version: order.version,
            correlation_id: order.correlation_id.clone(),
            updated_at: order.updated_at,
        }
    }
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SagaQuery {
    /// `true`: only sagas past their deadline. Otherwise every saga in progress.
    #[param(value_type = Option<bool>)]
    pub stuck: bool,
    /// 1 to 500; default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Limit<100, 500>,
}

impl FromQuery for SagaQuery {
    fn from_query(fields: &mut QueryFields) -> Self {
        Self {
            stuck: fields.value("stuck"),
            limit: fields.value("limit"),
        }
    }
}

/// Sagas in progress, the most overdue first.
#[utoipa::path(get, path = "/api/sagas", tag = "operations", params(SagaQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Sagas in progress", body = Vec<SagaView>),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "A bad `stuck` or `limit`", body = ErrorBody),
    ))]
pub async fn list_sagas(
    State(state): State<AppState>,
    Params(query): Params<SagaQuery>,
) -> Result<Json<Vec<SagaView>>, ApiError> {
    let now = Utc::now();
    let sagas = store::in_progress(&state.db, query.stuck, query.limit.get().into()).await?;
    Ok(Json(sagas.iter().map(|o| SagaView::of(o, now)).collect()))
}

/// Resends the command the saga waits on, with its original message id.
#[utoipa::path(post, path = "/api/sagas/{order_id}/retry", tag = "operations",
    params(("order_id" = Uuid, Path)),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Pending command resent", body = SagaView),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 404, description = "No such saga", body = ErrorBody),
        (status = 409, description = "The saga is already final", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
    ))]
pub async fn retry_saga(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<Json<SagaView>, ApiError> {
    operate(&state, &order_id, SagaEvent::DeadlinePassed, OPERATOR_RETRY).await
}

/// Gives up on the saga now: compensates what may have happened and fails it `timed_out`. On a
/// saga already compensating, resends the compensation.
#[utoipa::path(post, path = "/api/sagas/{order_id}/compensate", tag = "operations",
    params(("order_id" = Uuid, Path)),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Compensation started (or resent)", body = SagaView),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 404, description = "No such saga", body = ErrorBody),
        (status = 409, description = "The saga is already final", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
    ))]
pub async fn compensate_saga(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<Json<SagaView>, ApiError> {
    operate(
        &state,
        &order_id,
        SagaEvent::ResendsExhausted,
        OPERATOR_COMPENSATE,
    )
    .await
}

async fn operate(
    state: &AppState,
    order_id: &str,
    event: SagaEvent,
    kind: &str,
) -> Result<Json<SagaView>, ApiError> {
    let order_id = parse_uuid("order_id", order_id)?;
    record_order(order_id);
    let txn = state.db.begin().await?;
    let order = store::find_for_update(&txn, order_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no saga {order_id}")))?;
    if order.state.is_final() {
        return Err(ApiError::conflict(
            "saga_final",
            format!("the saga is already {}", order.state),
        ));
    }
    let enqueued = match act(&txn, &order, event, kind, &state.saga).await {
        Ok(Applied::Stepped(_, enqueued)) => enqueued,
        Ok(Applied::Ignored | Applied::Conflict) => {
            return Err(ApiError::conflict(
                "saga_busy",
                "the saga changed; try again",
            ));
        }
        Err(ApplyError::Database(error)) => return Err(error.into()),
        Err(error) => return Err(ApiError::internal(&error)),
    };
    state.wakeup.commit(txn, enqueued).await?;
    let updated = store::find(&state.db, order_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no saga {order_id}")))?;
    // The trace id, if any, is the operator's request span's.
    let subject = Subject {
        order_id,
        correlation_id: &order.correlation_id,
        trace_id: None,
    };
    facts::operator(kind == OPERATOR_COMPENSATE, subject, updated.state);
    Ok(Json(SagaView::of(&updated, Utc::now())))
}
