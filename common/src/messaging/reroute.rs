//! Where a delivery goes when it is not acknowledged as handled: to the delay queue of its
//! attempt (a transient failure) or to its queue's DLQ (a permanent one, or retries
//! exhausted), each publish confirmed before the delivery is acked, with the headers an
//! operator reads in the console. Counted in the consumer's metrics as it happens.

use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};

use super::consumer::ConsumerContext;
use super::envelope::long_string;
use super::headers;
use super::topology;

/// `x-error` is for a human in the console: the first 2,000 characters say enough.
const MAX_ERROR_CHARS: usize = 2_000;

/// What earlier failed attempts wrote on a delivery.
pub(crate) struct History {
    /// Attempts that failed before this delivery (0 on a first delivery).
    pub(crate) failures: u32,
    first_failed_at: Option<String>,
    pub(crate) original_exchange: String,
    pub(crate) original_routing_key: String,
}

impl History {
    pub(crate) fn of(delivery: &Delivery) -> Self {
        let empty = FieldTable::default();
        let table = delivery.properties.headers().as_ref().unwrap_or(&empty);
        Self {
            failures: headers::integer(table, headers::ATTEMPT)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            first_failed_at: headers::text(table, headers::FIRST_FAILED_AT),
            original_exchange: headers::text(table, headers::ORIGINAL_EXCHANGE)
                .unwrap_or_else(|| delivery.exchange.to_string()),
            original_routing_key: headers::text(table, headers::ORIGINAL_ROUTING_KEY)
                .unwrap_or_else(|| delivery.routing_key.to_string()),
        }
    }

    /// The number of the attempt this delivery is.
    pub(crate) fn attempt(&self) -> u32 {
        self.failures.saturating_add(1)
    }
}

/// Why a delivery is given up on.
pub(crate) struct Failure<'a> {
    /// A stable code (`x-reason`, and the `reason` label of `dead_lettered_messages_total`).
    pub(crate) reason: &'static str,
    pub(crate) detail: &'a str,
    /// The message's type, when its body was an envelope (the `type` label).
    pub(crate) message_type: Option<&'a str>,
}

/// Publishes the delivery to the delay queue of this attempt and acks it once the broker
/// confirmed. If that fails, the delivery is requeued after the same pause instead: slower to
/// give up (the queue's delivery limit bounds it), never lost, never a hot loop.
pub(crate) async fn retry_later(
    delivery: &Delivery,
    context: &ConsumerContext,
    history: &History,
    message_type: &str,
    error: &str,
) {
    let attempt = history.attempt();
    let delay = context.retry.delay_after(attempt);
    let delay_queue = topology::retry_queue(context.queue, delay);
    let now = Utc::now().to_rfc3339();
    let mut table = delivery.properties.headers().clone().unwrap_or_default();
    table.insert(
        headers::ATTEMPT.into(),
        AMQPValue::LongLongInt(i64::from(attempt)),
    );
    for (name, value) in [
        (
            headers::FIRST_FAILED_AT,
            history.first_failed_at.as_deref().unwrap_or(&now),
        ),
        (headers::ORIGINAL_EXCHANGE, &history.original_exchange),
        (headers::ORIGINAL_ROUTING_KEY, &history.original_routing_key),
        (headers::ERROR, &truncated(error)),
    ] {
        table.insert(name.into(), long_string(value));
    }
    let properties = delivery.properties.clone().with_headers(table);

    match publish_confirmed(context, "", &delay_queue, &delivery.data, properties).await {
        Ok(()) => {
            context.metrics.retried(Some(message_type));
            tracing::warn!(event = "message.retried", reason = "transient_failure", %error, attempt, retry_in_ms = delay.as_millis() as u64, "transient failure; message scheduled for retry");
            if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                // The retry copy exists; a redelivery of this one is a duplicate the inbox absorbs.
                tracing::warn!(%error, "ack after scheduling a retry failed");
            }
        }
        Err(outcome) => {
            tracing::error!(%error, %outcome, "could not publish to the delay queue; requeueing after a pause");
            tokio::time::sleep(delay).await;
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            if let Err(error) = delivery.acker.nack(requeue).await {
                tracing::warn!(%error, "nack failed; the broker will redeliver on reconnect");
            }
        }
    }
}

/// Publishes the delivery, with headers an operator reads in the console, to its queue's DLQ and
/// acks it once the broker confirmed. If that publish fails, the delivery is rejected instead and
/// the queue's own dead-letter exchange still takes it there (with RabbitMQ's `x-death` instead
/// of our headers): never dropped, never looped.
pub(crate) async fn dead_letter(
    delivery: &Delivery,
    context: &ConsumerContext,
    history: &History,
    failure: Failure<'_>,
) {
    let now = Utc::now().to_rfc3339();
    let mut table = headers::without(
        delivery
            .properties
            .headers()
            .as_ref()
            .unwrap_or(&FieldTable::default()),
        &[headers::ATTEMPT],
    );
    for (name, value) in [
        (headers::REASON, failure.reason),
        (headers::ERROR, &truncated(failure.detail)),
        (headers::SERVICE, &context.service),
        (
            headers::FIRST_FAILED_AT,
            history.first_failed_at.as_deref().unwrap_or(&now),
        ),
        (headers::LAST_FAILED_AT, &now),
        (headers::FAILED_AT, &now),
        (headers::ORIGINAL_EXCHANGE, &history.original_exchange),
        (headers::ORIGINAL_ROUTING_KEY, &history.original_routing_key),
        (headers::ORIGINAL_QUEUE, context.queue),
    ] {
        table.insert(name.into(), long_string(value));
    }
    table.insert(
        headers::ATTEMPTS.into(),
        AMQPValue::LongLongInt(i64::from(history.attempt())),
    );
    table.insert(
        headers::REDELIVERED.into(),
        AMQPValue::Boolean(delivery.redelivered),
    );
    let properties = delivery.properties.clone().with_headers(table);
    let dlq = topology::dead_letter_queue(context.queue);
    // Moved either way: to the DLQ by us, or by the queue's DLX if our publish fails.
    context
        .metrics
        .dead_lettered(failure.message_type, failure.reason);

    match publish_confirmed(
        context,
        topology::DEAD_LETTER_EXCHANGE,
        &dlq,
        &delivery.data,
        properties,
    )
    .await
    {
        Ok(()) => {
            if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                tracing::warn!(%error, "ack of a dead-lettered message failed");
            }
        }
        Err(outcome) => {
            tracing::error!(%outcome, "could not publish to the DLQ; rejecting to the queue's DLX");
            let reject = BasicNackOptions {
                requeue: false,
                ..BasicNackOptions::default()
            };
            if let Err(error) = delivery.acker.nack(reject).await {
                tracing::warn!(%error, "reject failed; the broker will redeliver on reconnect");
            }
        }
    }
}

/// Publishes with `mandatory` and waits for the broker's confirm: `Ok` only when the message was
/// routed to a queue and the broker took responsibility for it.
async fn publish_confirmed(
    context: &ConsumerContext,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), String> {
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let confirm = context
        .publisher
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            mandatory,
            body,
            properties,
        )
        .await
        .map_err(|error| error.to_string())?;
    match confirm.await.map_err(|error| error.to_string())? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(format!("no queue is bound for `{routing_key}`")),
        Confirmation::Nack(_) => Err("the broker refused the message".into()),
        Confirmation::NotRequested => Err("the channel is not in confirm mode".into()),
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(MAX_ERROR_CHARS).collect()
}
