//! `GET /api/console/overview`: what the console's first page shows, refreshed every few
//! seconds. Sagas per minute and their durations come from the sales rollups (the last 15 whole
//! minutes and the current one, and today: `analytics::summary`); sagas in flight, overdue,
//! refused orders and each service's state from the services' `/metrics` and readiness probes
//! (`probe`), all read at once. Nothing here reads `orders`: an open console costs a few
//! rollup rows and scrapes, whatever the traffic.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use saga_common::http::{ApiError, ErrorBody};
use saga_common::metrics::names;

use super::ConsoleState;
use super::probe::{self, ServiceStatus};
use crate::analytics::summary::{self, Range, Summary};
use crate::saga::facts;

/// Minutes of the chart: the last 15 whole minutes and the current one.
pub const MINUTES: i64 = 16;

/// What `GET /api/console/overview` answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    pub generated_at: DateTime<Utc>,
    pub per_minute: PerMinute,
    /// Over the sagas that ended in those minutes.
    pub duration: Durations,
    /// Sagas not yet ended, by state (`saga_in_flight`, refreshed every few seconds).
    #[schema(example = json!({"AWAITING_PAYMENT": 3, "AWAITING_STOCK": 1, "RELEASING_STOCK": 0, "REFUNDING_PAYMENT": 0}))]
    pub in_flight: BTreeMap<String, i64>,
    /// Sagas past their step's deadline (`saga_overdue`).
    pub overdue: i64,
    /// Orders refused since the orchestrator started.
    pub rejected: Rejected,
    /// The orchestrator, payment, inventory and notification, in that order.
    pub services: Vec<ServiceStatus>,
    /// The analytics summary of today (UTC), as `GET /api/analytics/summary` answers it.
    pub today: Summary,
}

/// Sagas per minute, oldest first: entry `i` is the minute `i` minutes after `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PerMinute {
    pub from: DateTime<Utc>,
    /// Orders placed (sagas started).
    pub started: Vec<i64>,
    pub completed: Vec<i64>,
    pub failed: Vec<i64>,
}

/// Saga durations from the rollups' histogram: the bound of the bucket where the running count
/// reaches 50 % (99 %); `null` when none ended, or in the last, open bucket (10 minutes or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Durations {
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
}

/// `orders_rejected_total` by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Rejected {
    /// `503 overloaded`: admission control.
    pub overloaded: i64,
    /// `429`: over a rate limit.
    pub rate_limited: i64,
}

/// The console's first page: sagas started, completed and failed per minute over the last 15
/// minutes, their durations, sagas in flight and overdue, orders refused, each service's
/// readiness, AMQP connection, outbox and dead letters, and today's sales. From the rollups and
/// the services' metrics, never from the orders (docs/console.md).
#[utoipa::path(get, path = "/api/console/overview", tag = "console",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The overview; a service that did not answer within 2 s has `ready: false` and an `error`", body = Overview),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 503, description = "The orchestrator's database is unavailable", body = ErrorBody),
    ))]
pub async fn get_overview(State(state): State<ConsoleState>) -> Result<Json<Overview>, ApiError> {
    let now = Utc::now();
    let db = &state.app.db;
    let recent = recent(now);
    let today = day_of(now);
    let peers = &state.peers;
    let client = &state.client;
    let remote = |name: &'static str, base: &str| {
        let base = base.trim_end_matches('/').to_owned();
        async move { probe::remote(client, name, probe::queue_of(name), &base).await }
    };
    let (recent, today, own, payment, inventory, notification) = tokio::join!(
        summary::read(db, &recent),
        summary::read(db, &today),
        probe::local(state.readiness.clone(), probe::queue_of("orchestrator")),
        remote("payment", &peers.payment_url),
        remote("inventory", &peers.inventory_url),
        remote("notification", &peers.notification_url),
    );
    let (recent, today) = (recent?, today?);
    let (own_status, own_metrics) = own;
    let counters = |metric: &str, labels: &[(&str, &str)]| {
        own_metrics
            .as_ref()
            .and_then(|scrape| probe::value(scrape, metric, labels))
            .unwrap_or(0.0) as i64
    };
    let in_flight = facts::IN_FLIGHT_STATES
        .iter()
        .map(|&state| {
            (
                (*state).to_owned(),
                counters(facts::IN_FLIGHT, &[("state", state)]),
            )
        })
        .collect();
    let buckets: Vec<i64> = recent.duration_buckets.iter().map(|b| b.count).collect();
    Ok(Json(Overview {
        generated_at: now,
        per_minute: PerMinute {
            from: recent.from,
            started: recent.orders_per_minute.placed,
            completed: recent.orders_per_minute.completed,
            failed: recent.orders_per_minute.failed,
        },
        duration: Durations {
            p50_ms: summary::percentile_ms(&buckets, 50),
            p99_ms: summary::percentile_ms(&buckets, 99),
        },
        in_flight,
        overdue: counters(facts::OVERDUE, &[]),
        rejected: Rejected {
            overloaded: counters(names::ORDERS_REJECTED, &[("reason", "overloaded")]),
            rate_limited: counters(names::ORDERS_REJECTED, &[("reason", "rate_limited")]),
        },
        services: vec![own_status, payment.0, inventory.0, notification.0],
        today,
    }))
}

/// The day (UTC) of `now`, as the summary's default range.
fn day_of(now: DateTime<Utc>) -> Range {
    let day = Duration::days(1);
    let from = now.duration_trunc(day).unwrap_or(now);
    Range {
        from,
        to: from + day,
    }
}

/// The current minute and the 15 before it.
fn recent(now: DateTime<Utc>) -> Range {
    let minute = Duration::minutes(1);
    let current = now.duration_trunc(minute).unwrap_or(now);
    Range {
        from: current - Duration::minutes(MINUTES - 1),
        to: current + minute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_covers_the_current_minute_and_the_fifteen_before() {
        let now: DateTime<Utc> = "2026-12-07T12:00:30Z".parse().unwrap();
        let range = recent(now);
        assert_eq!(
            range.from,
            "2026-12-07T11:45:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            range.to,
            "2026-12-07T12:01:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!((range.to - range.from).num_minutes(), MINUTES);
    }
}
