//! The `payment.commands` consumer.

use sea_orm::DatabaseConnection;

use saga_common::contracts::{self, command, reply};
use saga_common::messaging::participant;
use saga_common::messaging::{Envelope, HandleError, MessageHandler};

use crate::payments::{self, ChargeOutcome};

/// Inbox consumer name.
pub const CONSUMER: &str = "payment";

pub struct PaymentCommands {
    pub db: DatabaseConnection,
}

impl MessageHandler for PaymentCommands {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        match envelope.message_type.as_str() {
            command::CHARGE_PAYMENT => self.charge(envelope).await,
            command::REFUND_PAYMENT => self.refund(envelope).await,
            other => Err(HandleError::unknown_type(other)),
        }
    }
}

impl PaymentCommands {
    async fn charge(&self, envelope: Envelope) -> Result<(), HandleError> {
        let command: contracts::ChargePayment =
            envelope.payload().map_err(HandleError::invalid_payload)?;
        if command.amount_cents < 0 || command.order_id != envelope.saga_id {
            return Err(HandleError::permanent(
                "invalid_payload",
                "amount must not be negative and order_id must equal saga_id",
            ));
        }
        let Some(txn) = participant::begin(&self.db, CONSUMER, &envelope).await? else {
            return Ok(());
        };
        let outcome = payments::charge(
            &txn,
            command.order_id,
            &command.customer_id,
            command.amount_cents,
        )
        .await?;
        tracing::info!(?outcome, "charge handled");
        let answer = match outcome {
            ChargeOutcome::Charged {
                payment_id,
                amount_cents,
            } => envelope.reply(
                reply::PAYMENT_CHARGED,
                &contracts::PaymentCharged {
                    order_id: command.order_id,
                    payment_id,
                    amount_cents,
                },
            ),
            ChargeOutcome::Declined { reason } => envelope.reply(
                reply::PAYMENT_DECLINED,
                &contracts::PaymentDeclined {
                    order_id: command.order_id,
                    reason,
                },
            ),
        }
        .map_err(HandleError::invalid_payload)?;
        participant::finish(txn, CONSUMER, &envelope, answer).await
    }

    async fn refund(&self, envelope: Envelope) -> Result<(), HandleError> {
        let command: contracts::RefundPayment =
            envelope.payload().map_err(HandleError::invalid_payload)?;
        if command.order_id != envelope.saga_id {
            return Err(HandleError::permanent(
                "invalid_payload",
                "order_id must equal saga_id",
            ));
        }
        let Some(txn) = participant::begin(&self.db, CONSUMER, &envelope).await? else {
            return Ok(());
        };
        let refunded_cents = payments::refund(&txn, command.order_id, &command.customer_id).await?;
        tracing::info!(refunded_cents, "refund handled");
        let answer = envelope
            .reply(
                reply::PAYMENT_REFUNDED,
                &contracts::PaymentRefunded {
                    order_id: command.order_id,
                    refunded_cents,
                },
            )
            .map_err(HandleError::invalid_payload)?;
        participant::finish(txn, CONSUMER, &envelope, answer).await
    }
}
