//! From saga commands to messages: the payload each command becomes (its type name comes with
//! the payload, from `contracts`).

use uuid::Uuid;

use saga_common::contracts::{self, Message, OrderFailureReason};
use saga_common::messaging::{Envelope, OutgoingMessage};

use super::machine::{FailureReason, SagaCommand};
use super::store::Saga;

/// The message `command` becomes for `order`. `causation_id` is the reply (or request) that
/// caused it. `None` for [`SagaCommand::ResendPending`], which sends no new message but the
/// stored one again (see the engine).
pub fn message_for(
    command: SagaCommand,
    order: &Saga,
    correlation_id: &str,
    causation_id: Option<Uuid>,
) -> Result<Option<OutgoingMessage>, serde_json::Error> {
    let envelope = |message: &dyn Message| {
        Envelope::new(message, order.order_id, correlation_id, causation_id)
    };
    Ok(Some(match command {
        SagaCommand::ResendPending => return Ok(None),
        SagaCommand::ChargePayment => {
            OutgoingMessage::command(envelope(&contracts::ChargePayment {
                order_id: order.order_id,
                customer_id: order.customer_id.clone(),
                amount_cents: order.total_cents,
            })?)
        }
        SagaCommand::ReserveStock => {
            OutgoingMessage::command(envelope(&contracts::ReserveStock {
                order_id: order.order_id,
                lines: order
                    .items
                    .iter()
                    .map(|item| contracts::StockLine {
                        product_id: item.product_id.clone(),
                        quantity: item.quantity,
                    })
                    .collect(),
            })?)
        }
        SagaCommand::RefundPayment => {
            OutgoingMessage::command(envelope(&contracts::RefundPayment {
                order_id: order.order_id,
                customer_id: order.customer_id.clone(),
            })?)
        }
        SagaCommand::ReleaseStock => {
            OutgoingMessage::command(envelope(&contracts::ReleaseStock {
                order_id: order.order_id,
            })?)
        }
        SagaCommand::PublishOrderCompleted => {
            OutgoingMessage::event(envelope(&contracts::OrderCompleted {
                order_id: order.order_id,
                customer_id: order.customer_id.clone(),
                total_cents: order.total_cents,
                lines: order
                    .items
                    .iter()
                    .map(|item| contracts::OrderLine {
                        product_id: item.product_id.clone(),
                        quantity: item.quantity,
                        unit_price_cents: item.unit_price_cents,
                    })
                    .collect(),
            })?)
        }
        SagaCommand::PublishOrderFailed(reason) => {
            OutgoingMessage::event(envelope(&contracts::OrderFailed {
                order_id: order.order_id,
                customer_id: order.customer_id.clone(),
                reason: wire_reason(reason),
            })?)
        }
    }))
}

/// The saga's failure reason as `order.failed` spells it.
fn wire_reason(reason: FailureReason) -> OrderFailureReason {
    match reason {
        FailureReason::PaymentDeclined => OrderFailureReason::PaymentDeclined,
        FailureReason::OutOfStock => OrderFailureReason::OutOfStock,
        FailureReason::TimedOut => OrderFailureReason::TimedOut,
    }
}
