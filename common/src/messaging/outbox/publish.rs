//! The one publish path, with publisher confirms. Every batch, whatever its source, is sent by
//! [`send`], which queues all its publishes at once and returns their confirms unawaited: the
//! relay either awaits them now or keeps the batch in flight ([`InFlight`]) and sends the next.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{Channel, PublisherConfirm};

use super::enqueue::Written;
use super::relay::RelayError;
use crate::messaging::envelope::{self, Envelope};

/// One message to publish.
pub(super) struct Publication<'a> {
    pub(super) exchange: &'a str,
    pub(super) routing_key: &'a str,
    pub(super) body: &'a str,
    /// The envelope's ids and type, for the AMQP properties (its payload is not read).
    pub(super) header: Cow<'a, Envelope>,
}

/// Outbox rows to publish: their ids, and their messages in the same order.
pub(super) struct Batch<'a> {
    pub(super) ids: Vec<i64>,
    pub(super) messages: Vec<Publication<'a>>,
}

impl<'a> Batch<'a> {
    /// Rows handed over with their content, published as written (a row without is passed over).
    pub(super) fn carried(rows: &'a [Written]) -> Self {
        let (ids, messages) = rows
            .iter()
            .filter_map(|row| {
                let content = row.content.as_deref()?;
                let message = Publication {
                    exchange: &content.exchange,
                    routing_key: &content.routing_key,
                    body: &content.body,
                    header: Cow::Borrowed(&content.header),
                };
                Some((row.id, message))
            })
            .unzip();
        Self { ids, messages }
    }
}

/// Publishes `batch`, without waiting for its confirms. lapin resolves a publish only once its
/// I/O thread has written the frames: awaited one after another, a batch of n messages would
/// cross to that thread and back n times, each crossing a wake-up on a busy machine. Polled
/// together, each publish queues its frames on its first poll, in order, and the I/O thread
/// writes them all on one wake-up.
pub(super) async fn send(
    channel: &Channel,
    app_id: &str,
    batch: Batch<'_>,
    confirm_timeout: Duration,
) -> Result<Sent, RelayError> {
    let publishes = batch.messages.iter().map(|message| {
        channel.basic_publish(
            message.exchange.into(),
            message.routing_key.into(),
            BasicPublishOptions::default(),
            message.body.as_bytes(),
            envelope::properties(&message.header, app_id),
        )
    });
    let confirms = futures_util::future::try_join_all(publishes).await?;
    Ok(Sent {
        ids: batch.ids,
        published: batch
            .messages
            .iter()
            .map(|message| {
                crate::metrics::published(message.exchange, &message.header.message_type)
            })
            .collect(),
        confirms: batch
            .messages
            .iter()
            .map(|message| message.header.message_id)
            .zip(confirms)
            .collect(),
        confirm_timeout,
    })
}

/// A batch sent: the ids of its rows, and the confirms that say whether they may be marked.
pub(super) struct Sent {
    ids: Vec<i64>,
    confirms: Vec<(uuid::Uuid, PublisherConfirm)>,
    /// Each message's `messaging_published_messages_total`, counted once the broker confirmed.
    published: Vec<metrics::Counter>,
    /// How long the confirms may take: a broker that accepts a publish but never confirms it
    /// (an unresponsive queue) must not hold the relay, and the rows' locks, forever.
    confirm_timeout: Duration,
}

impl Sent {
    /// Waits for every confirm, for the confirm timeout at most: every one an ack, and the rows'
    /// ids, or the error.
    pub(super) async fn confirmed(self) -> Result<Vec<i64>, RelayError> {
        let count = self.confirms.len();
        let all_confirmed = async {
            for (message_id, confirm) in self.confirms {
                if !confirm.await?.is_ack() {
                    return Err(RelayError::Nacked(message_id));
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.confirm_timeout, all_confirmed)
            .await
            .map_err(|_| RelayError::ConfirmTimeout(self.confirm_timeout))??;
        for counter in self.published {
            counter.increment(1);
        }
        tracing::debug!(count, "outbox batch published");
        Ok(self.ids)
    }
}

type Confirmed = Pin<Box<dyn Future<Output = Result<Vec<i64>, RelayError>> + Send>>;

/// The batches a session has sent and not yet seen confirmed, oldest first. A quorum queue
/// confirms once its log is on disk, so a message committed meanwhile goes out at once rather
/// than behind those confirms. Dropped with the session: their rows stay unpublished in the
/// table, for the next session's first scan.
pub(super) struct InFlight {
    batches: VecDeque<Confirmed>,
    /// Past this many (`outbox.max_batches_in_flight`), the oldest is awaited before the next.
    most: usize,
}

impl InFlight {
    pub(super) fn new(most: u32) -> Self {
        Self {
            batches: VecDeque::new(),
            most: most.max(1) as usize,
        }
    }

    pub(super) fn push(&mut self, sent: Sent) {
        self.batches.push_back(Box::pin(sent.confirmed()));
    }

    pub(super) fn is_full(&self) -> bool {
        self.batches.len() >= self.most
    }

    pub(super) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The oldest batch's confirms, its ids once they may be marked; pending for ever when
    /// there is none. The batch stays until [`pop_oldest`](Self::pop_oldest), so a wait given
    /// up (in a `select!`) loses nothing.
    pub(super) async fn oldest(&mut self) -> Result<Vec<i64>, RelayError> {
        match self.batches.front_mut() {
            Some(confirmed) => confirmed.as_mut().await,
            None => std::future::pending().await,
        }
    }

    /// Drops the oldest batch, once [`oldest`](Self::oldest) has answered for it.
    pub(super) fn pop_oldest(&mut self) {
        self.batches.pop_front();
    }
}
