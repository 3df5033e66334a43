//! Order endpoints.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{SubsecRound, Utc};
use sea_orm::DbErr;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use saga_common::http::auth::CustomerOrOperator;
use saga_common::http::correlation::record_order;
use saga_common::http::extract::parse_uuid;
use saga_common::http::query::{FromQuery, Id, Limit, Params, QueryFields, QueryValue};
use saga_common::http::{ApiError, CorrelationId, ErrorBody, JsonBody};

use super::OrdersState;
use super::intake::{IntakeError, Placed, Placement};
use super::model::{Order, OrderStatus, OrderView, PlaceOrder, PlaceOrderRequest};
use super::store::{self, Cursor, ListFilter};
use crate::admission::Shed;
use crate::saga::machine;
use crate::saga::plan::{self, ORDER_PLACED, Trigger};
use crate::saga::timeline::{self, TimelineEntry};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Places an order and starts its saga.
///
/// The order is stored, its saga set to await payment and the `payment.charge` command written
/// to the outbox, all in one transaction (shared with other orders placed at the same moment:
/// see [`intake`](super::intake)). The answer comes before any participant has acted:
/// poll `GET /api/orders/{id}` (or its timeline) for the outcome.
///
/// A customer places orders for themself: `customer_id` may be omitted (it is the token's
/// `sub`); the operator names the customer.
///
/// While the orchestrator is full (as many sagas in flight as `admission.max_in_flight`, or
/// as many orders waiting to be stored as `admission.max_queued`) the order is refused with
/// `503 overloaded` and `Retry-After`, before anything is written: the same request, with the
/// same `Idempotency-Key`, may be sent again after that many seconds.
#[utoipa::path(post, path = "/api/orders", tag = "orders",
    security(("operator_token" = []), ("customer_jwt" = [])),
    request_body = PlaceOrderRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 128 characters. The same key with the same body returns the same order; with another body, 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "Carried into every message and log line of this order; generated when absent; echoed."),
    ),
    responses(
        (status = 202, description = "Accepted; the saga runs", body = OrderView,
            headers(("Location" = String, description = "/api/orders/{order_id}"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token whose `sub` is not the body's `customer_id` (`customer_mismatch`)", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid fields (each named in `details`; `customer_id` is required with the operator token), or an Idempotency-Key reused with another body (`idempotency_key_reused`)", body = ErrorBody),
        (status = 503, description = "`overloaded`: the orchestrator is full (sagas in flight or orders waiting to be stored at their bound); nothing was written, the Idempotency-Key is still free. Or `service_unavailable`: the database is unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "With `overloaded`: seconds to wait before sending the order again"))),
    ))]
pub async fn place_order(
    State(state): State<OrdersState>,
    Extension(correlation): Extension<CorrelationId>,
    who: CustomerOrOperator,
    headers: HeaderMap,
    JsonBody(mut request): JsonBody<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    if let Some(customer) = who.customer() {
        match &request.customer_id {
            None => request.customer_id = Some(customer.to_owned()),
            Some(given) if given == customer => {}
            Some(_) => {
                return Err(ApiError::forbidden(
                    "customer_mismatch",
                    "`customer_id` is not the customer this token was issued to",
                ));
            }
        }
    }
    let new_order = PlaceOrder::parse(request)?;
    // After the checks (a bad request is told so even while shedding), before anything is
    // written. A replay of a used key is refused too: telling it apart would cost a query.
    let ticket = state.app.admission.admit()?;

    // Microseconds, as PostgreSQL stores them, so a replay answers byte for byte the same.
    let now = Utc::now().trunc_subsecs(6);
    let mut order = Order {
        order_id: Uuid::now_v7(),
        total_cents: new_order.total_cents(),
        customer_id: new_order.customer_id.clone(),
        items: new_order.items.clone(),
        state: machine::start().0,
        correlation_id: correlation.0.clone(),
        idempotency_key: idempotency_key.clone(),
        created_at: now,
        updated_at: now,
        traceparent: None,
    };
    record_order(order.order_id);
    // The request itself (by the id it is given here) is the cause of the first commands.
    let trigger = Trigger {
        kind: ORDER_PLACED,
        message_id: Uuid::now_v7(),
        correlation_id: &correlation.0,
        parent: None,
    };
    let first = plan::start(&order.new_saga(), &trigger, &state.app.saga, now)
        .map_err(|e| ApiError::internal(&e))?;
    order.state = first.step.to;
    // The first step's context: later steps the sweep or an operator takes continue it.
    order.traceparent = first
        .messages
        .first()
        .and_then(|m| m.envelope.traceparent.clone());

    // The key is not looked up first: a new key (the common case) costs nothing extra, and a
    // key already used is found by the insert itself, which skips the order.
    let placement = Placement {
        order: order.clone(),
        first,
    };
    match state.intake.place(placement).await {
        Ok(Placed::Inserted) => {
            ticket.keep();
            tracing::debug!(
                total_cents = order.total_cents,
                "order accepted; saga started"
            );
            crate::saga::facts::started(order.order_id, &order.correlation_id);
            Ok(accepted(&order))
        }
        Ok(Placed::KeyTaken) => {
            // Another order's saga, counted when it was accepted.
            drop(ticket);
            let key = idempotency_key.as_deref().unwrap_or_default();
            let existing = store::find_by_idempotency_key(&state.app.db, key)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(&DbErr::RecordNotFound(
                        "the order holding this Idempotency-Key".into(),
                    ))
                })?;
            replay(&existing, &new_order)
        }
        Err(IntakeError::Full) => Err(state.app.admission.refuse(Shed::QueueFull).into()),
        Err(IntakeError::Database(error)) => Err(error.into()),
        Err(error @ IntakeError::Stopped) => Err(ApiError::internal(&error)),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| (1..=128).contains(&v.len()))
        .map(|v| Some(v.to_owned()))
        .ok_or_else(|| {
            ApiError::invalid_field(
                "Idempotency-Key",
                "must be 1 to 128 visible ASCII characters",
            )
        })
}

