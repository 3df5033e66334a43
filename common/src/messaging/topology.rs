//! Exchange and queue names, and their idempotent declaration.
//!
//! Every service declares the whole topology, so the fleet starts in any order and the
//! management console shows the same picture whichever service came up first. The delay queues
//! of a work queue are the exception: only the service that consumes it declares them
//! ([`declare_retry_queues`]), because their TTLs come from that service's retry settings.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::configuration::RetrySettings;
use crate::contracts::{
    AccountEvent, Contract, InventoryCommand, OrderEvent, PaymentCommand, Reply, StockEvent,
};

pub const COMMANDS_EXCHANGE: &str = "saga.commands";
pub const REPLIES_EXCHANGE: &str = "saga.replies";
pub const EVENTS_EXCHANGE: &str = "saga.events";
pub const DEAD_LETTER_EXCHANGE: &str = "saga.dlx";

pub const PAYMENT_COMMANDS: &str = "payment.commands";
pub const INVENTORY_COMMANDS: &str = "inventory.commands";
pub const ORCHESTRATOR_REPLIES: &str = "orchestrator.replies";
/// The notification service's queue: the events on `saga.events` it writes mail about.
pub const NOTIFICATION_EVENTS: &str = "notification.events";

/// Redeliveries of one message a work queue allows: returned once more after the first delivery
/// and this many redeliveries, it is dead-lettered to the DLQ by the broker itself (reason
/// `delivery_limit` in `x-first-death-reason`). The guard against a message that kills its
/// consumer process before it can be acked or nacked. The consumer's own retries never count
/// here: a retry is a new publish with a fresh count.
pub const DELIVERY_LIMIT: i64 = 10;

/// The dead-letter queue of a work queue, which is also its routing key on `saga.dlx`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// The delay queue holding `queue`'s messages for `delay` before they return to it.
///
/// Named by the delay rather than by the attempt number so that a change of retry settings
/// declares new queues instead of clashing with the TTL argument of existing ones (RabbitMQ
/// refuses to redeclare a queue with other arguments), and so that instances running with
/// different settings never fight over one queue. Levels that share a delay share a queue, which
/// is harmless: a queue only ever holds messages of one TTL, so none waits behind a longer one.
pub fn retry_queue(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}ms", delay.as_millis())
}

/// Work queues and the routing keys bound to each.
pub fn work_queues() -> [(&'static str, &'static str, Vec<&'static str>); 4] {
    [
        (
            PAYMENT_COMMANDS,
            COMMANDS_EXCHANGE,
            PaymentCommand::TYPES.to_vec(),
        ),
        (
            INVENTORY_COMMANDS,
            COMMANDS_EXCHANGE,
            InventoryCommand::TYPES.to_vec(),
        ),
        (
            ORCHESTRATOR_REPLIES,
            REPLIES_EXCHANGE,
            Reply::TYPES.to_vec(),
        ),
        (NOTIFICATION_EVENTS, EVENTS_EXCHANGE, notification_types()),
    ]
}

/// What the notification service is bound to on `saga.events`: every order, account and stock
/// event. Its queue is declared by every service, so events published before it first starts
/// wait for it rather than being dropped by the exchange.
pub fn notification_types() -> Vec<&'static str> {
    OrderEvent::TYPES
        .iter()
        .chain(AccountEvent::TYPES)
        .chain(StockEvent::TYPES)
        .copied()
        .collect()
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

        channel
            .queue_declare(queue.into(), durable_queue, work_queue_arguments(queue))
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

/// What a service declares when it connects: the whole shared topology, and the delay queues of
/// the queue it consumes, one per distinct delay of its retry settings. The one entry point, so
/// that deploy/rabbitmq/definitions.json is checked against exactly what runs (deploy/faults
/// `packaging` tests).
pub async fn declare_for_service(
    channel: &Channel,
    queue: &str,
    retry: &RetrySettings,
) -> Result<(), lapin::Error> {
    declare(channel).await?;
    declare_retry_queues(channel, queue, &retry.delays()).await
}

/// A work queue is a quorum queue: replicated, and it counts deliveries, so [`DELIVERY_LIMIT`]
/// stops a message that crashes its consumer from looping. Rejected messages and those over the
/// limit go to `<queue>.dlq` through `saga.dlx` even when the consumer cannot add its own reason.
fn work_queue_arguments(queue: &str) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dead_letter_queue(queue).as_str().into()),
    );
    arguments
}

/// Declares one delay queue per distinct retry delay of `queue`: a message published to it waits
/// out the queue's TTL, then the broker dead-letters it through the default exchange straight
/// back to `queue`. A queue-level TTL (rather than a per-message one) because RabbitMQ only
/// expires messages at the head of a queue: one TTL per queue means none is stuck behind a
/// longer-waiting one. Classic queues: they only hold messages in transit, and need no plugin.
pub async fn declare_retry_queues(
    channel: &Channel,
    queue: &str,
    delays: &[Duration],
) -> Result<(), lapin::Error> {
    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    for delay in delays {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
        );
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.into()),
        );
        let name = retry_queue(queue, *delay);
        channel
            .queue_declare(name.as_str().into(), durable_queue, arguments)
            .await?;
    }
    Ok(())
}
