//! From saga commands to messages. This is the only place that knows which message type and
//! payload each command becomes.

use uuid::Uuid;

use saga_common::contracts::{self, command, event};
use saga_common::messaging::{Envelope, OutgoingMessage};

use super::machine::SagaCommand;
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
    let envelope = |message_type: &str, payload: serde_json::Value| {
        Envelope::new(
            message_type,
            order.order_id,
            correlation_id,
            causation_id,
            &payload,
        )
    };
    Ok(Some(match command {
        SagaCommand::ResendPending => return Ok(None),
        SagaCommand::ChargePayment => OutgoingMessage::command(envelope(
            command::CHARGE_PAYMENT,
            serde_json::to_value(contracts::ChargePayment {
                order_id: order.order_id,
                customer_id: order.customer_id.clone(),
                amount_cents: order.total_cents,
            })?,
        )?),
        SagaCommand::ReserveStock => OutgoingMessage::command(envelope(
            command::RESERVE_STOCK,
            serde_json::to_value(contracts::ReserveStock {
                order_id: order.order_id,
                lines: order
                    .items
                    .iter()
                    .map(|item| contracts::StockLine {
                        product_id: item.product_id.clone(),
                        quantity: item.quantity,
                    })
                    .collect(),
            })?,
        )?),
        SagaCommand::RefundPayment => OutgoingMessage::command(envelope(
            command::REFUND_PAYMENT,
            serde_json::to_value(contracts::RefundPayment {
                order_id: order.order_id,
                customer_id: order.customer_id.clone(),
            })?,
        )?),
        SagaCommand::ReleaseStock => OutgoingMessage::command(envelope(
            command::RELEASE_STOCK,
            serde_json::to_value(contracts::ReleaseStock {
                order_id: order.order_id,
            })?,
        )?),
        SagaCommand::PublishOrderCompleted => OutgoingMessage::event(envelope(
            event::ORDER_COMPLETED,
            serde_json::to_value(contracts::OrderCompleted {
                order_id: order.order_id,
                customer_id: order.customer_id.clone(),
                total_cents: order.total_cents,
            })?,
        )?),
        SagaCommand::PublishOrderFailed(reason) => OutgoingMessage::event(envelope(
            event::ORDER_FAILED,
            serde_json::to_value(contracts::OrderFailed {
                order_id: order.order_id,
                customer_id: order.customer_id.clone(),
                reason: reason.as_str().to_owned(),
            })?,
        )?),
    }))
}
