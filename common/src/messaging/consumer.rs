//! The delivery loop shared by every service.
//!
//! Each of `amqp.concurrency` channels takes its deliveries in batches, one batch at a time:
//! what the broker has pushed (up to `amqp.batch_size`) is applied on one transaction, committed
//! once and acknowledged with one multiple-ack, which is exact because a channel never has two
//! batches in flight. A failed batch is rolled back and its deliveries handled again one by one,
//! so one bad message never takes its neighbours down: a permanent failure goes to
//! `<queue>.dlq`, a transient one to a delay queue (a requeue would be a hot loop), and while the
//! database does not answer a delivery is held without counting an attempt, since it is the
//! service that is sick, not the message. A copy older than the deduplication window
//! (`retention.inbox_window`), which the inbox may have forgotten, is dead-lettered unapplied.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tracing::{Instrument, Span};

use super::envelope::{Envelope, long_string};
use super::headers;
use super::inbox::DedupWindow;
use super::outbox::{Enqueued, RelayWakeup};
use super::topology;
use crate::batching::Batches;
use crate::configuration::RetrySettings;
use crate::telemetry;

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
    /// It may succeed later (database unavailable, a timeout, lost a race): retry it after a
    /// delay, a bounded number of times.
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
        Self::permanent(INVALID_PAYLOAD, error)
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

/// What a service does with its messages.
pub trait MessageHandler: Send + Sync + 'static {
    /// Applies `batch` (in delivery order; the same message may appear twice) on `txn`: the
    /// effects, the inbox rows and the outbox rows; the consumer commits and acks. Any error
    /// fails the whole batch, which the consumer then offers again one message at a time.
    /// Handlers lock the rows they change in one order (sorted keys), so that batches running
    /// side by side never deadlock.
    fn apply(
        &self,
        txn: &DatabaseTransaction,
        batch: &[Envelope],
    ) -> impl Future<Output = Result<Enqueued, HandleError>> + Send;
}

/// Applies `batch` on a transaction of its own, commits it and wakes the relay.
pub async fn handle<H: MessageHandler>(
    db: &DatabaseConnection,
    wakeup: &RelayWakeup,
    handler: &H,
    batch: &[Envelope],
) -> Result<(), HandleError> {
    let txn = db.begin().await?;
    let enqueued = handler.apply(&txn, batch).await?;
    wakeup.commit(txn, enqueued).await?;
    Ok(())
}

/// Reason code of a message whose transient failures outlasted `retry.max_attempts`.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
/// Reason code of a body that is not an envelope (or whose own fields hold a NUL).
pub const MALFORMED_MESSAGE: &str = "malformed_message";
/// Reason code of a payload that does not fit its type, or holds a NUL character.
pub const INVALID_PAYLOAD: &str = "invalid_payload";
/// Reason code of a message older than the deduplication window: never applied, since the
/// inbox may no longer know it was (see [`DedupWindow`]).
pub const OUTSIDE_DEDUP_WINDOW: &str = "outside_dedup_window";

/// How long a readiness-style ping may take when telling a sick database from a sick message.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a held delivery asks whether the database is back.
const OUTAGE_POLL: Duration = Duration::from_millis(500);
/// `x-error` is for a human in the console: the first 2,000 characters say enough.
const MAX_ERROR_CHARS: usize = 2_000;

pub(crate) struct ConsumerContext {
    pub service: String,
    pub queue: &'static str,
    /// Confirm-mode channel that moves messages to the delay queues and the DLQ.
    pub publisher: Channel,
    pub wakeup: RelayWakeup,
    pub batch_size: usize,
    pub batch_linger: Duration,
    pub retry: RetrySettings,
    /// How old a message may be and still be applied.
    pub dedup_window: DedupWindow,
    /// Pinged after a transient failure to tell a database outage from a failing message.
    pub db: DatabaseConnection,
}

/// Consumes one channel's deliveries until the consumer is cancelled or its channel closes.
pub(crate) async fn consume<H: MessageHandler>(
    consumer: lapin::Consumer,
    context: Arc<ConsumerContext>,
    handler: Arc<H>,
) {
    // A batch's fixed costs are most of what a small one costs, so a busy channel's batch
    // waits `amqp.batch_linger_ms` to fill (`Batches`).
    let mut deliveries = Batches::new(consumer, context.batch_size, context.batch_linger);
    let mut acks = AckChain::default();
    while let Some(deliveries) = deliveries.next_batch().await {
        let mut batch = Batch::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery {
                Ok(delivery) => {
                    if let Some((envelope, received)) = receive(delivery, &context).await {
                        batch.envelopes.push(envelope);
                        batch.received.push(received);
                    }
                }
                Err(error) => tracing::warn!(%error, queue = context.queue, "consumer error"),
            }
        }
        process(batch, &context, handler.as_ref(), &mut acks).await;
    }
    acks.written().await;
}

