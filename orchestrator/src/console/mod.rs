//! The operator console (docs/console.md): a page at `/console` whose assets are embedded in the
//! binary, so the orchestrator serves it with no web server and no build step, and the API
//! behind it.
//!
//! - [`assets`]: `/console` and `/console/assets/{file}` (public: the page holds no data; every
//!   call it makes carries the operator token the user signs in with).
//! - [`overview`]: `GET /api/console/overview`, the first page's numbers, from the sales
//!   rollups and every service's `/metrics` and `/health/ready` ([`probe`]).
//! - [`proxy`]: `/api/console/services/{service}/{*path}`, a short allow-list of the
//!   participants' operator routes, so the page calls one origin.
//!
//! The API routes sit behind the operator token here, and the participants check it again.

pub mod assets;
pub mod overview;
pub mod probe;
pub mod proxy;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};

use saga_common::http::health::Readiness;

use crate::configuration::ConsoleSettings;
use crate::state::AppState;

/// What the console's API routes share.
#[derive(Clone)]
pub struct ConsoleState {
    pub app: AppState,
    /// The participants' base URLs (`console` settings).
    pub peers: Arc<ConsoleSettings>,
    /// One client for every call to the participants (its connections are pooled); each
    /// request sets its own timeout.
    pub client: reqwest::Client,
    /// The orchestrator's own readiness, read in process rather than over HTTP.
    pub readiness: Readiness,
}

impl ConsoleState {
    pub fn new(app: AppState, peers: &ConsoleSettings, readiness: Readiness) -> Self {
        Self {
            app,
            peers: Arc::new(peers.clone()),
            client: reqwest::Client::new(),
            readiness,
        }
    }
}

/// The page (public) and its API (operator token).
pub fn router(state: ConsoleState) -> Router {
    let api = Router::new()
        .route("/api/console/overview", get(overview::get_overview))
        .route(
            "/api/console/services/{service}/{*path}",
            any(proxy::forward),
        )
        .with_state(state);
    assets::router().merge(saga_common::http::auth::protect(api))
}
