//! Applying one event to one stored saga, inside the caller's transaction. The reply consumer,
//! the timeout worker and the operator API all go through here, so a step is always written the
//! same way: version-checked state, deadline, timeline entry and outbox messages together.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

use saga_common::messaging::{OutgoingMessage, outbox, topology};

use super::effects::message_for;
use super::machine::{self, InvalidTransition, SagaEvent};
use crate::configuration::SagaSettings;
use crate::orders::model::Order;
use crate::orders::store::{self, Step};

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
    /// The saga moved (or resent its pending command).
    Stepped(Step),
    /// A duplicate or late event: nothing to write.
    Ignored,
    /// Another writer changed the saga since it was read; nothing was written.
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

pub async fn apply(
    db: &impl ConnectionTrait,
    order: &Order,
    event: SagaEvent,
    trigger: &Trigger<'_>,
    settings: &SagaSettings,
    now: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
    let (to, commands) = machine::transition(order.state, event)?;
    if to == order.state && commands.is_empty() {
        return Ok(Applied::Ignored);
    }

    let mut messages: Vec<OutgoingMessage> = Vec::new();
    let mut sent = Vec::new();
    let mut resent = false;
    for command in &commands {
        let message = message_for(
            *command,
            order,
            trigger.correlation_id,
            Some(trigger.message_id),
        )?;
        if let Some(message) = message {
            sent.push(message.envelope.message_type.clone());
            messages.push(message);
        } else {
            // ResendPending: the stored command again, same id.
            let pending = order
                .pending_message_id
                .ok_or(ApplyError::NothingPending(order.order_id))?;
            let message_type = outbox::resend(db, pending)
                .await?
                .ok_or(ApplyError::NothingPending(order.order_id))?;
            resent = true;
            sent.push(message_type);
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
    let step = Step {
        to,
        deadline_at: deadline(settings, to, now),
        resends: if to != order.state {
            0
        } else if resent {
            order.resends + 1
        } else {
            order.resends
        },
        pending_message_id,
    };
    if !store::advance(db, order.order_id, order.version, &step).await? {
        return Ok(Applied::Conflict);
    }
    store::record_transition(
        db,
        order.order_id,
        Some(order.state),
        to,
        trigger.kind,
        trigger.message_id,
        sent,
    )
    .await?;
    for message in &messages {
        outbox::enqueue(db, message).await?;
    }
    Ok(Applied::Stepped(step))
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
