//! Duplicate injection: every command and every reply is delivered twice.
//!
//! A queue of our own, bound to `saga.commands` and `saga.replies` with the work queues' routing
//! keys, receives a copy of each message, which is published again with the same body and
//! properties (so the same `message_id`), as after a publisher retry. The copy carries
//! [`DUPLICATE_HEADER`] and is not duplicated again. Every other copy is held back a moment, so
//! some duplicates arrive after the saga has moved on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::task::JoinHandle;

use saga_common::messaging::topology;

use crate::harness::bounded;
use crate::harness::rabbitmq::AMQP_CALL_LIMIT;

/// Marks a message the duplicator published, so it is not duplicated again.
pub const DUPLICATE_HEADER: &str = "x-fault-duplicate";

/// How long every other duplicate is held back.
const LATE_BY: Duration = Duration::from_millis(400);

pub struct Duplicator {
    duplicated: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    _connection: Connection,
}

impl Duplicator {
    /// Binds the tap queue and starts duplicating. Start it before the traffic it should double.
    pub async fn start(amqp_url: &str) -> Self {
        let (connection, channel, consumer) =
            bounded("the duplicator's set-up", AMQP_CALL_LIMIT, tap(amqp_url)).await;

        let duplicated = Arc::new(AtomicUsize::new(0));
        let counter = duplicated.clone();
        let task = tokio::spawn(async move {
            let mut seen = 0usize;
            let mut consumer = consumer;
            while let Some(Ok(delivery)) = consumer.next().await {
                let is_copy = delivery
                    .properties
                    .headers()
                    .as_ref()
                    .is_some_and(|h| h.contains_key(DUPLICATE_HEADER));
                if !is_copy {
                    seen += 1;
                    let late = seen.is_multiple_of(2);
                    let channel = channel.clone();
                    let counter = counter.clone();
                    // Each in its own task, so a held-back duplicate does not hold up the rest.
                    tokio::spawn(async move {
                        if late {
                            tokio::time::sleep(LATE_BY).await;
                        }
                        if republish(&channel, &delivery).await {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        ack(&delivery).await;
                    });
                } else {
                    ack(&delivery).await;
                }
            }
        });
        Self {
            duplicated,
            task,
            _connection: connection,
        }
    }

    /// Messages published a second time so far.
    pub fn duplicated(&self) -> usize {
        self.duplicated.load(Ordering::Relaxed)
    }
}

impl Drop for Duplicator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects, declares and binds the tap queue, and consumes it on a confirm-mode channel.
async fn tap(amqp_url: &str) -> (Connection, Channel, lapin::Consumer) {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .expect("the duplicator cannot connect");
    let channel = connection
        .create_channel()
        .await
        .expect("the duplicator cannot open a channel");
    topology::declare(&channel)
        .await
        .expect("the duplicator cannot declare the topology");
    let queue = channel
        .queue_declare(
            "faults.duplicator".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the duplicator cannot declare its queue");
    for (work_queue, exchange, routing_keys) in crate::harness::fleet::saga_work_queues() {
        for key in routing_keys {
            channel
                .queue_bind(
                    queue.name().clone(),
                    exchange.into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("cannot bind the duplicator to {work_queue}: {e}"));
        }
    }
    channel
        .basic_qos(64, BasicQosOptions::default())
        .await
        .expect("basic.qos");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            "duplicator".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("the duplicator cannot consume");
    (connection, channel, consumer)
}

/// Acks a tapped copy; bounded, since an ack that never completes must not stall the tap.
async fn ack(delivery: &lapin::message::Delivery) {
    let _ = tokio::time::timeout(
        AMQP_CALL_LIMIT,
        delivery.acker.ack(BasicAckOptions::default()),
    )
    .await;
}

/// Publishes the delivery again where it came from, marked as a copy; true once confirmed
/// (within [`AMQP_CALL_LIMIT`]).
async fn republish(channel: &Channel, delivery: &lapin::message::Delivery) -> bool {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(DUPLICATE_HEADER.into(), AMQPValue::Boolean(true));
    let properties = delivery.properties.clone().with_headers(headers);
    let published = async {
        channel
            .basic_publish(
                delivery.exchange.clone(),
                delivery.routing_key.clone(),
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?
            .await
    };
    matches!(
        tokio::time::timeout(AMQP_CALL_LIMIT, published).await,
        Ok(Ok(confirmation)) if confirmation.is_ack()
    )
}
