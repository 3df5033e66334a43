//! The timeout worker: a tokio-cron-scheduler job that finds sagas past their state's deadline.
//!
//! Each overdue saga is claimed with `FOR NO KEY UPDATE SKIP LOCKED` in its own transaction, so several
//! orchestrator instances can sweep at once and never handle one saga twice concurrently. While
//! resends are left, the pending command is sent again with its original message id (the
//! participant's inbox answers with the reply it recorded, recovering a lost reply); after
//! `max_resends`, the saga compensates (refund and/or release, harmless if the effect never
//! happened) and ends FAILED `timed_out`. Compensating commands are resent without limit.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tracing::Instrument;
use uuid::Uuid;

use saga_common::messaging::outbox::RelayWakeup;

use super::engine::{self, Applied, ApplyError, Trigger};
use super::machine::SagaEvent;
use crate::configuration::SagaSettings;
use crate::orders::model::Order;
use crate::orders::store;

/// Timeline trigger of a resend after a deadline.
pub const DEADLINE_PASSED: &str = "deadline.passed";
/// Timeline trigger of compensation after the last resend.
pub const RESENDS_EXHAUSTED: &str = "deadline.resends_exhausted";

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error("saga {0}: {1}")]
    Apply(Uuid, #[source] ApplyError),
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub resent: usize,
    pub compensated: usize,
}

/// Handles every overdue saga (up to `sweep_batch`) once.
pub async fn sweep(
    db: &DatabaseConnection,
    settings: &SagaSettings,
) -> Result<SweepReport, SweepError> {
    let mut report = SweepReport::default();
    while report.resent + report.compensated < settings.sweep_batch {
        let txn = db.begin().await?;
        let Some(order) = store::claim_overdue(&txn).await? else {
            txn.commit().await?;
            break;
        };
        let give_up = order.resends >= settings.max_resends;
        let (event, kind) = if give_up {
            (SagaEvent::ResendsExhausted, RESENDS_EXHAUSTED)
        } else {
            (SagaEvent::DeadlinePassed, DEADLINE_PASSED)
        };
        let span = saga_span(&order);
        let applied = act(&txn, &order, event, kind, settings)
            .instrument(span.clone())
            .await
            .map_err(|e| SweepError::Apply(order.order_id, e))?;
        let step = match applied {
            Applied::Stepped(step) => step,
            // The row is locked, so neither can happen; logged rather than looped on, and
            // rolled back (dropping `txn`), since a conflict may have written half a step.
            Applied::Ignored | Applied::Conflict => {
                span.in_scope(
                    || tracing::error!(state = %order.state, "overdue saga left unchanged"),
                );
                break;
            }
        };
        txn.commit().await?;
        let _entered = span.enter();
        if step.to != order.state {
            report.compensated += 1;
            tracing::warn!(from = %order.state, to = %step.to, "saga past its deadline; compensating");
        } else {
            report.resent += 1;
            tracing::warn!(state = %order.state, resends = step.resends, "saga past its deadline; pending command resent");
        }
    }
    Ok(report)
}

/// Applies a deadline or operator event to a saga the caller holds.
pub async fn act(
    txn: &impl sea_orm::ConnectionTrait,
    order: &Order,
    event: SagaEvent,
    kind: &str,
    settings: &SagaSettings,
) -> Result<Applied, ApplyError> {
    let trigger = Trigger {
        kind,
        message_id: Uuid::now_v7(),
        correlation_id: &order.correlation_id,
    };
    engine::apply(txn, order, event, &trigger, settings, Utc::now()).await
}

pub fn saga_span(order: &Order) -> tracing::Span {
    tracing::info_span!(
        "saga",
        order_id = %order.order_id,
        saga_id = %order.order_id,
        correlation_id = %order.correlation_id,
    )
}

/// Starts the sweep on its cron schedule. A sweep still running when the next is due is not
/// doubled: the next one is skipped.
pub async fn start(
    db: DatabaseConnection,
    settings: SagaSettings,
    wakeup: RelayWakeup,
) -> Result<JobScheduler, JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let running = Arc::new(Mutex::new(()));
    let schedule = settings.sweep_schedule.clone();
    let settings = Arc::new(settings);
    let job = Job::new_async(schedule.as_str(), move |_, _| {
        let (db, settings, wakeup, running) = (
            db.clone(),
            settings.clone(),
            wakeup.clone(),
            running.clone(),
        );
        Box::pin(async move {
            let Ok(_guard) = running.try_lock() else {
                return;
            };
            match sweep(&db, &settings).await {
                Ok(report) if report != SweepReport::default() => {
                    wakeup.notify();
                    tracing::info!(
                        resent = report.resent,
                        compensated = report.compensated,
                        "timeout sweep"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "timeout sweep failed; next sweep retries"),
            }
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    Ok(scheduler)
}
