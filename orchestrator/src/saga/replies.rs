//! The `orchestrator.replies` consumer: one reply, one saga step.
//!
//! In one transaction: claim the reply in the inbox, load the saga, apply the event through the
//! [`engine`](super::engine) (pure transition, version-checked write, timeline, outbox), commit.
//! If another writer moved the same saga in between (the version changed), everything is rolled
//! back and the step retried on fresh state, so two racing replies can never both apply a
//! transition.

use chrono::Utc;
use sea_orm::{DatabaseConnection, TransactionTrait};

use saga_common::contracts::{self, reply};
use saga_common::messaging::inbox::{self, Claim};
use saga_common::messaging::{Envelope, HandleError, MessageHandler};

use super::engine::{self, Applied, ApplyError, Trigger};
use super::machine::SagaEvent;
use crate::configuration::SagaSettings;
use crate::orders::store;

/// Inbox consumer name.
pub const CONSUMER: &str = "orchestrator";

/// Attempts on a version conflict before the delivery counts as a transient failure.
const MAX_CONFLICT_RETRIES: usize = 5;

pub struct SagaReplies {
    pub db: DatabaseConnection,
    pub settings: SagaSettings,
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
        reply::STOCK_RELEASED => {
            check::<contracts::StockReleased>(envelope, SagaEvent::StockReleased)
        }
        other => Err(HandleError::unknown_type(other)),
    }
}

impl From<ApplyError> for HandleError {
    fn from(error: ApplyError) -> Self {
        match error {
            ApplyError::Invalid(invalid) => HandleError::permanent("invalid_transition", invalid),
            ApplyError::Message(error) => HandleError::invalid_payload(error),
            ApplyError::NothingPending(_) => HandleError::permanent("invalid_transition", error),
            ApplyError::Database(error) => error.into(),
        }
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
        let trigger = Trigger {
            kind: &envelope.message_type,
            message_id: envelope.message_id,
            correlation_id: &envelope.correlation_id,
        };
        match engine::apply(&txn, &order, event, &trigger, &self.settings, Utc::now()).await? {
            Applied::Conflict => return Ok(false),
            Applied::Ignored => {
                tracing::info!(state = %order.state, ?event, "late or duplicate reply ignored");
            }
            Applied::Stepped(step) => {
                tracing::info!(from = %order.state, to = %step.to, "saga advanced");
            }
        }
        txn.commit().await?;
        Ok(true)
    }
}
