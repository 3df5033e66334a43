//! Writing outbox rows, on the caller's transaction: a row in `outbox`, the message as published,
//! written once and never changed; the database adds its `outbox_pending` row (a trigger, see
//! `migration::SPLIT_OUTBOX_PENDING`). What a write returns, [`Enqueued`], carries each message as
//! serialised for the row, so the relay publishes it without reading it back, and what is to be
//! said once the transaction commits ([`AfterCommit`]: metrics and log lines).

use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;

use crate::db::PartName;
use crate::db::writes::Counts;
use crate::db::{self, Part, stmt};
use crate::messaging::envelope::{Envelope, OutgoingMessage};

/// The outbox rows a transaction wrote, for [`RelayWakeup::commit`](super::RelayWakeup::commit),
/// which commits the transaction and hands them to the relay.
#[must_use = "commit with RelayWakeup::commit, or the relay finds these rows only by its scan"]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enqueued(
    pub(super) Vec<Written>,
    pub(super) AfterCommit,
    /// The deliveries of the batch that were duplicates (message ids, once per copy), for the
    /// consumer's count once the transaction commits.
    pub(super) Vec<uuid::Uuid>,
);

/// What a transaction's work says once it commits, and never before: a metric, a log line. A
/// batch rolled back and handled again one message at a time would otherwise say it twice.
/// Run by [`RelayWakeup::commit`](super::RelayWakeup::commit) and `autocommit`, in order.
#[derive(Clone, Default)]
pub struct AfterCommit(Vec<std::sync::Arc<dyn Fn() + Send + Sync>>);

impl AfterCommit {
    pub(super) fn run(self) {
        for note in self.0 {
            note();
        }
    }
}

impl std::fmt::Debug for AfterCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AfterCommit({} notes)", self.0.len())
    }
}

/// Two lists of notes are alike when they are as long: closures cannot be compared.
impl PartialEq for AfterCommit {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
    }
}

/// One outbox row, for the relay.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Written {
    pub(super) id: i64,
    /// The message as it was written, while the writer still has it. `None` for a row known by
    /// its id alone (a resend, or one past the relay's memory bound): the relay reads it by key.
    pub(super) content: Option<Box<Content>>,
}

/// What the relay publishes for an outbox row: the row's columns.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Content {
    pub(super) exchange: String,
    pub(super) routing_key: String,
    pub(super) body: String,
    /// The envelope in `body` without its payload: the ids and type the AMQP properties carry.
    pub(super) header: Envelope,
}

impl Enqueued {
    /// Rows known by their ids alone: the relay reads them by key before publishing.
    pub(super) fn by_id(ids: Vec<i64>) -> Self {
        Self(
            ids.into_iter()
                .map(|id| Written { id, content: None })
                .collect(),
            AfterCommit::default(),
            Vec::new(),
        )
    }

    pub fn extend(&mut self, other: Enqueued) {
        self.0.extend(other.0);
        self.1.0.extend(other.1.0);
        self.2.extend(other.2);
    }

    /// Says that a delivery of the batch being applied was a duplicate its inbox absorbed
    /// (called once per copy): the consumer counts it `duplicate` rather than `acked`, once
    /// the transaction commits.
    pub fn duplicate(&mut self, message_id: uuid::Uuid) {
        self.2.push(message_id);
    }

    /// The duplicates said so far, taken out (the consumer's, before it commits).
    pub(crate) fn take_duplicates(&mut self) -> Vec<uuid::Uuid> {
        std::mem::take(&mut self.2)
    }

    /// Runs `note` once the transaction that wrote these rows commits; never if it rolls back.
    pub fn after_commit(&mut self, note: impl Fn() + Send + Sync + 'static) {
        self.1.0.push(std::sync::Arc::new(note));
    }
}

#[cfg(feature = "testing")]
impl Enqueued {
    /// The same rows known by their ids alone, as a resend hands them over.
    pub fn without_content(self) -> Self {
        Self::by_id(self.ids())
    }