/// Parsed deliveries, side by side with what the consumer keeps of each.
struct Batch {
    envelopes: Vec<Envelope>,
    received: Vec<Received>,
}

impl Batch {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            envelopes: Vec::with_capacity(capacity),
            received: Vec::with_capacity(capacity),
        }
    }
}

/// What the consumer keeps of a parsed delivery besides its envelope.
struct Received {
    delivery: Delivery,
    history: History,
    /// Its consumer span (`telemetry::spans::consumer`), open until the delivery is settled:
    /// the parent of what handling it produces, and the span of its log lines when it is
    /// handled alone (in a batch they log under the batch's span).
    span: Span,
}

impl Received {
    /// A delivery with its consumer span, which leaves its own trace context on the envelope.
    fn traced(
        mut envelope: Envelope,
        delivery: Delivery,
        history: History,
        context: &ConsumerContext,
    ) -> (Envelope, Self) {
        let delivered = telemetry::spans::Delivered {
            queue: context.queue,
            exchange: &history.original_exchange,
            routing_key: &history.original_routing_key,
            redelivered: delivery.redelivered,
            attempt: history.attempt(),
            properties: &delivery.properties,
        };
        let span = telemetry::spans::consumer(&context.service, &mut envelope, &delivered);
        (
            envelope,
            Self {
                delivery,
                history,
                span,
            },
        )
    }
}

/// Parses a delivery and checks its age; one that is unparseable or older than the
/// deduplication window is dead-lettered here, before any database work, and `None` returned.
async fn receive(delivery: Delivery, context: &ConsumerContext) -> Option<(Envelope, Received)> {
    let history = History::of(&delivery);
    let now = Utc::now();
    let (reason, detail) = match serde_json::from_slice::<Envelope>(&delivery.data) {
        // A NUL would fail every insert of it (PostgreSQL text), a retry loop that ends in
        // `retries_exhausted` naming nothing: refused here, once, naming the field.
        Ok(envelope) => match (
            envelope.nul_field(),
            context.dedup_window.admits(envelope.occurred_at, now),
        ) {
            (Some(field), _) => {
                let reason = if field.starts_with("payload") {
                    INVALID_PAYLOAD
                } else {
                    MALFORMED_MESSAGE
                };
                (reason, format!("{field} {}", crate::nul::NUL_RULE))
            }
            (None, Ok(())) => return Some(Received::traced(envelope, delivery, history, context)),
            (None, Err(outside)) => (OUTSIDE_DEDUP_WINDOW, outside.to_string()),
        },
        Err(error) => (MALFORMED_MESSAGE, error.to_string()),
    };
    tracing::warn!(reason, %detail, queue = context.queue, "message dead-lettered unhandled");
    dead_letter(
        &delivery,
        context,
        &history,
        Failure {
            reason,
            detail: &detail,
        },
    )
    .await;
    None
}

async fn process<H: MessageHandler>(
    batch: Batch,
    context: &ConsumerContext,
    handler: &H,
    acks: &mut AckChain,
) {
    if batch.envelopes.len() > 1 {
        let span = tracing::info_span!(
            "handle_batch",
            service = %context.service,
            queue = context.queue,
            size = batch.envelopes.len(),
        );
        match handle(&context.db, &context.wakeup, handler, &batch.envelopes)
            .instrument(span.clone())
            .await
        {
            Ok(()) => {
                acks.ack_all(&batch.received, span);
                return;
            }
            Err(error) => {
                tracing::debug!(parent: &span, %error, "batch rolled back; handling its deliveries one by one");
            }
        }
    }
    for (envelope, received) in batch.envelopes.iter().zip(&batch.received) {
        async {
            let outcome = handle_through_outages(envelope, context, handler).await;
            settle(received, context, outcome).await;
        }
        .instrument(received.span.clone())
        .await;
    }
}

/// The multiple-acks of committed batches, sent in order without the channel waiting for them.
///
/// Two acks handed to lapin back to back may reach the socket in either order, and a
/// multiple-ack overtaken by a later one names a tag already settled, for which the broker
/// closes the channel. So each multiple-ack waits for the one before it on a task of its own,
/// and the channel goes on at once. Single settlements name higher tags and need no place here.
#[derive(Default)]
struct AckChain {
    last: Option<tokio::task::JoinHandle<()>>,
}

