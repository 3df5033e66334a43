//! The delivery loop shared by every service.
//!
//! A delivery is acknowledged only after its handler returned, that is after the handler's
//! transaction (effect + inbox row + outbox rows) committed. A message that can never succeed is
//! published to `<queue>.dlq` with headers saying why and only then acked; a transient failure is
//! requeued after a pause so one bad moment does not become a hot loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::AMQPValue;
use tracing::Instrument;

use super::envelope::{Envelope, long_string};
use super::outbox::RelayWakeup;
use super::topology;

/// Why a message could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// It will never succeed (unparseable, unknown type, invalid payload, impossible transition):
    /// dead-letter it at once. `reason` is a stable code, `detail` the human explanation.
    #[error("{reason}: {detail}")]
    Permanent {
        reason: &'static str,
        detail: String,
    },
    /// It may succeed later (database unavailable, lost a race): requeue it.
    #[error("transient failure: {0}")]
    Transient(String),
}

impl HandleError {
    pub fn permanent(reason: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Permanent {
            reason,
            detail: detail.to_string(),
        }
    }

    /// A payload that does not match its type's schema.
    pub fn invalid_payload(error: serde_json::Error) -> Self {
        Self::permanent("invalid_payload", error)
    }

    pub fn unknown_type(message_type: &str) -> Self {
        Self::permanent(
            "unknown_message_type",
            format!("no handler for message type `{message_type}`"),
        )
    }
}

impl From<sea_orm::DbErr> for HandleError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Transient(format!("database: {error}"))
    }
}

/// What a service does with one message. Implementations own their transaction: they commit the
/// effect, the inbox row and any outbox rows together before returning `Ok`.
pub trait MessageHandler: Send + Sync + 'static {
    fn handle(&self, envelope: Envelope) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// Header names an operator sees on a dead-lettered message.
pub mod dead_letter_headers {
    pub const REASON: &str = "x-dead-letter-reason";
    pub const ERROR: &str = "x-error";
    pub const SERVICE: &str = "x-service";
    pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
    pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";
    pub const ORIGINAL_QUEUE: &str = "x-original-queue";
    pub const FAILED_AT: &str = "x-failed-at";
}

pub(crate) struct ConsumerContext {
    pub service: String,
    pub queue: &'static str,
    /// Confirm-mode channel used to move poison messages to the DLQ.
    pub publisher: Channel,
    pub wakeup: RelayWakeup,
    pub concurrency: usize,
    /// Pause before requeueing after a transient failure.
    pub retry_delay: Duration,
}

/// Runs until the consumer stream ends (cancelled at shutdown, or the channel died).
pub(crate) async fn consume<H: MessageHandler>(
    consumer: lapin::Consumer,
    context: Arc<ConsumerContext>,
    handler: Arc<H>,
) {
    consumer
        .for_each_concurrent(context.concurrency.max(1), |delivery| {
            let context = context.clone();
            let handler = handler.clone();
            async move {
                match delivery {
                    Ok(delivery) => process(delivery, &context, handler.as_ref()).await,
                    Err(error) => tracing::warn!(%error, queue = context.queue, "consumer error"),
                }
            }
        })
        .await;
}

async fn process<H: MessageHandler>(delivery: Delivery, context: &ConsumerContext, handler: &H) {
    let envelope: Envelope = match serde_json::from_slice(&delivery.data) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::warn!(%error, queue = context.queue, "unparseable message");
            dead_letter(&delivery, context, "malformed_message", &error.to_string()).await;
            return;
        }
    };
    let span = tracing::info_span!(
        "handle_message",
        service = %context.service,
        queue = context.queue,
        message_type = %envelope.message_type,
        message_id = %envelope.message_id,
        correlation_id = %envelope.correlation_id,
        saga_id = %envelope.saga_id,
        order_id = %envelope.saga_id,
        redelivered = delivery.redelivered,
    );
    let outcome = handler.handle(envelope).instrument(span.clone()).await;
    let _entered = span.enter();
    match outcome {
        Ok(()) => {
            context.wakeup.notify();
            if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                // The effect is committed; a redelivery will hit the inbox and change nothing.
                tracing::warn!(%error, "ack failed after commit");
            }
        }
        Err(HandleError::Permanent { reason, detail }) => {
            tracing::warn!(reason, %detail, "message dead-lettered");
            dead_letter(&delivery, context, reason, &detail).await;
        }
        Err(HandleError::Transient(error)) => {
            tracing::warn!(%error, "transient failure; message requeued");
            tokio::time::sleep(context.retry_delay).await;
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

/// Publishes the delivery, with reason headers, to its queue's DLQ and acks it once the broker
/// confirmed. If that publish fails, the delivery is rejected instead and the queue's own
/// dead-letter exchange still takes it there (without our headers): never dropped, never looped.
async fn dead_letter(delivery: &Delivery, context: &ConsumerContext, reason: &str, detail: &str) {
    use dead_letter_headers as h;
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    for (name, value) in [
        (h::REASON, reason.to_owned()),
        (h::ERROR, detail.chars().take(2_000).collect()),
        (h::SERVICE, context.service.clone()),
        (h::ORIGINAL_EXCHANGE, delivery.exchange.to_string()),
        (h::ORIGINAL_ROUTING_KEY, delivery.routing_key.to_string()),
        (h::ORIGINAL_QUEUE, context.queue.to_owned()),
        (h::FAILED_AT, Utc::now().to_rfc3339()),
    ] {
        headers.insert(name.into(), long_string(&value));
    }
    headers.insert(
        "x-redelivered".into(),
        AMQPValue::Boolean(delivery.redelivered),
    );
    let properties = delivery.properties.clone().with_headers(headers);
    let dlq = topology::dead_letter_queue(context.queue);

    let published = async {
        context
            .publisher
            .basic_publish(
                topology::DEAD_LETTER_EXCHANGE.into(),
                dlq.as_str().into(),
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?
            .await
    }
    .await;
    match published {
        Ok(confirmation) if confirmation.is_ack() => {
            if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                tracing::warn!(%error, "ack of a dead-lettered message failed");
            }
        }
        outcome => {
            tracing::error!(
                ?outcome,
                "could not publish to the DLQ; rejecting to the queue's DLX"
            );
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
