//! Applying events to stored sagas, inside the caller's transaction. The reply consumer (a batch
//! of replies at a time), the timeout worker and the operator API all go through here, so a step
//! is always written the same way: version-checked state, deadline, timeline entry and outbox
//! messages together.
//!
//! Two halves: [`plan`] decides one step in memory (the pure transition, and the messages,
//! deadline and pending command it implies); [`write`] stores any number of planned steps with
//! one statement per table. [`apply`] is both, for one saga.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

use saga_common::db::Writes;
use saga_common::messaging::outbox::{self, Enqueued};
use saga_common::messaging::{OutgoingMessage, topology};

use super::effects::message_for;
use super::machine::{self, InvalidTransition, SagaEvent, SagaState};
use crate::configuration::SagaSettings;
use crate::orders::model::Order;
use crate::orders::store::{self, Advance, Step, TransitionRow};

/// What caused the step, for the timeline and the messages' causation.
#[derive(Debug, Clone)]
pub struct Trigger<'a> {
    /// Message type, or `deadline.passed`, `operator.retry`, ...
    pub kind: &'a str,
    pub message_id: Uuid,
    pub correlation_id: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The saga moved (or resent its pending command), writing these outbox rows: the caller
    /// hands them to the relay once it commits.
    Stepped(Step, Enqueued),
    /// A duplicate or late event: nothing to write.
    Ignored,
    /// Another writer changed the saga since it was read. Part of the step may have been
    /// written: the caller rolls back.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
    #[error("saga {0} has no pending command to resend")]
    NothingPending(Uuid),
    #[error("cannot build a message: {0}")]
    Message(#[from] serde_json::Error),
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// One step, decided and not yet written.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub order_id: Uuid,
    pub from: SagaState,
    /// The version the step was decided on: the write only lands on a saga still at it.
    pub expected_version: i32,
    pub step: Step,
    /// Timeline trigger: message type or `deadline.passed`, ...
    pub trigger: String,
    pub trigger_message_id: Uuid,
    /// New messages, in order.
    pub messages: Vec<OutgoingMessage>,
    /// The pending command to publish again, by its message id (same id, same body).
    pub resend: Option<Uuid>,
}

impl Plan {
    /// `order` as it is once this step is written: the next event for the same saga in a batch
    /// is planned on it.
    pub fn advance(&self, order: &mut Order) {
        order.state = self.step.to;
        order.version += 1;
        order.deadline_at = self.step.deadline_at;
        order.resends = self.step.resends;
        order.pending_message_id = self.step.pending_message_id;
    }
}

/// Decides what `event` does to `order`; `None` when it changes nothing (a duplicate or late
/// reply, a stale deadline).
pub fn plan(
    order: &Order,
    event: SagaEvent,
    trigger: &Trigger<'_>,
    settings: &SagaSettings,
    now: DateTime<Utc>,
) -> Result<Option<Plan>, ApplyError> {
    let (to, commands) = machine::transition(order.state, event)?;
    if to == order.state && commands.is_empty() {
        return Ok(None);
    }

    let mut messages: Vec<OutgoingMessage> = Vec::new();
    let mut resend = None;
    for command in &commands {
        match message_for(
            *command,
            order,
            trigger.correlation_id,
            Some(trigger.message_id),
        )? {
            Some(message) => messages.push(message),
            // ResendPending: the stored command again, same id.
            None => {
                resend = Some(
                    order
                        .pending_message_id
                        .ok_or(ApplyError::NothingPending(order.order_id))?,
                );
            }
        }
    }

    // The command the saga now waits on: the newest one sent, or still the old one on a resend.
    let pending_message_id = if to.is_final() {
        None
    } else {
        messages
            .iter()
            .rev()
            .find(|m| m.exchange == topology::COMMANDS_EXCHANGE)
            .map(|m| m.envelope.message_id)
            .or(order.pending_message_id)
    };
    let resends = if to != order.state {
        0
    } else if resend.is_some() {
        order.resends + 1
    } else {
        order.resends
    };
    Ok(Some(Plan {
        order_id: order.order_id,
        from: order.state,
        expected_version: order.version,
        step: Step {
            to,
            deadline_at: deadline(settings, to, now),
            resends,
            pending_message_id,
        },
        trigger: trigger.kind.to_owned(),
        trigger_message_id: trigger.message_id,
        messages,
        resend,
    }))
}

