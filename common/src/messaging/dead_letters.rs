//! Dead-letter administration: list, replay and delete the messages in a work queue's DLQ,
//! behind `/api/admin/dead-letters` (`crate::http::admin`).
//!
//! Each operation opens a short-lived connection of its own rather than borrowing the
//! supervised one: if it dies halfway, closing the connection puts back every message not
//! explicitly acked. Reading takes messages with `basic.get` and returns them with one
//! `nack(multiple, requeue)`, which keeps their order. Replay is at least once: a message leaves
//! the DLQ only after the broker confirmed its copy, and a duplicate is absorbed by the inbox.
//! That holds only while the inbox remembers the message, so a replay leaves a message older than
//! the deduplication window in the DLQ and says so (`refused`), as the consumer would refuse it.
//!
//! - [`groups`]: the DLQ counted by failure reason, for replaying one group at once.

pub mod groups;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{DeliveryTag, FieldTable};
use lapin::{Channel, Confirmation, Connection, ConnectionProperties};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::consumer::OUTSIDE_DEDUP_WINDOW;
use super::envelope::Envelope;
use super::headers;
use super::inbox::DedupWindow;
use super::topology;
use crate::lifecycle::{Event, Line, Subject};
use crate::secret::SecretUrl;

/// Most messages one operation looks at (and never more than the DLQ held at its start, so a
/// replayed message that fails again is not seen twice); bounds a request on a huge DLQ.
pub const MAX_SCAN: u32 = 10_000;

/// How long one operation may take before it is abandoned (and its connection closed, which
/// returns whatever it held to the DLQ).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the dead-letter operation took longer than {0:?}")]
    Timeout(Duration),
}

/// One work queue's DLQ, reachable through `addresses` (the first that answers).
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    service: String,
    addresses: Vec<SecretUrl>,
    /// The work queue; a message whose original route is unknown is replayed straight to it.
    queue: String,
    dlq: String,
    /// `retention.inbox_window`: older messages are not replayed.
    dedup_window: DedupWindow,
}

/// A dead-lettered message as the admin API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetter {
    /// The AMQP `message_id` (for this fleet's messages, the envelope's id); `null` when the
    /// producer set none, in which case only "replay all" can select it.
    pub message_id: Option<String>,
    /// The AMQP `type` property, else the envelope's `type`.
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    /// `x-dead-letter-reason`, or RabbitMQ's own reason (`delivery_limit`, `rejected`, ...) when
    /// the broker dead-lettered it without the consumer's headers.
    #[schema(example = "retries_exhausted")]
    pub reason: Option<String>,
    /// `x-error`: the last failure, in words.
    pub error: Option<String>,
    /// `x-attempts`: attempts made in all.
    pub attempts: Option<i64>,
    pub first_failed_at: Option<String>,
    pub last_failed_at: Option<String>,
    /// Where a replay publishes it: its original exchange (`""` = straight to the work queue).
    pub exchange: String,
    /// ... and routing key.
    #[schema(example = "payment.charge")]
    pub routing_key: String,
    /// Every AMQP header, nested values included.
    pub headers: BTreeMap<String, Value>,
    /// The body: parsed JSON when it is JSON, else the text (invalid UTF-8 replaced).
    pub payload: Value,
    /// `json` or `text`: how `payload` was read.
    #[schema(example = "json")]
    pub payload_format: String,
}

/// One page of a DLQ, in queue order (oldest first).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// The DLQ's name.
    #[schema(example = "payment.commands.dlq")]
    pub queue: String,
    /// Messages in the DLQ when it was read.
    pub total: u32,
    pub offset: u32,
    pub limit: u32,
    /// `offset` of the next page; `null` on the last one.
    pub next_offset: Option<u32>,
    pub items: Vec<DeadLetter>,
}

/// Which messages a replay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Ids(BTreeSet<String>),
    /// Every message of one group ([`groups`]): those whose reason is this one
    /// ([`groups::UNKNOWN_REASON`] also takes those without a reason).
    Reason(String),
}