impl AckChain {
    /// Acknowledges a committed batch with one multiple-ack of its highest delivery tag, which
    /// covers exactly this batch: every earlier delivery was settled before it was taken.
    fn ack_all(&mut self, received: &[Received], span: Span) {
        let Some(last) = received.iter().max_by_key(|r| r.delivery.delivery_tag) else {
            return;
        };
        let acker = last.delivery.acker.clone();
        let before = self.last.take();
        self.last = Some(tokio::spawn(async move {
            if let Some(before) = before {
                // A failed task has nothing to undo: its ack is logged, or was never needed.
                let _ = before.await;
            }
            let multiple = BasicAckOptions { multiple: true };
            // Either way the effects are committed; redeliveries will hit the inbox and change
            // nothing.
            match acker.ack(multiple).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(parent: &span, "ack not sent: the channel closed after commit");
                }
                Err(error) => tracing::warn!(parent: &span, %error, "ack failed after commit"),
            }
        }));
    }

    /// Waits until every multiple-ack sent is written, so none is cut off when the connection
    /// closes. An ack lost when a consumer is dropped instead is a redelivery the inbox absorbs.
    async fn written(self) {
        if let Some(last) = self.last {
            let _ = last.await;
        }
    }
}

/// What earlier failed attempts wrote on a delivery.
struct History {
    /// Attempts that failed before this delivery (0 on a first delivery).
    failures: u32,
    first_failed_at: Option<String>,
    original_exchange: String,
    original_routing_key: String,
}

impl History {
    fn of(delivery: &Delivery) -> Self {
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
    fn attempt(&self) -> u32 {
        self.failures.saturating_add(1)
    }
}

/// Why a delivery is given up on.
struct Failure<'a> {
    reason: &'a str,
    detail: &'a str,
}

/// Runs the handler; while a transient failure coincides with the database not answering, waits
/// for it and runs the handler again, without counting an attempt.
async fn handle_through_outages<H: MessageHandler>(
    envelope: &Envelope,
    context: &ConsumerContext,
    handler: &H,
) -> Result<(), HandleError> {
    loop {
        match handle(
            &context.db,
            &context.wakeup,
            handler,
            std::slice::from_ref(envelope),
        )
        .await
        {
            Err(HandleError::Transient(error))
                if !crate::db::ping(&context.db, PING_TIMEOUT).await =>
            {
                tracing::warn!(%error, "database unreachable; holding the delivery until it answers");
                while !crate::db::ping(&context.db, PING_TIMEOUT).await {
                    tokio::time::sleep(OUTAGE_POLL).await;
                }
                tracing::info!("database answers again; handling the held delivery");
            }
            outcome => return outcome,
        }
    }
}

async fn settle(received: &Received, context: &ConsumerContext, outcome: Result<(), HandleError>) {
    let (delivery, history) = (&received.delivery, &received.history);
    match outcome {
        Ok(()) => {
            if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                // The effect is committed; a redelivery will hit the inbox and change nothing.
                tracing::warn!(%error, "ack failed after commit");
            }
        }
        Err(HandleError::Permanent { reason, detail }) => {
            tracing::warn!(reason, %detail, "message dead-lettered");
            let failure = Failure {
                reason,
                detail: &detail,
            };
            dead_letter(delivery, context, history, failure).await;
        }
        Err(HandleError::Transient(error)) if history.attempt() >= context.retry.max_attempts() => {
            tracing::warn!(%error, attempts = history.attempt(), "retries exhausted; message dead-lettered");
            let failure = Failure {
                reason: RETRIES_EXHAUSTED,
                detail: &error,
            };
            dead_letter(delivery, context, history, failure).await;
        }
        Err(HandleError::Transient(error)) => {
            retry_later(delivery, context, history, &error).await;
        }
    }
}

/// Publishes the delivery to the delay queue of this attempt and acks it once the broker
/// confirmed. If that fails, the delivery is requeued after the same pause instead: slower to
/// give up (the queue's delivery limit bounds it), never lost, never a hot loop.
async fn retry_later(
    delivery: &Delivery,
    context: &ConsumerContext,
    history: &History,
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
            tracing::warn!(%error, attempt, retry_in_ms = delay.as_millis() as u64, "transient failure; message scheduled for retry");
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
async fn dead_letter(
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