/// Writes `plans` (several may be successive steps of one saga, in order): the sagas, the
/// timeline and the outbox as one statement (a resent command is copied in the outbox first).
/// Returns the outbox rows written, or `None` when a saga was no longer at the version its
/// first step was planned on: the caller must then roll back, as the other writes happened.
pub async fn write(
    db: &impl ConnectionTrait,
    plans: &[Plan],
) -> Result<Option<Enqueued>, ApplyError> {
    if plans.is_empty() {
        return Ok(Some(Enqueued::default()));
    }
    // One row per saga: the version its first step was planned on, the state of its last.
    let mut advances: Vec<Advance> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for plan in plans {
        match index.get(&plan.order_id) {
            Some(&i) => {
                advances[i].version += 1;
                advances[i].step = plan.step.clone();
            }
            None => {
                index.insert(plan.order_id, advances.len());
                advances.push(Advance {
                    order_id: plan.order_id,
                    expected_version: plan.expected_version,
                    version: plan.expected_version + 1,
                    step: plan.step.clone(),
                });
            }
        }
    }
    let mut transitions = Vec::with_capacity(plans.len());
    let mut messages = Vec::new();
    let mut enqueued = Enqueued::default();
    for plan in plans {
        let mut sent: Vec<String> = plan
            .messages
            .iter()
            .map(|m| m.envelope.message_type.clone())
            .collect();
        if let Some(pending) = plan.resend {
            let (message_type, resent) = outbox::resend(db, pending)
                .await?
                .ok_or(ApplyError::NothingPending(plan.order_id))?;
            sent.insert(0, message_type);
            enqueued.extend(resent);
        }
        transitions.push(TransitionRow {
            order_id: plan.order_id,
            from_state: Some(plan.from.name()),
            to_state: plan.step.to.name(),
            trigger: &plan.trigger,
            message_id: plan.trigger_message_id,
            commands: sent,
        });
        messages.extend(plan.messages.iter().cloned());
    }
    let mut outbox = outbox::Insert::new(&messages, None)?;
    let mut writes = Writes::new();
    writes
        .add("sagas", store::advance_part(&advances)?)
        .add("timeline", store::transitions_part(&transitions, None)?)
        .add("outbox", outbox.part());
    let mut counts = writes.execute(db).await?;
    if counts.get("sagas") != advances.len() as i64 {
        return Ok(None);
    }
    enqueued.extend(outbox.written_in(&mut counts, "outbox"));
    Ok(Some(enqueued))
}

/// Plans and writes one event for one saga the caller holds (locked, or read at the version it
/// expects).
pub async fn apply(
    db: &impl ConnectionTrait,
    order: &Order,
    event: SagaEvent,
    trigger: &Trigger<'_>,
    settings: &SagaSettings,
    now: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
    let Some(plan) = plan(order, event, trigger, settings, now)? else {
        return Ok(Applied::Ignored);
    };
    let Some(enqueued) = write(db, std::slice::from_ref(&plan)).await? else {
        return Ok(Applied::Conflict);
    };
    Ok(Applied::Stepped(plan.step, enqueued))
}

/// When the saga's current state expires.
pub fn deadline(
    settings: &SagaSettings,
    state: machine::SagaState,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    settings
        .timeout(state)
        .and_then(|timeout| chrono::Duration::from_std(timeout).ok())
        .map(|timeout| now + timeout)
}
