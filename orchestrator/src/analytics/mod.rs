//! Sales analytics for operators: `GET /api/analytics/summary`.
//!
//! - [`summary`]: the range, the two statements over the sales rollups and the arithmetic
//!   (totals, rates, the 95th percentile from the duration buckets, the series with zeros).
//! - [`api`]: the query parameters and the handler.
//! - [`fold`]: the task that adds a finished minute's (hour's) shards into one row.
//!
//! The rollups are written by `saga::rollup`, in the statements that start and end sagas; this
//! module reads them and folds them, and never reads `orders`.

pub mod api;
pub mod fold;
pub mod summary;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/analytics/summary", get(api::get_summary))
        .with_state(state)
}
