//! Deciding a step in memory: the pure transition, and the messages, deadline and pending
//! command it implies. The first step ([`start`]) and every later one ([`plan`]) go through
//! the same [`step`], so one rule decides which command a saga waits on.

use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use uuid::Uuid;

use saga_common::messaging::{OutgoingMessage, topology};

use super::effects::message_for;
use super::machine::{self, InvalidTransition, SagaCommand, SagaEvent, SagaState};
use super::store::{Saga, Step};
use crate::configuration::SagaSettings;

/// What the first timeline entry names as its trigger.
pub const ORDER_PLACED: &str = "order.placed";

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

/// What caused the step, for the timeline and the messages' causation.
#[derive(Debug, Clone)]
pub struct Trigger<'a> {
    /// Message type, or `order.placed`, `deadline.passed`, `operator.retry`, ...
    pub kind: &'a str,
    pub message_id: Uuid,
    pub correlation_id: &'a str,
}

/// One step, decided and not yet written.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub order_id: Uuid,
    /// `None` for the first step: the saga is written with its order.
    pub from: Option<SagaState>,
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
    /// Whether this step takes its saga from in flight to a final state.
    pub fn ends_saga(&self) -> bool {
        self.step.to.is_final() && self.from.is_none_or(|from| !from.is_final())
    }

    /// `saga` as it is once this step is written: the next event for the same saga in a batch
    /// is planned on it.
    pub fn advance(&self, saga: &mut Saga) {
        saga.state = self.step.to;
        saga.version += 1;
        saga.deadline_at = self.step.deadline_at;
        saga.resends = self.step.resends;
        saga.pending_message_id = self.step.pending_message_id;
    }
}

/// The first step of a new saga (`saga.state` is ignored: every saga starts the same way).
pub fn start(
    saga: &Saga,
    trigger: &Trigger<'_>,
    settings: &SagaSettings,
    now: DateTime<Utc>,
) -> Result<Plan, ApplyError> {
    let (to, commands) = machine::start();
    step(saga, None, to, &commands, trigger, settings, now)
}

/// Decides what `event` does to `saga`; `None` when it changes nothing (a duplicate or late
/// reply, a stale deadline).
pub fn plan(
    saga: &Saga,
    event: SagaEvent,
    trigger: &Trigger<'_>,
    settings: &SagaSettings,
    now: DateTime<Utc>,
) -> Result<Option<Plan>, ApplyError> {
    let (to, commands) = machine::transition(saga.state, event)?;
    if to == saga.state && commands.is_empty() {
        return Ok(None);
    }
    step(
        saga,
        Some(saga.state),
        to,
        &commands,
        trigger,
        settings,
        now,
    )
    .map(Some)
}

fn step(
    saga: &Saga,
    from: Option<SagaState>,
    to: SagaState,
    commands: &[SagaCommand],
    trigger: &Trigger<'_>,
    settings: &SagaSettings,
    now: DateTime<Utc>,
) -> Result<Plan, ApplyError> {
    let mut messages: Vec<OutgoingMessage> = Vec::new();
    let mut resend = None;
    for command in commands {
        match message_for(
            *command,
            saga,
            trigger.correlation_id,
            Some(trigger.message_id),
        )? {
            Some(message) => messages.push(message),
            // ResendPending: the stored command again, same id.
            None => {
                resend = Some(
                    saga.pending_message_id
                        .ok_or(ApplyError::NothingPending(saga.order_id))?,
                );
            }
        }
    }
    let resends = if from != Some(to) {
        0
    } else if resend.is_some() {
        saga.resends + 1
    } else {
        saga.resends
    };
    // A new saga waits on nothing yet.
    let pending_message_id = pending(to, &messages, from.and(saga.pending_message_id));
    Ok(Plan {
        order_id: saga.order_id,
        from,
        expected_version: saga.version,
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
    })
}

/// The command a saga in `to` waits on: the newest command sent, or the one it waited on
/// before (a resend, or a step that sent only events); none once final.
fn pending(to: SagaState, sent: &[OutgoingMessage], before: Option<Uuid>) -> Option<Uuid> {
    if to.is_final() {
        return None;
    }
    sent.iter()
        .rev()
        .find(|m| m.exchange == topology::COMMANDS_EXCHANGE)
        .map(|m| m.envelope.message_id)
        .or(before)
}

/// When a saga entering `state` at `now` expires; `None` for final states.
pub fn deadline(
    settings: &SagaSettings,
    state: SagaState,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let ms = match state {
        SagaState::AwaitingPayment => settings.awaiting_payment_timeout_ms,
        SagaState::AwaitingStock => settings.awaiting_stock_timeout_ms,
        SagaState::ReleasingStock(_) | SagaState::RefundingPayment(_) => {
            settings.compensation_timeout_ms
        }
        SagaState::Completed | SagaState::Failed(_) => return None,
    };
    chrono::Duration::try_milliseconds(i64::try_from(ms).ok()?).map(|timeout| now + timeout)
}
