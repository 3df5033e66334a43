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
use std::time::{Duration, Instant};

use chrono::Utc;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tracing::{Instrument, Span};
use uuid::Uuid;

use super::envelope::Envelope;
use super::inbox::DedupWindow;
use super::outbox::{Enqueued, RelayWakeup};
use super::reroute::{Failure, History, dead_letter, retry_later};
use crate::batching::Batches;
use crate::configuration::RetrySettings;
use crate::metrics::consumer::ConsumerMetrics;
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
            UNKNOWN_MESSAGE_TYPE,
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
    handle_counted(db, wakeup, handler, batch).await.map(drop)
}

/// [`handle`], returning the deliveries the handler found to be duplicates (message ids, once
/// per copy), known only once the transaction committed.
async fn handle_counted<H: MessageHandler>(
    db: &DatabaseConnection,
    wakeup: &RelayWakeup,
    handler: &H,
    batch: &[Envelope],
) -> Result<Vec<Uuid>, HandleError> {
    let txn = db.begin().await?;
    let mut enqueued = handler.apply(&txn, batch).await?;
    let duplicates = enqueued.take_duplicates();
    wakeup.commit(txn, enqueued).await?;
    Ok(duplicates)
}

/// Reason code of a message whose transient failures outlasted `retry.max_attempts`.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
/// Reason code of a body that is not an envelope (or whose own fields hold a NUL).
pub const MALFORMED_MESSAGE: &str = "malformed_message";
/// Reason code of a payload that does not fit its type, or holds a NUL character.
pub const INVALID_PAYLOAD: &str = "invalid_payload";
/// Reason code of a message whose type its queue's contract does not have.
pub const UNKNOWN_MESSAGE_TYPE: &str = "unknown_message_type";
/// Reason code of a message older than the deduplication window: never applied, since the
/// inbox may no longer know it was (see [`DedupWindow`]).
pub const OUTSIDE_DEDUP_WINDOW: &str = "outside_dedup_window";

/// How long a readiness-style ping may take when telling a sick database from a sick message.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a held delivery asks whether the database is back.
const OUTAGE_POLL: Duration = Duration::from_millis(500);

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
    /// Counted as each delivery is settled.
    pub metrics: ConsumerMetrics,
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
    let envelope = match serde_json::from_slice::<Envelope>(&delivery.data) {
        Ok(envelope) => envelope,
        Err(error) => {
            let detail = error.to_string();
            tracing::warn!(event = "message.dead_lettered", reason = MALFORMED_MESSAGE, %detail, queue = context.queue, "message dead-lettered unhandled");
            let failure = Failure {
                reason: MALFORMED_MESSAGE,
                detail: &detail,
                message_type: None,
            };
            dead_letter(&delivery, context, &history, failure).await;
            return None;
        }
    };
    let (reason, detail) = match (
        envelope.nul_field(),
        context.dedup_window.admits(envelope.occurred_at, now),
    ) {
        // A NUL would fail every insert of it (PostgreSQL text), a retry loop that ends in
        // `retries_exhausted` naming nothing: refused here, once, naming the field.
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
    };
    let (envelope, received) = Received::traced(envelope, delivery, history, context);
    async {
        tracing::warn!(event = "message.dead_lettered", reason, %detail, "message dead-lettered unhandled");
        let failure = Failure {
            reason,
            detail: &detail,
            message_type: Some(&envelope.message_type),
        };
        dead_letter(&received.delivery, context, &received.history, failure).await;
    }
    .instrument(received.span.clone())
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
        let started = Instant::now();
        match handle_counted(&context.db, &context.wakeup, handler, &batch.envelopes)
            .instrument(span.clone())
            .await
        {
            Ok(duplicates) => {
                let elapsed = started.elapsed();
                context
                    .metrics
                    .committed(&batch.envelopes, &duplicates, elapsed);
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
            let started = Instant::now();
            let outcome = handle_through_outages(envelope, context, handler).await;
            if let Ok(duplicates) = &outcome {
                let batch = std::slice::from_ref(envelope);
                context
                    .metrics
                    .committed(batch, duplicates, started.elapsed());
            }
            settle(received, &envelope.message_type, context, outcome).await;
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

/// Runs the handler; while a transient failure coincides with the database not answering, waits
/// for it and runs the handler again, without counting an attempt.
async fn handle_through_outages<H: MessageHandler>(
    envelope: &Envelope,
    context: &ConsumerContext,
    handler: &H,
) -> Result<Vec<Uuid>, HandleError> {
    loop {
        match handle_counted(
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

/// Acks, retries or dead-letters a delivery handled alone, as `outcome` says (an `Ok` was
/// counted at its commit). Runs in the delivery's span, so each line names its order, saga,
/// correlation id and message type.
async fn settle(
    received: &Received,
    message_type: &str,
    context: &ConsumerContext,
    outcome: Result<Vec<Uuid>, HandleError>,
) {
    let (delivery, history) = (&received.delivery, &received.history);
    match outcome {
        Ok(_) => {
            if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                // The effect is committed; a redelivery will hit the inbox and change nothing.
                tracing::warn!(%error, "ack failed after commit");
            }
        }
        Err(HandleError::Permanent { reason, detail }) => {
            tracing::warn!(event = "message.dead_lettered", reason, %detail, "message dead-lettered");
            let failure = Failure {
                reason,
                detail: &detail,
                message_type: Some(message_type),
            };
            dead_letter(delivery, context, history, failure).await;
        }
        Err(HandleError::Transient(error)) if history.attempt() >= context.retry.max_attempts() => {
            tracing::warn!(event = "message.dead_lettered", reason = RETRIES_EXHAUSTED, %error, attempts = history.attempt(), "retries exhausted; message dead-lettered");
            let failure = Failure {
                reason: RETRIES_EXHAUSTED,
                detail: &error,
                message_type: Some(message_type),
            };
            dead_letter(delivery, context, history, failure).await;
        }
        Err(HandleError::Transient(error)) => {
            retry_later(delivery, context, history, message_type, &error).await;
        }
    }
}
