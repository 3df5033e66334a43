//! The `payment.commands` consumer: a batch of charges and refunds on one transaction.

use sea_orm::DatabaseTransaction;

use saga_common::contracts::{self, command, reply};
use saga_common::messaging::outbox::Enqueued;
use saga_common::messaging::participant;
use saga_common::messaging::{Effect, Envelope, HandleError, MessageHandler};

use crate::payments::{self, Outcome, PaymentCommand};

/// Inbox consumer name.
pub const CONSUMER: &str = "payment";

pub struct PaymentCommands;

impl MessageHandler for PaymentCommands {
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        batch: &[Envelope],
    ) -> Result<Enqueued, HandleError> {
        participant::handle_batch(txn, CONSUMER, batch, |fresh| async move {
            let commands = fresh
                .iter()
                .map(|envelope| parse(envelope))
                .collect::<Result<Vec<_>, _>>()?;
            let decided = payments::decide_all(txn, &commands).await?;
            let replies = fresh
                .iter()
                .zip(decided.outcomes)
                .map(|(envelope, outcome)| answer(envelope, outcome))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Effect {
                replies,
                writes: decided.writes,
            })
        })
        .await
    }
}

/// Checks a command: its payload fits its type, it is for its own saga, it charges no negative
/// amount.
fn parse(envelope: &Envelope) -> Result<PaymentCommand, HandleError> {
    let command = match envelope.message_type.as_str() {
        command::CHARGE_PAYMENT => {
            let charge: contracts::ChargePayment =
                envelope.payload().map_err(HandleError::invalid_payload)?;
            if charge.amount_cents < 0 {
                return Err(HandleError::permanent(
                    "invalid_payload",
                    "amount must not be negative",
                ));
            }
            PaymentCommand::Charge {
                order_id: charge.order_id,
                customer_id: charge.customer_id,
                amount_cents: charge.amount_cents,
            }
        }
        command::REFUND_PAYMENT => {
            let refund: contracts::RefundPayment =
                envelope.payload().map_err(HandleError::invalid_payload)?;
            PaymentCommand::Refund {
                order_id: refund.order_id,
                customer_id: refund.customer_id,
            }
        }
        other => return Err(HandleError::unknown_type(other)),
    };
    if command.order_id() != envelope.saga_id {
        return Err(HandleError::permanent(
            "invalid_payload",
            "order_id must equal saga_id",
        ));
    }
    Ok(command)
}

fn answer(command: &Envelope, outcome: Outcome) -> Result<Envelope, HandleError> {
    command
        .span()
        .in_scope(|| tracing::debug!(?outcome, "payment command handled"));
    let order_id = command.saga_id;
    match outcome {
        Outcome::Charged {
            payment_id,
            amount_cents,
        } => command.reply(
            reply::PAYMENT_CHARGED,
            &contracts::PaymentCharged {
                order_id,
                payment_id,
                amount_cents,
            },
        ),
        Outcome::Declined { reason } => command.reply(
            reply::PAYMENT_DECLINED,
            &contracts::PaymentDeclined { order_id, reason },
        ),
        Outcome::Refunded { amount_cents } => command.reply(
            reply::PAYMENT_REFUNDED,
            &contracts::PaymentRefunded {
                order_id,
                refunded_cents: amount_cents,
            },
        ),
    }
    .map_err(HandleError::invalid_payload)
}