impl Selection {
    fn includes(&self, delivery: &Delivery, message_id: Option<&str>) -> bool {
        match self {
            Self::All => true,
            Self::Ids(ids) => message_id.is_some_and(|id| ids.contains(id)),
            Self::Reason(wanted) => match reason(delivery) {
                Some(reason) => reason == *wanted,
                None => wanted == groups::UNKNOWN_REASON,
            },
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplayReport {
    /// Messages republished (confirmed by the broker) and removed from the DLQ.
    pub replayed: usize,
    /// Requested ids that are not in the DLQ.
    pub not_found: Vec<String>,
    /// Ids the broker did not confirm or could not route; they stay in the DLQ.
    pub failed: Vec<String>,
    /// Messages not replayed, and why; they stay in the DLQ.
    pub refused: Vec<RefusedReplay>,
}

/// A selected message a replay left in the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RefusedReplay {
    pub message_id: String,
    /// A stable code: `outside_dedup_window` (the envelope's `occurred_at` is older than
    /// `retention.inbox_window`, so the inbox may have forgotten it and a copy could take effect
    /// twice).
    #[schema(example = "outside_dedup_window")]
    pub reason: String,
    /// The same in words: the message's age and the window.
    pub detail: String,
}

/// A connection, a confirm-mode channel, and the deliveries taken but not settled yet.
struct Session {
    connection: Connection,
    channel: Channel,
    dlq: String,
    /// Taken and still to be given back.
    unsettled: Vec<DeliveryTag>,
}

impl Session {
    async fn next(&mut self) -> Result<Option<Delivery>, lapin::Error> {
        let taken = self
            .channel
            .basic_get(self.dlq.as_str().into(), BasicGetOptions { no_ack: false })
            .await?;
        Ok(taken.map(|message| message.delivery))
    }

    /// Gives `delivery` back at the end (it was only looked at).
    fn keep(&mut self, delivery: &Delivery) {
        self.unsettled.push(delivery.delivery_tag);
    }

    /// Returns every kept delivery to the DLQ and closes the connection: one `multiple` nack up
    /// to the highest kept tag returns exactly the kept ones, since the others were acked.
    async fn finish(self) -> Result<(), lapin::Error> {
        if let Some(highest) = self.unsettled.iter().max() {
            self.channel
                .basic_nack(
                    *highest,
                    BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    },
                )
                .await?;
        }
        if let Err(error) = self.connection.close(200, "done".into()).await {
            // The nack was sent; closing would have returned the messages anyway.
            tracing::debug!(%error, "closing the dead-letter admin connection failed");
        }
        Ok(())
    }
}

impl DeadLetterQueue {
    /// The DLQ of `queue`, the work queue `service` consumes, whose consumer applies messages
    /// no older than `dedup_window`.
    pub fn new(
        service: &str,
        amqp_url: impl Into<SecretUrl>,
        queue: &str,
        dedup_window: DedupWindow,
    ) -> Self {
        Self {
            service: service.to_owned(),
            addresses: vec![amqp_url.into()],
            queue: queue.to_owned(),
            dlq: topology::dead_letter_queue(queue),
            dedup_window,
        }
    }

    /// Reached through the first of `addresses` that answers (a cluster's nodes, as the
    /// service's session walks them); an empty list keeps the one address given to `new`.
    pub fn with_addresses(mut self, addresses: Vec<SecretUrl>) -> Self {
        if !addresses.is_empty() {
            self.addresses = addresses;
        }
        self
    }

    pub fn name(&self) -> &str {
        &self.dlq
    }

    /// Up to `limit` messages from position `offset`; all of them stay in the DLQ.
    pub async fn list(&self, offset: u32, limit: u32) -> Result<DeadLetterPage, DeadLetterError> {
        bounded(async {
            let (mut session, total) = self.open().await?;
            let end = total.min(MAX_SCAN).min(offset.saturating_add(limit));
            let mut items = Vec::new();
            for position in 0..end {
                let Some(delivery) = session.next().await? else {
                    break;
                };
                session.keep(&delivery);
                if position >= offset {
                    items.push(self.describe(&delivery));
                }
            }
            session.finish().await?;
            let reached = offset.saturating_add(u32::try_from(items.len()).unwrap_or(u32::MAX));
            let next_offset =
                (!items.is_empty() && reached < total.min(MAX_SCAN)).then_some(reached);
            Ok(DeadLetterPage {
                queue: self.dlq.clone(),
                total,
                offset,
                limit,
                next_offset,
                items,
            })
        })
        .await
    }

