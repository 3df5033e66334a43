//! Operator endpoints: search the sagas ([`search`](super::search)), retry or compensate one.
//! Both actions are recorded in the saga's timeline (`operator.retry`, `operator.compensate`).
//! The routes sit behind the operator token (`saga_common::http::auth::protect`).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;
use serde::Serialize;
use utoipa::ToSchema;
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
use super::search::{Cursor, SagaFilter};
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
    pub customer_id: String,
    pub state: StateName,
    pub status: OrderStatus,
    pub failure_reason: Option<FailureReason>,
    /// When the timeout worker acts next; null once final.
    pub deadline_at: Option<DateTime<Utc>>,
    /// Past its deadline and not yet handled by the worker (what `overdue=true` selects).
    pub stuck: bool,
    /// Resends of the pending command in the current state, held ones (the participant was
    /// down, its queue already held the command) included. The next waits twice as long.
    pub resends: i32,
    /// Id of the command the saga waits on (resent with this id).
    pub pending_message_id: Option<Uuid>,
    pub version: i32,
    pub correlation_id: String,
    /// When the order was placed: the saga's age counts from it.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SagaView {
    fn of(order: &Saga, now: DateTime<Utc>) -> Self {
        Self {
            order_id: order.order_id,
            customer_id: order.customer_id.clone(),
            state: order.state.into(),
            status: OrderStatus::of(order.state),
            failure_reason: order.state.failure_reason(),
            deadline_at: order.deadline_at,
            stuck: order.deadline_at.is_some_and(|d| d <= now),
            resends: order.resends,
            pending_message_id: order.pending_message_id,
            version: order.version,
            correlation_id: order.correlation_id.clone(),
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

/// The query of `GET /api/sagas`: a [`SagaFilter`] and the page.
#[derive(Debug)]
pub struct SagaQuery {
    pub filter: SagaFilter,
    pub cursor: Option<Cursor>,
    pub limit: Limit<100, 500>,
}

impl FromQuery for SagaQuery {
    fn from_query(fields: &mut QueryFields) -> Self {
        Self {
            filter: SagaFilter::from_query(fields),
            cursor: fields.optional("cursor"),
            limit: fields.value("limit"),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SagaPage {
    /// Newest first.
    pub items: Vec<SagaView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Searches the sagas, newest first, cursor-paginated. Every filter is optional; given
/// together, a saga must match them all. Without any, every saga (final ones included):
/// `status=PENDING` lists those in progress.
#[utoipa::path(get, path = "/api/sagas", tag = "operations",
    params(
        ("state" = Option<StateName>, Query, description = "Saga state name"),
        ("status" = Option<OrderStatus>, Query, description = "`PENDING`, `COMPLETED` or `FAILED`"),
        ("reason" = Option<FailureReason>, Query, description = "Failure reason (held while compensating and once failed)"),
        ("customer_id" = Option<String>, Query, description = "Only this customer's sagas"),
        ("older_than" = Option<String>, Query, description = "Placed more than this long ago: a whole number and `s`, `m`, `h` or `d` (`10m`, `2h`)"),
        ("overdue" = Option<bool>, Query, description = "`true`: only sagas past their deadline"),
        ("stuck" = Option<bool>, Query, deprecated, description = "The former name of `overdue`"),
        ("q" = Option<String>, Query, description = "An order id (UUID), or a correlation id matched exactly"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1 to 500; default 100"),
    ),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "A page of sagas", body = SagaPage),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "A bad parameter, each named in `details`", body = ErrorBody),
    ))]
pub async fn list_sagas(
    State(state): State<AppState>,
    Params(query): Params<SagaQuery>,
) -> Result<Json<SagaPage>, ApiError> {
    let limit = u64::from(query.limit.get());
    let mut sagas =
        store::search(&state.db, &query.filter, query.cursor.as_ref(), limit + 1).await?;
    let next_cursor = Cursor::next_page(&mut sagas, limit, |o| (o.created_at, o.order_id));
    let now = Utc::now();
    Ok(Json(SagaPage {
        items: sagas.iter().map(|o| SagaView::of(o, now)).collect(),
        next_cursor,
    }))
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
    operate(&state, &order_id, Action::Retry).await
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
    operate(&state, &order_id, Action::Compensate).await
}

/// What an operator does to a saga, alone or in bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Resend the pending command (the deadline passed, as the timeout worker would).
    Retry,
    /// Give up: compensate and fail `timed_out` (resends exhausted).
    Compensate,
}

impl Action {
    /// The trigger the saga's timeline records.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Retry => OPERATOR_RETRY,
            Self::Compensate => OPERATOR_COMPENSATE,
        }
    }

    fn event(self) -> SagaEvent {
        match self {
            Self::Retry => SagaEvent::DeadlinePassed,
            Self::Compensate => SagaEvent::ResendsExhausted,
        }
    }
}

async fn operate(
    state: &AppState,
    order_id: &str,
    action: Action,
) -> Result<Json<SagaView>, ApiError> {
    let order_id = parse_uuid("order_id", order_id)?;
    record_order(order_id);
    let updated = apply(state, order_id, action).await?;
    Ok(Json(SagaView::of(&updated, Utc::now())))
}

/// Applies `action` to the saga in one transaction and returns the saga as it left it. Refused
/// (409) on a final saga, or one that moved meanwhile; 404 on an unknown one. The one path the
/// single and the bulk repairs share.
pub async fn apply(state: &AppState, order_id: Uuid, action: Action) -> Result<Saga, ApiError> {
    let kind = action.kind();
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
    let enqueued = match act(&txn, &order, action.event(), kind, &state.saga).await {
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
    facts::operator(action == Action::Compensate, subject, updated.state);
    Ok(updated)
}
