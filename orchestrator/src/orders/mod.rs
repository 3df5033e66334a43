//! Orders: the HTTP API that starts sagas and shows them.
//!
//! - [`model`]: request parsing ("parse, don't validate"), the stored order, the API view.
//! - [`store`]: SQL for orders (the saga's columns are `saga::store`'s).
//! - [`intake`]: the write behind `POST /api/orders`: the orders of concurrent requests, each
//!   with its saga's first step, committed together.
//! - [`api`]: the handlers, including `Idempotency-Key` handling.
//!
//! Orders build on `saga` (which never imports them): a new order's first step is
//! `saga::plan::start`, written by `saga::engine` with the order.

pub mod api;
pub mod intake;
pub mod model;
pub mod store;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

/// What the order handlers share.
#[derive(Clone)]
pub struct OrdersState {
    pub app: AppState,
    /// Writes new orders, many requests' at a time.
    pub intake: intake::Intake,
}

pub fn router(app: AppState, intake: intake::Intake) -> Router {
    let state = OrdersState { app, intake };
    Router::new()
        .route("/api/orders", get(api::list_orders).post(api::place_order))
        .route("/api/orders/{order_id}", get(api::get_order))
        .route("/api/orders/{order_id}/timeline", get(api::get_timeline))
        .with_state(state)
}