    /// Republishes the selected messages to where they came from, without the failure headers,
    /// and removes each from the DLQ once the broker confirmed its copy. A message older than the
    /// deduplication window stays and is reported `refused`; a body that is not an envelope has
    /// no age and is replayed.
    pub async fn replay(&self, selection: &Selection) -> Result<ReplayReport, DeadLetterError> {
        bounded(async {
            let (mut session, total) = self.open().await?;
            let mut found = BTreeSet::new();
            let mut in_flight = Vec::new();
            let mut refused = Vec::new();
            for _ in 0..total.min(MAX_SCAN) {
                let Some(delivery) = session.next().await? else {
                    break;
                };
                let message_id = message_id(&delivery);
                if !selection.includes(&delivery, message_id.as_deref()) {
                    session.keep(&delivery);
                    continue;
                }
                if let Some(id) = &message_id {
                    found.insert(id.clone());
                }
                if let Some(refusal) = self.refusal(&delivery, message_id.as_deref()) {
                    session.keep(&delivery);
                    refused.push(refusal);
                    continue;
                }
                let (exchange, routing_key) = self.route(&delivery);
                let cleaned = headers::without(
                    delivery
                        .properties
                        .headers()
                        .as_ref()
                        .unwrap_or(&FieldTable::default()),
                    headers::FAILURE_BOOKKEEPING,
                );
                // Every publish first, then every confirm: one round trip for the whole batch.
                // `mandatory`, so a route that no longer leads anywhere is reported, not lost.
                let confirm = session
                    .channel
                    .basic_publish(
                        exchange.as_str().into(),
                        routing_key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &delivery.data,
                        delivery.properties.clone().with_headers(cleaned),
                    )
                    .await?;
                in_flight.push((message_id, delivery, confirm));
            }

            let mut report = ReplayReport {
                replayed: 0,
                not_found: Vec::new(),
                failed: Vec::new(),
                refused,
            };
            for (message_id, delivery, confirm) in in_flight {
                match confirm.await {
                    Ok(Confirmation::Ack(None)) => {
                        delivery.acker.ack(BasicAckOptions::default()).await?;
                        report.replayed += 1;
                        said(Event::DeadLetterReplayed, &delivery);
                    }
                    outcome => {
                        tracing::warn!(?message_id, ?outcome, "replay not confirmed; the message stays in the DLQ");
                        session.keep(&delivery);
                        report
                            .failed
                            .push(message_id.unwrap_or_else(|| "(no message id)".into()));
                    }
                }
            }
            session.finish().await?;
            if let Selection::Ids(ids) = selection {
                report.not_found = ids.difference(&found).cloned().collect();
            }
            tracing::info!(dlq = %self.dlq, replayed = report.replayed, failed = report.failed.len(), not_found = report.not_found.len(), refused = report.refused.len(), "dead letters replayed");
            Ok(report)
        })
        .await
    }

    /// Removes every message with this id from the DLQ; returns how many there were.
    pub async fn delete(&self, message_id: &str) -> Result<usize, DeadLetterError> {
        bounded(async {
            let (mut session, total) = self.open().await?;
            let mut deleted = 0;
            for _ in 0..total.min(MAX_SCAN) {
                let Some(delivery) = session.next().await? else {
                    break;
                };
                if self::message_id(&delivery).as_deref() == Some(message_id) {
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                    deleted += 1;
                    said(Event::DeadLetterDeleted, &delivery);
                } else {
                    session.keep(&delivery);
                }
            }
            session.finish().await?;
            tracing::info!(dlq = %self.dlq, message_id, deleted, "dead letter deleted");
            Ok(deleted)
        })
        .await
    }

