//! The timeout worker: a tokio-cron-scheduler job that finds sagas past their state's deadline.
//!
//! Overdue sagas are claimed a chunk at a time with `FOR NO KEY UPDATE SKIP LOCKED`, so several
//! instances can sweep at once. While resends are left, the pending command is sent again with
//! its original message id (the participant's inbox answers with the reply it recorded); after
//! `max_resends` the saga compensates and ends FAILED `timed_out`. Compensation is resent
//! without limit. Each resend waits twice as long as the one before, up to
//! `max_resend_interval_ms` ([`plan::backoff`]).
//!
//! A resend to a participant that is down is held ([`Plan::hold`](super::plan::Plan::hold)):
//! counted and backed off, but no copy sent. Down means its work queue has messages and no
//! consumer, asked once per queue per sweep with a passive declare ([`Queues`]). The copy sent
//! before is then still waiting in that queue (durable quorum queues, persistent messages,
//! confirmed publishes), and the participant takes it as soon as it consumes again, so another
//! copy would only pile up behind it. Rejected alternatives: a per-message TTL on the work
//! queues dead-letters expired copies, flooding the DLQ; checking the outbox for an unconfirmed
//! copy misses the common case, a copy confirmed into the queue of a stopped participant.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio_cron_scheduler::JobSchedulerError;
use uuid::Uuid;

use saga_common::lifecycle::Subject;
use saga_common::messaging::outbox::RelayWakeup;
use saga_common::messaging::{BrokerStatus, Probe};
use saga_common::service::schedule;
use saga_common::shutdown::Shutdown;
use tokio::task::JoinHandle;

use super::engine::{self, Applied};
use super::facts::{self, TimeoutAction};
use super::machine::SagaEvent;
use super::plan::{self, ApplyError, Plan, Trigger};
use super::store::{self, Saga};
use crate::configuration::SagaSettings;

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
    /// Resends held: the participant is down and the copy sent before still waits.
    pub held: usize,
}

impl SweepReport {
    fn handled(&self) -> usize {
        self.resent + self.compensated + self.held
    }
}

/// The work queues a sweep resends to, asked about once each per sweep (not once per saga).
struct Queues<'a> {
    probe: &'a Probe,
    /// Whether the queue's participant is down, by queue.
    down: HashMap<&'static str, bool>,
}

impl<'a> Queues<'a> {
    fn new(probe: &'a Probe) -> Self {
        Self {
            probe,
            down: HashMap::new(),
        }
    }

    /// Whether `queue` holds messages with no consumer to take them. When the broker cannot
    /// be asked, resends go ahead as they always did: a copy too many is harmless (the inbox
    /// absorbs it), a copy held wrongly could wait until the next deadline.
    async fn participant_down(&mut self, queue: &'static str) -> bool {
        if let Some(down) = self.down.get(queue) {
            return *down;
        }
        let down = match self.probe.depth(queue).await {
            Ok(depth) => depth.consumers == 0 && depth.messages > 0,
            Err(error) => {
                tracing::warn!(queue, %error, "cannot ask the broker about a participant's queue; resending");
                false
            }
        };
        if down {
            tracing::warn!(
                queue,
                "no consumer on a participant's queue and messages waiting in it; resends to it are held"
            );
        }
        self.down.insert(queue, down);
        down
    }
}

/// Overdue sagas claimed and written together, on one transaction.
const SWEEP_CHUNK: usize = 100;

