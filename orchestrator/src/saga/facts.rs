//! What the orchestrator reports about sagas: its metrics and lifecycle lines
//! (`saga_common::lifecycle`). A fact is reported once it is committed, never before: an end
//! through the reply batch's `Enqueued::after_commit`, a start, a timeout action or an
//! operator's action after the commit call returned.
//!
//! - `saga_started_total`; `saga_ended_total{outcome, reason}` (`completed`/`none`, `failed`/
//!   a [`FailureReason`] code); `saga_duration_seconds{outcome}`, from the order's creation to
//!   its end; `saga_timeout_actions_total{action="resend"|"compensate"}`.
//! - `saga_in_flight{state}` and `saga_overdue`: gauges read from the database every
//!   `telemetry.gauge_refresh_ms` by [`gauges`] ([`read`]), on indexes (`orders_by_status`,
//!   `orders_by_deadline`), so their cost follows the sagas in flight, not the table.

use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use uuid::Uuid;

use saga_common::lifecycle::{Event, Line, OwnedSubject, Subject};
use saga_common::service::Task;

use super::machine::{FailureReason, SagaState};

pub const STARTED: &str = "saga_started_total";
pub const ENDED: &str = "saga_ended_total";
pub const DURATION: &str = "saga_duration_seconds";
pub const IN_FLIGHT: &str = "saga_in_flight";
pub const OVERDUE: &str = "saga_overdue";
pub const TIMEOUT_ACTIONS: &str = "saga_timeout_actions_total";

/// Every failure reason the machine knows: the `reason` label's values, with `none`.
const REASONS: [FailureReason; 3] = [
    FailureReason::PaymentDeclined,
    FailureReason::OutOfStock,
    FailureReason::TimedOut,
];

/// The states of a saga in flight: the `state` label's values.
pub const IN_FLIGHT_STATES: [&str; 4] = [
    "AWAITING_PAYMENT",
    "AWAITING_STOCK",
    "RELEASING_STOCK",
    "REFUNDING_PAYMENT",
];

/// Describes the metrics and registers every series at zero, so the first scrape has them.
pub fn register() {
    describe_counter!(STARTED, Unit::Count, "Sagas started (orders accepted)");
    describe_counter!(
        ENDED,
        Unit::Count,
        "Sagas ended, by outcome (completed, failed) and failure reason (none when completed)"
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "From an order's creation to its saga's end, by outcome"
    );
    describe_gauge!(IN_FLIGHT, Unit::Count, "Sagas not yet ended, by state");
    describe_gauge!(
        OVERDUE,
        Unit::Count,
        "Sagas past their deadline, not yet swept"
    );
    describe_counter!(
        TIMEOUT_ACTIONS,
        Unit::Count,
        "What the timeout sweep did to overdue sagas (resend, compensate)"
    );
    counter!(STARTED).increment(0);
    counter!(ENDED, "outcome" => "completed", "reason" => "none").increment(0);
    for reason in REASONS {
        counter!(ENDED, "outcome" => "failed", "reason" => reason.as_str()).increment(0);
    }
    for outcome in ["completed", "failed"] {
        let _ = histogram!(DURATION, "outcome" => outcome);
    }
    for state in IN_FLIGHT_STATES {
        gauge!(IN_FLIGHT, "state" => state).set(0.0);
    }
    gauge!(OVERDUE).set(0.0);
    for action in ["resend", "compensate"] {
        counter!(TIMEOUT_ACTIONS, "action" => action).increment(0);
    }
}

/// A saga started: its order is committed. The trace id comes from the request's span.
pub fn started(order_id: Uuid, correlation_id: &str) {
    counter!(STARTED).increment(1);
    let subject = Subject {
        order_id,
        correlation_id,
        trace_id: None,
    };
    Line::new(Event::SagaStarted, subject).write();
}

/// A saga's end, reported once the batch that ended it commits.
#[derive(Debug, Clone)]
pub struct Ended {
    pub subject: OwnedSubject,
    /// `Completed` or `Failed(reason)`.
    pub state: SagaState,
    pub created_at: DateTime<Utc>,
}

