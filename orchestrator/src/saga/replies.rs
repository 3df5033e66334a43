//! The `orchestrator.replies` consumer: one reply, one saga step.
//!
//! In one transaction: claim the reply in the inbox, load the saga, run the pure transition,
//! move the saga with a version check, record the timeline entry, write the resulting commands
//! to the outbox. If another consumer moved the same saga in between (the version changed), the
//! transaction is rolled back and the step retried on fresh state, so two racing replies can
//! never both apply a transition.

use sea_orm::{DatabaseConnection, TransactionTrait};

use saga_common::contracts::{self, reply};
use saga_common::messaging::inbox::{self, Claim};
use saga_common::messaging::{Envelope, HandleError, MessageHandler, outbox};

use super::effects::message_for;
use super::machine::{self, SagaEvent};
use crate::orders::store;

/// Inbox consumer name.
pub const CONSUMER: &str = "orchestrator";

/// Attempts on a version conflict before the delivery is requeued.
const MAX_CONFLICT_RETRIES: usize = 5;

pub struct SagaReplies {
    pub db: DatabaseConnection,
}

/// Maps a reply to the saga event it reports, checking its payload on the way.
pub fn event_of(envelope: &Envelope) -> Result<SagaEvent, HandleError> {
    fn check<P: serde::de::DeserializeOwned>(
        envelope: &Envelope,
        event: SagaEvent,
    ) -> Result<SagaEvent, HandleError> {
        envelope
            .payload::<P>()
            .map(|_| event)
            .map_err(HandleError::invalid_payload)
    }
    match envelope.message_type.as_str() {
        reply::PAYMENT_CHARGED => {
            check::<contracts::PaymentCharged>(envelope, SagaEvent::PaymentCharged)
        }
        reply::PAYMENT_DECLINED => {
            check::<contracts::PaymentDeclined>(envelope, SagaEvent::PaymentDeclined)
        }
        reply::PAYMENT_REFUNDED => {
            check::<contracts::PaymentRefunded>(envelope, SagaEvent::PaymentRefunded)
        }
        reply::STOCK_RESERVED => {
            check::<contracts::StockReserved>(envelope, SagaEvent::StockReserved)
        }
        reply::STOCK_RESERVATION_FAILED => {
            check::<contracts::StockReservationFailed>(envelope, SagaEvent::StockReservationFailed)
        }
        other => Err(HandleError::unknown_type(other)),
    }
}

impl MessageHandler for SagaReplies {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        let event = event_of(&envelope)?;
        for _ in 0..MAX_CONFLICT_RETRIES {
            if self.step(&envelope, event).await? {
                return Ok(());
            }
            tracing::info!("saga moved concurrently; retrying on fresh state");
        }
        Err(HandleError::Transient(format!(
            "saga {} kept changing under {MAX_CONFLICT_RETRIES} attempts",
            envelope.saga_id
        )))
    }
}

impl SagaReplies {
    /// One attempt. `Ok(false)`: lost a race on the version; nothing was written.
    async fn step(&self, envelope: &Envelope, event: SagaEvent) -> Result<bool, HandleError> {
        let txn = self.db.begin().await?;
        if let Claim::Duplicate { .. } = inbox::claim(&txn, CONSUMER, envelope).await? {
            tracing::info!("duplicate reply; already applied");
            txn.commit().await?;
            return Ok(true);
        }
        let Some(order) = store::find(&txn, envelope.saga_id).await? else {
            return Err(HandleError::permanent(
                "unknown_saga",
                format!("no saga {}", envelope.saga_id),
            ));
        };
        let (to, commands) = machine::transition(order.state, event)
            .map_err(|invalid| HandleError::permanent("invalid_transition", invalid))?;
        if to == order.state && commands.is_empty() {
            tracing::info!(state = %order.state, ?event, "late or duplicate reply ignored");
            txn.commit().await?;
            return Ok(true);
        }
        if !store::advance(&txn, order.order_id, order.version, to).await? {
            return Ok(false);
        }
        let messages = commands
            .iter()
            .map(|command| {
                message_for(
                    *command,
                    &order,
                    &envelope.correlation_id,
                    Some(envelope.message_id),
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(HandleError::invalid_payload)?;
        store::record_transition(
            &txn,
            order.order_id,
            Some(order.state),
            to,
            &envelope.message_type,
            envelope.message_id,
            messages
                .iter()
                .map(|m| m.envelope.message_type.clone())
                .collect(),
        )
        .await?;
        for message in &messages {
            outbox::enqueue(&txn, message).await?;
        }
        txn.commit().await?;
        tracing::info!(from = %order.state, to = %to, "saga advanced");
        Ok(true)
    }
}