    /// Connects and returns the session with the DLQ's message count. The DLQ is looked up
    /// passively: the service declares it, an admin request never creates topology.
    async fn open(&self) -> Result<(Session, u32), lapin::Error> {
        let connection = super::broker::connect_first(
            &self.addresses,
            ConnectionProperties::default()
                .with_connection_name(format!("{}-admin", self.service).into()),
        )
        .await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let queue = channel
            .queue_declare(
                self.dlq.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let total = queue.message_count();
        Ok((
            Session {
                connection,
                channel,
                dlq: self.dlq.clone(),
                unsettled: Vec::new(),
            },
            total,
        ))
    }

    /// Why `delivery` must not be replayed, if it must not: the consumer's own age rule, on its
    /// envelope's `occurred_at`.
    fn refusal(&self, delivery: &Delivery, message_id: Option<&str>) -> Option<RefusedReplay> {
        let envelope = serde_json::from_slice::<Envelope>(&delivery.data).ok()?;
        let outside = self
            .dedup_window
            .admits(envelope.occurred_at, chrono::Utc::now())
            .err()?;
        Some(RefusedReplay {
            message_id: message_id.map_or_else(|| envelope.message_id.to_string(), str::to_owned),
            reason: OUTSIDE_DEDUP_WINDOW.to_owned(),
            detail: outside.to_string(),
        })
    }

    /// The original exchange and routing key the consumer recorded; without them, the work
    /// queue itself, where the message was when it failed.
    fn route(&self, delivery: &Delivery) -> (String, String) {
        let empty = FieldTable::default();
        let table = delivery.properties.headers().as_ref().unwrap_or(&empty);
        match (
            headers::text(table, headers::ORIGINAL_EXCHANGE),
            headers::text(table, headers::ORIGINAL_ROUTING_KEY),
        ) {
            (Some(exchange), Some(routing_key)) => (exchange, routing_key),
            _ => (String::new(), self.queue.clone()),
        }
    }

    fn describe(&self, delivery: &Delivery) -> DeadLetter {
        let empty = FieldTable::default();
        let table = delivery.properties.headers().as_ref().unwrap_or(&empty);
        let (payload, payload_format) = match serde_json::from_slice::<Value>(&delivery.data) {
            Ok(json) => (json, "json"),
            Err(_) => (Value::from(String::from_utf8_lossy(&delivery.data)), "text"),
        };
        let message_type = delivery
            .properties
            .kind()
            .as_ref()
            .map(|kind| kind.as_str().to_owned())
            .or_else(|| {
                payload
                    .get("type")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        let (exchange, routing_key) = self.route(delivery);
        DeadLetter {
            message_id: message_id(delivery),
            message_type,
            reason: reason(delivery),
            error: headers::text(table, headers::ERROR),
            attempts: headers::integer(table, headers::ATTEMPTS),
            first_failed_at: headers::text(table, headers::FIRST_FAILED_AT),
            last_failed_at: headers::text(table, headers::LAST_FAILED_AT),
            exchange,
            routing_key,
            headers: headers::to_json(table).into_iter().collect(),
            payload,
            payload_format: payload_format.to_owned(),
        }
    }
}

/// The lifecycle line of a dead letter replayed or deleted, once the broker took the ack: with
/// its saga's fields when the body is one of this fleet's envelopes, else its id alone.
fn said(event: Event, delivery: &Delivery) {
    let id = message_id(delivery);
    let reason = reason(delivery);
    match serde_json::from_slice::<Envelope>(&delivery.data) {
        Ok(envelope) => {
            let mut line = Line::new(event, Subject::of(&envelope));
            line.message_id = id.as_deref();
            line.reason = reason.as_deref();
            line.write();
        }
        Err(_) => {
            tracing::info!(
                event = event.code(),
                message_id = id,
                reason,
                "{}",
                event.message()
            );
        }
    }
}

/// `x-dead-letter-reason`, else RabbitMQ's own `x-first-death-reason`.
fn reason(delivery: &Delivery) -> Option<String> {
    let table = delivery.properties.headers().as_ref()?;
    headers::text(table, headers::REASON)
        .or_else(|| headers::text(table, headers::FIRST_DEATH_REASON))
}

/// The AMQP `message_id`, else the `message_id` of a JSON envelope body.
fn message_id(delivery: &Delivery) -> Option<String> {
    delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .or_else(|| {
            serde_json::from_slice::<Value>(&delivery.data)
                .ok()?
                .get("message_id")?
                .as_str()
                .map(str::to_owned)
        })
}

async fn bounded<T>(
    operation: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<T, DeadLetterError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(DeadLetterError::Timeout(OPERATION_TIMEOUT)),
    }
}
