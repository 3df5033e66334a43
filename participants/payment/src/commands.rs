//! The `payment.commands` consumer: a batch of charges and refunds on one transaction.

use saga_common::contracts;
use saga_common::db::{Loaded, Reads, Writes};
use saga_common::messaging::participant::{Note, Participant};
use saga_common::messaging::{Envelope, HandleError};

use crate::payments::{self, Outcome, PaymentCommand};

/// Inbox consumer name.
pub const CONSUMER: &str = "payment";

pub struct PaymentCommands;

impl Participant for PaymentCommands {
    type Command = PaymentCommand;
    type Outcome = Outcome;
    const CONSUMER: &'static str = CONSUMER;

    fn parse(envelope: &Envelope) -> Result<PaymentCommand, HandleError> {
        parse(envelope)
    }

    fn read_for(reads: &mut Reads, commands: &[PaymentCommand]) {
        payments::read_for(reads, commands);
    }

    fn decide(
        loaded: &mut Loaded,
        commands: &[&PaymentCommand],
    ) -> Result<(Vec<Outcome>, Writes), HandleError> {
        let decided = payments::decide(loaded, commands)?;
        Ok((decided.outcomes, decided.writes))
    }

    fn answer(command: &Envelope, outcome: Outcome) -> Result<Envelope, HandleError> {
        answer(command, outcome)
    }

    fn after_commit(command: &Envelope, outcome: &Outcome) -> Option<Note> {
        crate::facts::note(command, outcome)
    }
}

/// Checks a command: its payload fits its type, it is for its own saga, it charges an amount
/// from 0 to `MAX_AMOUNT_CENTS`.
fn parse(envelope: &Envelope) -> Result<PaymentCommand, HandleError> {
    let command = match envelope.decode::<contracts::PaymentCommand>()? {
        contracts::PaymentCommand::Charge(charge) => {
            // Bounded, so the ledger's sums cannot overflow (`MAX_AMOUNT_CENTS`).
            if !(0..=contracts::MAX_AMOUNT_CENTS).contains(&charge.amount_cents) {
                return Err(HandleError::permanent(
                    "invalid_payload",
                    format!(
                        "amount_cents must be between 0 and {}",
                        contracts::MAX_AMOUNT_CENTS
                    ),
                ));
            }
            PaymentCommand::Charge {
                order_id: charge.order_id,
                customer_id: charge.customer_id,
                amount_cents: charge.amount_cents,
            }
        }
        contracts::PaymentCommand::Refund(refund) => PaymentCommand::Refund {
            order_id: refund.order_id,
            customer_id: refund.customer_id,
        },
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
    // The span records its fields whether or not a line is written: made only when one is.
    if tracing::enabled!(tracing::Level::DEBUG) {
        command
            .span()
            .in_scope(|| tracing::debug!(?outcome, "payment command handled"));
    }
    let order_id = command.saga_id;
    match outcome {
        Outcome::Charged {
            payment_id,
            amount_cents,
        } => command.reply(&contracts::PaymentCharged {
            order_id,
            payment_id,
            amount_cents,
        }),
        Outcome::Declined { reason } => {
            command.reply(&contracts::PaymentDeclined { order_id, reason })
        }
        Outcome::Refunded { amount_cents } => command.reply(&contracts::PaymentRefunded {
            order_id,
            refunded_cents: amount_cents,
        }),
        // Fails the batch; handled alone, the command is dead-lettered with this reason.
        Outcome::WrongCustomer { paid_by } => {
            return Err(HandleError::permanent(
                "invalid_payload",
                format!("order {order_id} was paid by customer `{paid_by}`, not the one this refund names"),
            ));
        }
    }
    .map_err(HandleError::invalid_payload)
}
