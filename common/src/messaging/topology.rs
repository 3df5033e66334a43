//! Exchange and queue names, and their idempotent declaration.
//!
//! Every service declares the whole topology, so the fleet starts in any order and the
//! management console shows the same picture whichever service came up first.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::contracts::{command, reply};

pub const COMMANDS_EXCHANGE: &str = "saga.commands";
pub const REPLIES_EXCHANGE: &str = "saga.replies";
pub const EVENTS_EXCHANGE: &str = "saga.events";
pub const DEAD_LETTER_EXCHANGE: &str = "saga.dlx";

pub const PAYMENT_COMMANDS: &str = "payment.commands";
pub const INVENTORY_COMMANDS: &str = "inventory.commands";
pub const ORCHESTRATOR_REPLIES: &str = "orchestrator.replies";

/// The dead-letter queue of a work queue, which is also its routing key on `saga.dlx`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Work queues and the routing keys bound to each.
pub fn work_queues() -> [(&'static str, &'static str, Vec<&'static str>); 3] {
    [
        (
            PAYMENT_COMMANDS,
            COMMANDS_EXCHANGE,
            vec![command::CHARGE_PAYMENT, command::REFUND_PAYMENT],
        ),
        (
            INVENTORY_COMMANDS,
            COMMANDS_EXCHANGE,
            vec![command::RESERVE_STOCK, command::RELEASE_STOCK],
        ),
        (
            ORCHESTRATOR_REPLIES,
            REPLIES_EXCHANGE,
            vec![
                reply::PAYMENT_CHARGED,
                reply::PAYMENT_DECLINED,
                reply::PAYMENT_REFUNDED,
                reply::STOCK_RESERVED,
                reply::STOCK_RESERVATION_FAILED,
                reply::STOCK_RELEASED,
            ],
        ),
    ]
}

pub async fn declare(channel: &Channel) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for (name, kind) in [
        (COMMANDS_EXCHANGE, ExchangeKind::Direct),
        (REPLIES_EXCHANGE, ExchangeKind::Direct),
        (EVENTS_EXCHANGE, ExchangeKind::Topic),
        (DEAD_LETTER_EXCHANGE, ExchangeKind::Direct),
    ] {
        channel
            .exchange_declare(name.into(), kind, durable, FieldTable::default())
            .await?;
    }

    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    for (queue, exchange, routing_keys) in work_queues() {
        let dlq = dead_letter_queue(queue);
        channel
            .queue_declare(dlq.as_str().into(), durable_queue, FieldTable::default())
            .await?;
        channel
            .queue_bind(
                dlq.as_str().into(),
                DEAD_LETTER_EXCHANGE.into(),
                dlq.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        // Rejected or expired messages go to `<queue>.dlq` through `saga.dlx` even when the
        // consumer cannot add its own reason (a crash, a nack without requeue).
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dlq.as_str().into()),
        );
        channel
            .queue_declare(queue.into(), durable_queue, arguments)
            .await?;
        for key in routing_keys {
            channel
                .queue_bind(
                    queue.into(),
                    exchange.into(),
                    ShortString::from(key),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    Ok(())
}