/// Same key: same body gets the same order back, another body is refused.
fn replay(existing: &Order, request: &PlaceOrder) -> Result<Response, ApiError> {
    record_order(existing.order_id);
    if existing.customer_id == request.customer_id && existing.items == request.items {
        tracing::info!("idempotent replay; no second saga");
        Ok(accepted(existing))
    } else {
        Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different order body",
        ))
    }
}

fn accepted(order: &Order) -> Response {
    let location = format!("/api/orders/{}", order.order_id);
    let mut response = (StatusCode::ACCEPTED, Json(OrderView::from(order))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Reads an order and its status. A customer sees only their own orders.
#[utoipa::path(get, path = "/api/orders/{order_id}", tag = "orders",
    security(("operator_token" = []), ("customer_jwt" = [])),
    params(("order_id" = Uuid, Path, description = "The id `POST /api/orders` returned")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "No such order, or (with a customer token) another customer's: the same answer", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
    ))]
pub async fn get_order(
    State(state): State<OrdersState>,
    who: CustomerOrOperator,
    Path(order_id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let order = load(&state, &who, &order_id).await?;
    Ok(Json(OrderView::from(&order)))
}

/// The order, if `who` may see it. Another customer's order is answered exactly as an unknown
/// id (same status, same body), so a customer cannot learn which ids exist.
async fn load(
    state: &OrdersState,
    who: &CustomerOrOperator,
    order_id: &str,
) -> Result<Order, ApiError> {
    let order_id = parse_uuid("order_id", order_id)?;
    record_order(order_id);
    store::find(&state.app.db, order_id)
        .await?
        .filter(|order| who.customer().is_none_or(|id| id == order.customer_id))
        .ok_or_else(|| ApiError::not_found(format!("no order {order_id}")))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Timeline {
    pub order_id: Uuid,
    pub status: OrderStatus,
    /// Every saga transition, oldest first.
    pub transitions: Vec<TimelineEntry>,
}

/// Every saga transition of an order, in order. A customer sees only their own orders'.
#[utoipa::path(get, path = "/api/orders/{order_id}/timeline", tag = "orders",
    security(("operator_token" = []), ("customer_jwt" = [])),
    params(("order_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The timeline", body = Timeline),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "No such order, or (with a customer token) another customer's: the same answer", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
    ))]
pub async fn get_timeline(
    State(state): State<OrdersState>,
    who: CustomerOrOperator,
    Path(order_id): Path<String>,
) -> Result<Json<Timeline>, ApiError> {
    let order = load(&state, &who, &order_id).await?;
    let transitions = timeline::timeline(&state.app.db, order.order_id).await?;
    Ok(Json(Timeline {
        order_id: order.order_id,
        status: OrderStatus::of(order.state),
        transitions,
    }))
}

/// Query parameters of `GET /api/orders`; each mistake is named.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `PENDING`, `COMPLETED` or `FAILED`.
    #[param(value_type = Option<OrderStatus>)]
    pub status: Option<OrderStatus>,
    /// Only this customer's orders. With a customer token it defaults to the token's `sub`,
    /// and naming another customer is 403 `customer_mismatch`.
    #[param(value_type = Option<String>)]
    pub customer_id: Option<Id>,
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
            status: fields.optional("status"),
            limit: fields.value("limit"),
            cursor: fields.optional("cursor"),
            customer_id: fields.optional("customer_id"),
        }
    }
}

impl QueryValue for OrderStatus {
    fn parse_query(text: &str) -> Result<Self, String> {
        OrderStatus::parse(text).ok_or_else(|| "must be PENDING, COMPLETED or FAILED".into())
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    /// Newest first.
    pub items: Vec<OrderView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Lists orders, newest first, cursor-paginated: every customer's for the operator, only the
/// caller's own for a customer.
#[utoipa::path(get, path = "/api/orders", tag = "orders", params(ListQuery),
    security(("operator_token" = []), ("customer_jwt" = [])),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token with another customer's `customer_id` (`customer_mismatch`)", body = ErrorBody),
        (status = 422, description = "A bad `status`, `limit` or `cursor`", body = ErrorBody),
    ))]
pub async fn list_orders(
    State(state): State<OrdersState>,
    who: CustomerOrOperator,
    Params(query): Params<ListQuery>,
) -> Result<Json<OrderPage>, ApiError> {
    let limit = u64::from(query.limit.get());
    let mut customer_id = query.customer_id.map(|id| id.0);
    if let Some(customer) = who.customer() {
        // An explicit refusal rather than quietly answering with the caller's own orders: a
        // client asking for someone else's list has a bug worth seeing.
        if customer_id
            .as_deref()
            .is_some_and(|asked| asked != customer)
        {
            return Err(ApiError::forbidden(
                "customer_mismatch",
                "a customer token lists only its own orders",
            ));
        }
        customer_id = Some(customer.to_owned());
    }
    let filter = ListFilter {
        status: query.status,
        customer_id,
        after: query.cursor,
        limit: limit + 1,
    };
    let mut orders = store::list(&state.app.db, &filter).await?;
    let next_cursor = Cursor::next_page(&mut orders, limit, |o| (o.created_at, o.order_id));
    Ok(Json(OrderPage {
        items: orders.iter().map(OrderView::from).collect(),
        next_cursor,
    }))
}
