//! Liveness and readiness probes.
//!
//! Live: the process answers. Ready: the database answers within a second, the RabbitMQ
//! connection and its channels are open, and the consumer runs. Otherwise 503, naming what is down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::messaging::BrokerStatus;

#[derive(Clone)]
pub struct Readiness {
    pub db: DatabaseConnection,
    pub broker: Arc<BrokerStatus>,
    /// `auth.disabled`: every probe repeats the warning, so a fleet left open does not go
    /// unnoticed in the logs.
    pub auth_disabled: bool,
}

impl Readiness {
    pub fn warning_auth_disabled(mut self, disabled: bool) -> Self {
        self.auth_disabled = disabled;
        self
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "unavailable", "checks": {"database": "up", "rabbitmq": "down", "consumers": "down"}}))]
pub struct HealthReport {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Each dependency: `up` or `down`.
    pub checks: BTreeMap<String, String>,
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(readiness)
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process is up", body = HealthReport)))]
pub async fn live() -> Json<HealthReport> {
    Json(HealthReport {
        status: "ok".into(),
        checks: BTreeMap::new(),
    })
}

/// Readiness: database, RabbitMQ connection and channels, and consumers.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = HealthReport),
        (status = 503, description = "A dependency is down; `checks` names it", body = HealthReport),
    ))]
pub async fn ready(State(readiness): State<Readiness>) -> (StatusCode, Json<HealthReport>) {
    if readiness.auth_disabled {
        tracing::warn!("auth.disabled is set: every request is treated as the operator's");
    }
    let database = crate::db::ping(&readiness.db, Duration::from_secs(1)).await;
    let checks = [
        ("database", database),
        ("rabbitmq", readiness.broker.connected()),
        ("consumers", readiness.broker.consuming()),
    ];
    let all_up = checks.iter().all(|(_, up)| *up);
    let report = HealthReport {
        status: if all_up { "ok" } else { "unavailable" }.into(),
        checks: checks
            .into_iter()
            .map(|(name, up)| (name.to_owned(), if up { "up" } else { "down" }.to_owned()))
            .collect(),
    };
    let status = if all_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}