    /// The rows' ids, in the order written.
    pub fn ids(&self) -> Vec<i64> {
        self.0.iter().map(|row| row.id).collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Writes `messages` to the outbox on `db`, in this order, with one statement: for a writer
/// with nothing else to put in the statement (an HTTP handler's event, after its own write on
/// the same transaction).
pub async fn enqueue_all(
    db: &impl ConnectionTrait,
    messages: &[OutgoingMessage],
) -> Result<Enqueued, DbErr> {
    let mut insert = Insert::new(messages, None)?;
    let mut writes = crate::db::Writes::new();
    writes.add(OUTBOX, insert.part());
    Ok(insert.written_in(&mut writes.execute(db).await?))
}

/// The name under which a batch statement writes its outbox rows.
pub const OUTBOX: PartName = PartName::new("outbox");

/// One row of an outbox insert.
#[derive(Serialize)]
struct NewRow<'a> {
    message_id: uuid::Uuid,
    exchange: &'a str,
    routing_key: &'a str,
    message_type: &'a str,
    saga_id: uuid::Uuid,
    body: &'a str,
}

/// The outbox rows of a write, as a part of a [`Writes`](crate::db::Writes), and what the relay needs to publish
/// them once they commit. Each body is serialised once, for both.
pub struct Insert {
    part: Option<Part>,
    /// Every message given, in order, by message id.
    contents: Vec<(uuid::Uuid, Content)>,
}

impl Insert {
    /// `messages`' outbox rows, in this order; with `sagas` (a query of saga ids, such as another
    /// part's `RETURNING`), only the messages of those sagas.
    pub fn new(messages: &[OutgoingMessage], sagas: Option<&str>) -> Result<Self, DbErr> {
        let contents = messages
            .iter()
            .map(|message| {
                let envelope = &message.envelope;
                let body = serde_json::to_string(envelope)
                    .map_err(|e| DbErr::Custom(format!("cannot serialise envelope: {e}")))?;
                let content = Content {
                    exchange: message.exchange.clone(),
                    routing_key: message.routing_key.clone(),
                    body,
                    header: envelope.header(),
                };
                Ok((envelope.message_id, content))
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        if contents.is_empty() {
            return Ok(Self {
                part: None,
                contents,
            });
        }
        let rows: Vec<NewRow<'_>> = contents
            .iter()
            .map(|(message_id, content)| NewRow {
                message_id: *message_id,
                exchange: &content.exchange,
                routing_key: &content.routing_key,
                message_type: &content.header.message_type,
                saga_id: content.header.saga_id,
                body: &content.body,
            })
            .collect();
        let filter = sagas
            .map(|sagas| format!("WHERE m.saga_id IN ({sagas}) "))
            .unwrap_or_default();
        // `ORDER BY ordinality`: ids, and so publishing order, follow the order given.
        let part = Part::new(
            format!(
                "INSERT INTO outbox (message_id, exchange, routing_key, message_type, saga_id, body) \
                 SELECT m.message_id, m.exchange, m.routing_key, m.message_type, m.saga_id, m.body \
                 FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (message_id uuid, exchange text, \
                   routing_key text, message_type text, saga_id uuid, body text)) WITH ORDINALITY \
                   AS m(message_id, exchange, routing_key, message_type, saga_id, body, ordinality) \
                 {filter}ORDER BY m.ordinality RETURNING id, message_id"
            ),
            vec![db::rows(&rows)?],
        )
        .collecting_message_ids();
        Ok(Self {
            part: Some(part),
            contents,
        })
    }

    /// The part to add to the [`Writes`](crate::db::Writes); `None` when there is nothing to write (and the second
    /// time it is asked for).
    pub fn part(&mut self) -> Option<Part> {
        self.part.take()
    }

    /// The rows written, with their content, from the counts of the `Writes` that ran the
    /// part under [`OUTBOX`].
    pub fn written_in(self, counts: &mut Counts) -> Enqueued {
        let ids = counts.take_ids(OUTBOX);
        let message_ids = counts.take_message_ids(OUTBOX);
        self.written(ids, message_ids)
    }

    /// The rows written, with their content, matched to the messages given by message id,
    /// walking both in order. A row that does not match is handed over by its id alone, so a
    /// mismatch costs the relay a read, never a wrong message.
    pub fn written(self, ids: Vec<i64>, message_ids: Vec<uuid::Uuid>) -> Enqueued {
        if ids.len() != message_ids.len() {
            return Enqueued::by_id(ids);
        }
        let mut contents = self.contents.into_iter();
        Enqueued(
            ids.into_iter()
                .zip(message_ids)
                .map(|(id, message_id)| Written {
                    id,
                    content: contents
                        .find(|(written, _)| *written == message_id)
                        .map(|(_, content)| Box::new(content)),
                })
                .collect(),
            AfterCommit::default(),
            Vec::new(),
        )
    }
}

/// Queues a message already in the outbox to be published again, same id and body, so a
/// timed-out command's receiver recognises it; `None` if there is no such message.
/// `ORDER BY message_id` keeps the lookup on its index (`min(id)` walked the whole key).
pub async fn resend(
    db: &impl ConnectionTrait,
    message_id: uuid::Uuid,
) -> Result<Option<(String, Enqueued)>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            "INSERT INTO outbox (message_id, exchange, routing_key, message_type, saga_id, body) \
             SELECT message_id, exchange, routing_key, message_type, saga_id, body FROM outbox \
             WHERE message_id = $1 ORDER BY message_id LIMIT 1 \
             RETURNING id, message_type",
            [message_id.into()],
        ))
        .await?;
    row.map(|r| {
        Ok((
            r.try_get::<String>("", "message_type")?,
            Enqueued::by_id(vec![r.try_get::<i64>("", "id")?]),
        ))
    })
    .transpose()
}
