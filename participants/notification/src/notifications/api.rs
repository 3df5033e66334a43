//! The operator API of the mail outbox: `GET /api/notifications` (newest first, by cursor)
//! and `POST /api/notifications/{id}/resend`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use tokio::sync::Notify;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use saga_common::http::extract::parse_uuid;
use saga_common::http::query::{FromQuery, Id, Limit, Params, QueryFields, QueryValue};
use saga_common::http::{ApiError, ErrorBody};

use super::store::{self, ListFilter, NotificationView, Resent};
use super::{Kind, Status};

#[derive(Clone)]
pub struct ApiState {
    db: DatabaseConnection,
    /// Wakes the sender after a resend, so the mail goes at once.
    wake: Arc<Notify>,
}

/// Operator only: notifications hold customers' addresses.
pub fn router(db: DatabaseConnection, wake: Arc<Notify>) -> Router {
    saga_common::http::auth::protect(
        Router::new()
            .route("/api/notifications", get(list_notifications))
            .route("/api/notifications/{id}/resend", post(resend_notification))
            .with_state(ApiState { db, wake }),
    )
}

/// Query parameters of `GET /api/notifications`; each mistake is named.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this order's notifications (UUID).
    #[param(value_type = Option<Uuid>)]
    pub order_id: Option<Uuid>,
    /// Only this product's low-stock alerts.
    #[param(value_type = Option<String>)]
    pub product_id: Option<Id>,
    /// `order_confirmed`, `order_failed` or `low_stock`.
    #[param(value_type = Option<Kind>)]
    pub kind: Option<Kind>,
    /// `PENDING`, `SENT`, `FAILED` or `SKIPPED`.
    #[param(value_type = Option<Status>)]
    pub status: Option<Status>,
    /// 1 to 100; default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Limit<20, 100>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<Cursor>,
}

impl FromQuery for ListQuery {
    fn from_query(fields: &mut QueryFields) -> Self {
        Self {
            order_id: fields.optional("order_id"),
            product_id: fields.optional("product_id"),
            kind: fields.optional("kind"),
            status: fields.optional("status"),
            limit: fields.value("limit"),
            cursor: fields.optional("cursor"),
        }
    }
}

impl QueryValue for Kind {
    fn parse_query(text: &str) -> Result<Self, String> {
        Kind::parse(text).ok_or_else(|| "must be order_confirmed, order_failed or low_stock".into())
    }
}

impl QueryValue for Status {
    fn parse_query(text: &str) -> Result<Self, String> {
        Status::parse(text).ok_or_else(|| "must be PENDING, SENT, FAILED or SKIPPED".into())
    }
}

/// Position in the newest-first listing: the id of the last row of the previous page (ids are
/// UUIDv7, so their order is the order rows were written in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(Uuid);

impl QueryValue for Cursor {
    fn parse_query(text: &str) -> Result<Self, String> {
        Uuid::parse_str(text)
            .map(Cursor)
            .map_err(|_| "is not a cursor this API returned".into())
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    /// Newest first.
    pub items: Vec<NotificationView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Lists notifications, newest first, cursor-paginated, by order, product, kind and status.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", params(ListQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "A page of notifications", body = NotificationPage),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "A bad `order_id`, `product_id`, `kind`, `status`, `limit` or `cursor`", body = ErrorBody),
    ))]
pub async fn list_notifications(
    State(state): State<ApiState>,
    Params(query): Params<ListQuery>,
) -> Result<Json<NotificationPage>, ApiError> {
    let limit = u64::from(query.limit.get());
    let filter = ListFilter {
        order_id: query.order_id,
        product_id: query.product_id.map(|id| id.0),
        kind: query.kind,
        status: query.status,
        before: query.cursor.map(|c| c.0),
        limit: limit + 1,
    };
    let mut items = store::list(&state.db, &filter).await?;
    let next_cursor = if items.len() as u64 > limit {
        items.truncate(limit as usize);
        items.last().map(|row| row.id.to_string())
    } else {
        None
    };
    Ok(Json(NotificationPage { items, next_cursor }))
}

/// Sends a notification again: `PENDING`, attempts reset, due now. A `SKIPPED` one is sent to
/// the customer's address if one has been given since.
#[utoipa::path(post, path = "/api/notifications/{id}/resend", tag = "notifications",
    params(("id" = Uuid, Path, description = "The notification's id")),
    security(("operator_token" = [])),
    responses(
        (status = 202, description = "Queued to be sent again", body = NotificationView),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 404, description = "No such notification", body = ErrorBody),
        (status = 409, description = "`no_address`: the customer still has no e-mail address", body = ErrorBody),
        (status = 422, description = "`id` is not a UUID", body = ErrorBody),
    ))]
pub async fn resend_notification(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, Json<NotificationView>), ApiError> {
    let id = parse_uuid("id", &id)?;
    match store::resend(&state.db, id).await? {
        Resent::Queued(row) => {
            state.wake.notify_one();
            Ok((axum::http::StatusCode::ACCEPTED, Json(*row)))
        }
        Resent::Unknown => Err(ApiError::not_found(format!("no notification {id}"))),
        Resent::NoAddress => Err(ApiError::conflict(
            "no_address",
            "the customer has no e-mail address yet; nothing to send",
        )),
    }
}