/// Handles every overdue saga (up to `sweep_batch`) once, a chunk at a time, each chunk claimed
/// and written like a batch of replies: after an overload a sweep stays a few statements long
/// rather than a few per saga, and holds each lock only for its chunk.
pub async fn sweep(
    db: &DatabaseConnection,
    settings: &SagaSettings,
    wakeup: &RelayWakeup,
    probe: &Probe,
) -> Result<SweepReport, SweepError> {
    let mut report = SweepReport::default();
    let mut queues = Queues::new(probe);
    while report.handled() < settings.sweep_batch {
        let limit = SWEEP_CHUNK.min(settings.sweep_batch - report.handled());
        let txn = db.begin().await?;
        let overdue = store::claim_overdue(&txn, limit).await?;
        if overdue.is_empty() {
            txn.commit().await?;
            break;
        }
        let now = Utc::now();
        let mut plans = Vec::with_capacity(overdue.len());
        for order in &overdue {
            let (event, kind) = if order.resends >= settings.max_resends {
                (SagaEvent::ResendsExhausted, RESENDS_EXHAUSTED)
            } else {
                (SagaEvent::DeadlinePassed, DEADLINE_PASSED)
            };
            let trigger = Trigger {
                kind,
                message_id: Uuid::now_v7(),
                correlation_id: &order.correlation_id,
                parent: order.traceparent.as_deref().map(|p| (p, None)),
            };
            match plan::plan(order, event, &trigger, settings, now) {
                Ok(Some(plan)) => plans.push(hold_if_down(plan, &mut queues).await),
                // A saga with a deadline always resends or compensates; logged, not looped on.
                Ok(None) => saga_span(order).in_scope(
                    || tracing::error!(state = %order.state, "overdue saga left unchanged"),
                ),
                Err(error) => return Err(SweepError::Apply(order.order_id, error)),
            }
        }
        if plans.is_empty() {
            // Only sagas logged above: claiming again would find the same ones.
            txn.commit().await?;
            break;
        }
        // The rows are locked, so a conflict cannot happen; if it does, nothing is kept.
        let Some(enqueued) = engine::write(&txn, &plans)
            .await
            .map_err(|e| SweepError::Apply(overdue[0].order_id, e))?
        else {
            tracing::error!("overdue sagas changed while locked; sweep rolled back");
            break;
        };
        wakeup.commit(txn, enqueued).await?;
        let correlation: HashMap<Uuid, &str> = overdue
            .iter()
            .map(|order| (order.order_id, order.correlation_id.as_str()))
            .collect();
        for plan in &plans {
            // A sweep belongs to no request: the line has no trace id of its own.
            let subject = Subject {
                order_id: plan.order_id,
                correlation_id: correlation.get(&plan.order_id).copied().unwrap_or_default(),
                trace_id: None,
            };
            let (state, resends) = (plan.step.to, plan.step.resends);
            if Some(plan.step.to) != plan.from {
                report.compensated += 1;
                facts::timeout(TimeoutAction::Compensating, subject, state, resends);
            } else if plan.resend.is_some() {
                report.resent += 1;
                facts::timeout(TimeoutAction::Resent, subject, state, resends);
            } else {
                // The queue's warning said it once for the sweep.
                report.held += 1;
                let span = tracing::info_span!("saga", order_id = %plan.order_id, saga_id = %plan.order_id);
                span.in_scope(|| tracing::debug!(state = %plan.step.to, resends, "saga past its deadline; participant down, resend held"));
            }
        }
        if overdue.len() < limit {
            break;
        }
    }
    Ok(report)
}

/// `plan` held if it resends to a participant that is down (see the module's notes).
async fn hold_if_down(plan: Plan, queues: &mut Queues<'_>) -> Plan {
    let queue = plan.from.and_then(plan::waits_on);
    match queue {
        Some(queue) if plan.resend.is_some() && queues.participant_down(queue).await => plan.hold(),
        _ => plan,
    }
}

/// Applies a deadline or operator event to a saga the caller holds.
pub async fn act(
    txn: &impl sea_orm::ConnectionTrait,
    order: &Saga,
    event: SagaEvent,
    kind: &str,
    settings: &SagaSettings,
) -> Result<Applied, ApplyError> {
    let trigger = Trigger {
        kind,
        message_id: Uuid::now_v7(),
        correlation_id: &order.correlation_id,
        parent: order.traceparent.as_deref().map(|p| (p, None)),
    };
    engine::apply(txn, order, event, &trigger, settings, Utc::now()).await
}

pub fn saga_span(order: &Saga) -> tracing::Span {
    tracing::info_span!(
        "saga",
        order_id = %order.order_id,
        saga_id = %order.order_id,
        correlation_id = %order.correlation_id,
    )
}

/// Starts the sweep on its cron schedule (`saga_common::service::schedule`): a sweep still
/// running when the next is due is not doubled; on `stop` the task returned waits for a sweep in
/// progress, then ends.
pub async fn start(
    db: DatabaseConnection,
    settings: SagaSettings,
    wakeup: RelayWakeup,
    broker: Arc<BrokerStatus>,
    stop: Shutdown,
) -> Result<JoinHandle<()>, JobSchedulerError> {
    let schedule = settings.sweep_schedule.clone();
    let settings = Arc::new(settings);
    schedule::start("timeout sweep", &schedule, stop, move || {
        let (db, settings, wakeup, broker) =
            (db.clone(), settings.clone(), wakeup.clone(), broker.clone());
        async move {
            match sweep(&db, &settings, &wakeup, broker.probe()).await {
                Ok(report) if report != SweepReport::default() => {
                    tracing::info!(
                        resent = report.resent,
                        compensated = report.compensated,
                        held = report.held,
                        "timeout sweep"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "timeout sweep failed; next sweep retries"),
            }
        }
    })
    .await
}