impl Ended {
    pub fn report(&self) {
        let elapsed = Utc::now() - self.created_at;
        let seconds = elapsed.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        let line = Line::new(Event::SagaCompleted, self.subject.subject())
            .duration_ms(elapsed.num_milliseconds());
        match self.state.failure_reason() {
            None => {
                counter!(ENDED, "outcome" => "completed", "reason" => "none").increment(1);
                histogram!(DURATION, "outcome" => "completed").record(seconds.max(0.0));
                line.write();
            }
            Some(reason) => {
                counter!(ENDED, "outcome" => "failed", "reason" => reason.as_str()).increment(1);
                histogram!(DURATION, "outcome" => "failed").record(seconds.max(0.0));
                Line {
                    event: Event::SagaFailed,
                    ..line
                }
                .reason(reason.as_str())
                .write();
            }
        }
    }
}

/// What the timeout sweep did to one saga, once its chunk committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAction {
    Resent,
    Compensating,
}

pub fn timeout(action: TimeoutAction, subject: Subject<'_>, state: SagaState, resends: i32) {
    let (label, event) = match action {
        TimeoutAction::Resent => ("resend", Event::TimeoutResent),
        TimeoutAction::Compensating => ("compensate", Event::TimeoutCompensating),
    };
    counter!(TIMEOUT_ACTIONS, "action" => label).increment(1);
    Line::new(event, subject)
        .state(state.name())
        .resends(resends)
        .write();
}

/// An operator's retry or compensation, once committed; `state` is where it left the saga.
pub fn operator(compensate: bool, subject: Subject<'_>, state: SagaState) {
    let event = if compensate {
        Event::OperatorCompensating
    } else {
        Event::OperatorRetried
    };
    Line::new(event, subject).state(state.name()).write();
}

/// Sagas in flight by state, and the overdue ones, in one statement: the first part walks the
/// `PENDING` entries of `orders_by_status`, the second the partial `orders_by_deadline`.
pub const GAUGES: &str = "SELECT saga_state AS state, count(*) AS n FROM orders \
     WHERE status = 'PENDING' GROUP BY saga_state \
     UNION ALL SELECT 'OVERDUE', count(*) FROM orders WHERE deadline_at <= now()";

/// What the gauges read: sagas in flight by state name, and the overdue ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    pub in_flight: Vec<(String, i64)>,
    pub overdue: i64,
}

impl Gauges {
    /// Sagas in flight in `state` (a stored state name).
    pub fn in_state(&self, state: &str) -> i64 {
        self.in_flight
            .iter()
            .find(|(name, _)| name == state)
            .map_or(0, |(_, n)| *n)
    }

    /// Sets the gauges; a state with no saga reads 0.
    pub fn set(&self) {
        for state in IN_FLIGHT_STATES {
            gauge!(IN_FLIGHT, "state" => state).set(self.in_state(state) as f64);
        }
        gauge!(OVERDUE).set(self.overdue as f64);
    }
}

/// Reads the gauges' values ([`GAUGES`]).
pub async fn read(db: &impl ConnectionTrait) -> Result<Gauges, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, GAUGES))
        .await?;
    let mut gauges = Gauges::default();
    for row in rows {
        let (state, n) = (
            row.try_get::<String>("", "state")?,
            row.try_get::<i64>("", "n")?,
        );
        if state == "OVERDUE" {
            gauges.overdue = n;
        } else {
            gauges.in_flight.push((state, n));
        }
    }
    Ok(gauges)
}

/// The front-tier task that refreshes the gauges every `every` until the stop signal; a
/// failed read keeps the last values and is logged once until one succeeds again.
pub fn gauges<C>(db: C, every: Duration) -> Task
where
    C: ConnectionTrait + Send + Sync + 'static,
{
    let db = std::sync::Arc::new(db);
    Task::every(
        "saga gauges",
        every,
        "cannot read the saga gauges; keeping their last values",
        move || {
            let db = db.clone();
            async move { read(&*db).await.map(|gauges| gauges.set()) }
        },
    )
}

#[cfg(test)]
mod tests;
