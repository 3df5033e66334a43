//! Orders: the HTTP API that starts sagas and shows them.
//!
//! - [`model`]: request parsing ("parse, don't validate"), the stored order, the API view.
//! - [`store`]: SQL for orders, saga state and the timeline.
//! - [`intake`]: the write behind `POST /api/orders`: the orders of concurrent requests
//!   committed together.
//! - [`api`]: the handlers, including `Idempotency-Key` handling.

pub mod api;
pub mod intake;
pub mod model;
pub mod store;

use axum::Router;
use axum::routing::get;

use crate::startup::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/orders", get(api::list_orders).post(api::place_order))
        .route("/api/orders/{order_id}", get(api::get_order))
        .route("/api/orders/{order_id}/timeline", get(api::get_timeline))
        .with_state(state)
}
