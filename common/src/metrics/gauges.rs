//! The gauges read rather than recorded, refreshed every `telemetry.gauge_refresh_ms` by one
//! task per service: a scrape renders the last values and runs no query.
//!
//! - `outbox_pending_messages` and `outbox_oldest_pending_age_seconds`: one statement on
//!   `outbox_pending`, a small table (a row per message not yet confirmed); the oldest row is
//!   the lowest id, read from the primary key (`ORDER BY id LIMIT 1`), not by sorting.
//! - `dead_letter_queue_messages{queue}`: a passive declare of the queue's DLQ on the broker
//!   session's probe channel; kept as it was while disconnected.
//! - `db_pool_connections{state}`: the sqlx pool's own counts, no query.
//! - the process metrics: `metrics-process`, from `/proc`.
//!
//! The exporter's upkeep (draining histogram samples into buckets) runs on the same tick.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use tokio::time::MissedTickBehavior;

use super::names::*;
use crate::messaging::{BrokerStatus, topology};
use crate::service::{Task, TaskError};

/// What one service's gauges are read from.
#[derive(Clone)]
pub struct Gauges {
    pub db: DatabaseConnection,
    pub broker: Arc<BrokerStatus>,
    /// The work queue whose DLQ is watched.
    pub queue: &'static str,
    pub every: Duration,
}

impl Gauges {
    /// The refresh loop, a front-tier task: it stops with the HTTP server.
    pub fn task(self) -> Task {
        Task::new("metrics", move |stop| async move {
            let mut tick = tokio::time::interval(self.every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => self.refresh().await,
                    () = stop.wait() => return Ok::<(), TaskError>(()),
                }
            }
        })
    }

    /// Reads everything once. A source that does not answer keeps its gauges as they were.
    pub async fn refresh(&self) {
        if let Err(error) = self.outbox().await {
            tracing::debug!(%error, "outbox gauges not refreshed");
        }
        if let Ok(depth) = self
            .broker
            .probe()
            .depth(&topology::dead_letter_queue(self.queue))
            .await
        {
            metrics::gauge!(DLQ_MESSAGES, "queue" => self.queue).set(f64::from(depth.messages));
        }
        self.pool();
        process_collector().collect();
        super::install().run_upkeep();
    }

    async fn outbox(&self) -> Result<(), DbErr> {
        let row = self
            .db
            .query_one_raw(crate::db::stmt(
                "SELECT count(*) AS pending, \
                   COALESCE((SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 \
                             FROM outbox_pending ORDER BY id LIMIT 1), 0) AS oldest \
                 FROM outbox_pending",
                [],
            ))
            .await?;
        if let Some(row) = row {
            let pending: i64 = row.try_get("", "pending")?;
            let oldest: f64 = row.try_get("", "oldest")?;
            metrics::gauge!(OUTBOX_PENDING).set(pending as f64);
            // A clock step back must not show a negative age.
            metrics::gauge!(OUTBOX_OLDEST_AGE).set(oldest.max(0.0));
        }
        Ok(())
    }

    fn pool(&self) {
        let pool = self.db.get_postgres_connection_pool();
        let (size, idle) = (pool.size(), pool.num_idle() as u32);
        metrics::gauge!(POOL_CONNECTIONS, "state" => "in_use")
            .set(f64::from(size.saturating_sub(idle)));
        metrics::gauge!(POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    }
}

/// The process metrics' collector, one per process like the recorder.
pub(crate) fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// `amqp_connection_up`, set by the broker session as its status changes.
pub fn amqp_connection(up: bool) {
    metrics::gauge!(AMQP_UP).set(if up { 1.0 } else { 0.0 });
}
