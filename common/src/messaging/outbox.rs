//! Transactional outbox.
//!
//! A service writes the messages a state change causes with an [`Insert`] (or
//! [`enqueue_all`]), on the same transaction as the change: a row in `outbox`, the message as
//! published, written once and never changed. The database adds a row in `outbox_pending`, its
//! id and time, for every outbox row written, whoever writes it (a trigger, see
//! `migration::SplitOutboxPending`). The relay ([`Relay`]) publishes committed rows with
//! publisher confirms, and marks the rows sent, by deleting their pending rows, only after the
//! broker confirmed every one. A crash between publish and mark republishes the rows;
//! consumers' inboxes make that harmless, which is also why a mark does not wait for the WAL
//! flush (`MARK`). (Why two tables: marking by an update of the outbox row copied the whole row
//! and its index entries.)
//!
//! How the relay finds its rows. Whoever commits outbox rows hands them to the relay
//! ([`RelayWakeup::committed`]) with what it wrote ([`Insert`] serialises each body once, for the
//! row and for the relay). The relay publishes them as they are, without reading them back, and
//! does not wait for a batch's confirms before it sends the next (up to `MAX_BATCHES_IN_FLIGHT`
//! batches): a message committed while a batch waits for the broker's disk goes out at once.
//! Confirmed rows are marked with one statement for all that were confirmed in the last
//! `outbox.mark_delay_ms` (100 ms): under load one statement per 100 ms rather than one per batch,
//! no transaction held across the publish, and a cost that does not grow with the table. Rows known
//! by id alone (a resend, or past `MAX_CARRIED` while the relay is behind) are read by primary key,
//! once the batches in flight are confirmed, and that read marks what was published before it. A
//! scan of the unpublished rows runs as well ([`Scan`]): every `outbox.poll_interval_ms` it takes
//! rows older than `outbox.orphan_age_ms` (younger ones are their writer's to publish); when a
//! session starts, when it ends (the shutdown flush) and when a writer cannot name its rows, it
//! takes every unpublished row. It waits for the batches in flight, so it never takes theirs;
//! oldest first, claimed `FOR UPDATE SKIP LOCKED` on a transaction held until they are marked, so
//! two instances' scans never publish a row twice at once. It finds what another instance, or this
//! one before a crash or a reconnect, left behind. A nack or a confirm timeout ends the session,
//! with every batch in flight unmarked; the next session's first scan publishes them again. A row
//! can be published twice: when a scan takes a row its writer is publishing at that moment (a full
//! scan at a session's start or end, or a writer stalled past the orphan age), when rows are
//! republished after a nack or a confirm timeout, or when marking fails after the publish; the
//! consumers' inboxes absorb the copy.
//!
//! Why the scan is not the fast path: the key of `outbox_pending` keeps an entry for every
//! deleted row until a vacuum removes it (a scan that finds one dead only marks it so), and a
//! scan from the oldest id reads them all: where autovacuum is off, a cost that grows with every
//! message sent since the last vacuum (docs/benchmarks.md).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::Channel;
use lapin::PublisherConfirm;
use lapin::options::BasicPublishOptions;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, TransactionTrait, Value,
};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

use super::envelope::{self, Envelope, OutgoingMessage};
use crate::configuration::OutboxSettings;
use crate::db::writes::Counts;
use crate::db::{self, Part, Writes, stmt};
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database error: {0}")]
    Database(#[from] DbErr),
    #[error("publishing to RabbitMQ failed: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused (nacked) outbox message {0}")]
    Nacked(uuid::Uuid),
    #[error("outbox row {0} holds an unreadable envelope: {1}")]
    Corrupt(i64, serde_json::Error),
    #[error("the broker did not confirm a batch within {0:?}")]
    ConfirmTimeout(Duration),
}

/// How long a batch may wait for its confirms. A broker that accepts a publish but never
/// confirms it (an unresponsive queue) must not hold the relay, and the rows' locks, forever: the
/// session is restarted instead and the rows are published again.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The outbox rows a transaction wrote: handed to [`RelayWakeup::committed`] once it has
/// committed, so the relay publishes them without scanning for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enqueued(Vec<Written>);

/// One committed outbox row, for the relay.
#[derive(Debug, Clone, PartialEq)]
struct Written {
    id: i64,
    /// The message as it was written, while the writer still has it: the relay publishes it as
    /// it is, without reading the row back. `None` for a row known by its id alone (a resend,
    /// or one past the relay's memory bound): the relay reads it by key.
    content: Option<Box<Content>>,
}

/// What the relay publishes for an outbox row: the row's columns.
#[derive(Debug, Clone, PartialEq)]
struct Content {
    exchange: String,
    routing_key: String,
    body: String,
    /// The envelope in `body` without its payload: the ids and type the AMQP properties carry.
    header: Envelope,
}

impl Enqueued {
    /// Rows known by their ids alone: the relay reads them by key before publishing.
    pub fn by_id(ids: Vec<i64>) -> Self {
        Self(
            ids.into_iter()
                .map(|id| Written { id, content: None })
                .collect(),
        )
    }

    pub fn extend(&mut self, other: Enqueued) {
        self.0.extend(other.0);
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

/// Writes `messages` to the outbox on `db`, in this order, with one statement.
pub async fn enqueue_all(
    db: &impl ConnectionTrait,
    messages: &[OutgoingMessage],
) -> Result<Enqueued, DbErr> {
    let mut insert = Insert::new(messages, None)?;
    let mut writes = Writes::new();
    writes.add("outbox", insert.part());
    Ok(insert.written_in(&mut writes.execute(db).await?, "outbox"))
}

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

/// The outbox rows of a write, as a part of a [`Writes`], and what the relay needs to publish
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

    /// The part to add to the [`Writes`]; `None` when there is nothing to write (and the second
    /// time it is asked for).
    pub fn part(&mut self) -> Option<Part> {
        self.part.take()
    }

    /// The rows written, with their content, from the counts of the [`Writes`] that ran the
    /// part under `name`.
    pub fn written_in(self, counts: &mut Counts, name: &str) -> Enqueued {
        let ids = counts.take_ids(name);
        let message_ids = counts.take_message_ids(name);
        self.written(ids, message_ids)
    }

    /// The rows written, with their content: `ids` and `message_ids` as the part returned them,
    /// in the order of the ids, which is the order of the messages given. Each row is matched to
    /// its message by message id, walking both in order (messages a filter left out are passed
    /// over; a message repeated in one write has the same content each time). A row that does
    /// not match is handed over by its id alone, and the relay reads it back: a mismatch costs a
    /// read, never a wrong message.
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
        )
    }
}

/// Queues a message already in the outbox to be published again, same id and body: the way a
/// timed-out command is resent so its receiver's inbox recognises it. Returns the message's
/// type and the new row, or `None` if there is no such message. Any copy will do (all have the
/// same body); `ORDER BY message_id` keeps the lookup on its index whatever the planner thinks
/// of the table (`min(id)` was planned, without statistics, as a walk of the whole primary key:
/// half a second per resend on a table of a million rows).
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

/// Most rows waiting for the relay. Past it (the broker has been away for a while) they are
/// dropped and the relay scans instead: the rows are safe in the table, and memory stays
/// bounded.
const MAX_WAITING_ROWS: usize = 100_000;

/// Most rows waiting with their content (a few hundred bytes each). Past it, rows are kept by
/// id alone and read back when their turn comes: a relay that fell behind costs a read per
/// batch, not memory. In the steady state a few batches wait at most.
const MAX_CARRIED: usize = 10_000;

/// Most rows published and confirmed but not yet marked. They are marked within
/// `outbox.mark_delay_ms` while the database takes writes; while it refuses them, the relay
/// sends no more handed-over rows past this many.
const MAX_UNMARKED: usize = MAX_CARRIED;

/// Confirmed rows marked at once, however young, once this many wait (see MAX_UNMARKED).
const MARK_AT_ONCE: usize = MAX_UNMARKED / 2;

/// The longest `outbox.mark_delay_ms` taken as given: beyond a minute a delay only widens what
/// a crash sends again (and a huge one would overflow the relay's deadline arithmetic).
const MAX_MARK_DELAY_MS: u64 = 60_000;

/// Tells the relay what was committed, so it publishes at once.
#[derive(Clone, Default, Debug)]
pub struct RelayWakeup(Arc<Wakeup>);

#[derive(Default, Debug)]
struct Wakeup {
    notify: Notify,
    work: Mutex<Work>,
    /// Rows the relay published and saw confirmed but has not yet marked. Kept here rather
    /// than in the relay's future, which a shutdown or a reconnect drops: the next session
    /// marks them instead of publishing them again.
    unmarked: Mutex<Vec<i64>>,
}

#[derive(Default, Debug)]
struct Work {
    rows: Vec<Written>,
    /// How many of `rows` carry their content.
    carried: usize,
    /// Scan every unpublished row, whatever its age: a writer could not name its rows, or rows
    /// were dropped.
    scan: bool,
}

impl Work {
    fn add(&mut self, rows: impl ExactSizeIterator<Item = Written>) {
        if self.rows.len() + rows.len() > MAX_WAITING_ROWS {
            self.rows.clear();
            self.carried = 0;
            self.scan = true;
            return;
        }
        for mut row in rows {
            if row.content.is_some() {
                if self.carried < MAX_CARRIED {
                    self.carried += 1;
                } else {
                    row.content = None;
                }
            }
            self.rows.push(row);
        }
    }
}

impl RelayWakeup {
    /// `enqueued` was committed: publish those rows.
    pub fn committed(&self, enqueued: Enqueued) {
        if enqueued.0.is_empty() {
            return;
        }
        if let Ok(mut work) = self.0.work.lock() {
            work.add(enqueued.0.into_iter());
        }
        self.0.notify.notify_one();
    }

    /// Something was committed to the outbox without its ids at hand: scan for it.
    pub fn notify(&self) {
        if let Ok(mut work) = self.0.work.lock() {
            work.scan = true;
        }
        self.0.notify.notify_one();
    }

    fn take(&self) -> Work {
        self.0
            .work
            .lock()
            .map(|mut work| std::mem::take(&mut *work))
            .unwrap_or_default()
    }

    /// Puts back rows the relay could not publish, without waking it: it retries on its own
    /// schedule, not in a tight loop while the database or the broker fails.
    fn restore(&self, rows: &[Written]) {
        if let Ok(mut work) = self.0.work.lock() {
            work.add(rows.iter().cloned());
        }
    }

    fn unmarked_count(&self) -> usize {
        self.0
            .unmarked
            .lock()
            .map(|unmarked| unmarked.len())
            .unwrap_or(0)
    }

    fn has_unmarked(&self) -> bool {
        self.0
            .unmarked
            .lock()
            .map(|unmarked| !unmarked.is_empty())
            .unwrap_or(false)
    }

    fn unmarked(&self) -> Vec<i64> {
        self.0
            .unmarked
            .lock()
            .map(|unmarked| unmarked.clone())
            .unwrap_or_default()
    }

    fn set_unmarked(&self, ids: Vec<i64>) {
        if let Ok(mut unmarked) = self.0.unmarked.lock() {
            *unmarked = ids;
        }
    }

    fn add_unmarked(&self, ids: impl IntoIterator<Item = i64>) {
        if let Ok(mut unmarked) = self.0.unmarked.lock() {
            unmarked.extend(ids);
        }
    }
}

/// How far a scan looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scan {
    /// The periodic poll: rows older than `outbox.orphan_age_ms`, whose writer should have
    /// published them by now (it crashed, or its instance is gone).
    Orphans,
    /// Every unpublished row: at the start and end of a session (ids handed to an earlier
    /// session may have been lost with it) and when a writer could not name its rows.
    All,
}

/// Deletes the pending rows `$1`: the rows are sent. Its commit does not wait for the WAL flush
/// (`set_config(..., true)` is `SET LOCAL synchronous_commit = off`, for this statement's
/// transaction alone, taken only when there is a row to delete). A mark lost in a database
/// crash is a row published again, which the receivers' inboxes absorb, as after any crash
/// between publish and mark; waiting for the flush would hold every outbox batch behind a disk
/// write that guarantees nothing. Everything else stays synchronous: the rows the mark deletes
/// were committed, flushed, before they were published, and a later synchronous commit flushes
/// the mark with it.
macro_rules! mark_sql {
    () => {
        "DELETE FROM outbox_pending \
         WHERE id = ANY($1) AND set_config('synchronous_commit', 'off', true) = 'off'"
    };
}
const MARK: &str = mark_sql!();

/// The fast path's read: marks the rows `$1` published (the batch before, see [`MARK`]) and
/// reads the rows among `$2` still to be published: the outbox rows by key, each checked
/// against its pending row by key. Public so the plan test plans this very statement.
pub const READ_IDS: &str = concat!(
    "WITH marked AS (",
    mark_sql!(),
    ") SELECT o.id, o.exchange, o.routing_key, o.body FROM outbox o \
     WHERE o.id = ANY($2) AND EXISTS (SELECT 1 FROM outbox_pending p WHERE p.id = o.id) \
     ORDER BY o.id"
);

/// The scan: the oldest `$1` rows still to be published that are older than `$2` seconds, but
/// not those among `$3`, claimed until the transaction ends. The pending rows are taken in a
/// subquery of their own, so the join starts from them: as a plain join, planned on empty
/// tables, it walked the whole outbox in id order and looked each row up among the pending ones
/// (every message ever sent, twice a second; found by a profile). Public for the plan test.
pub const SCAN: &str = "SELECT o.id, o.exchange, o.routing_key, o.body \
     FROM (SELECT id FROM outbox_pending \
           WHERE created_at < now() - make_interval(secs => $2) AND id <> ALL($3) \
           ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) p \
     JOIN outbox o ON o.id = p.id ORDER BY p.id";

#[derive(Debug, FromQueryResult)]
struct PendingRow {
    id: i64,
    exchange: String,
    routing_key: String,
    body: String,
}

pub struct Relay {
    pub db: DatabaseConnection,
    pub settings: OutboxSettings,
    pub wakeup: RelayWakeup,
    /// Written into the AMQP `app_id` property.
    pub app_id: String,
}

impl Relay {
    /// Publishes until `stop` is triggered, then flushes what it can once more and returns.
    /// Starts with a scan: ids handed to an earlier session may have been lost with it.
    ///
    /// The future may be dropped at any await (a session ends by `select!`): nothing is lost
    /// then, as every row stays unpublished in the table until it is marked, and the next
    /// session's first scan takes every such row.
    pub async fn run(&self, channel: &Channel, stop: &Shutdown) -> Result<(), RelayError> {
        let outcome = self.relay(channel, stop).await;
        // Published and confirmed, but not yet marked: mark them if the database lets us, or
        // a scan will publish them again (a duplicate the inboxes absorb).
        let unmarked = self.wakeup.unmarked();
        if !unmarked.is_empty() {
            match mark(&self.db, &unmarked).await {
                Ok(()) => self.wakeup.set_unmarked(Vec::new()),
                Err(error) => {
                    tracing::warn!(%error, count = unmarked.len(), "could not mark published outbox rows");
                }
            }
        }
        outcome
    }

    async fn relay(&self, channel: &Channel, stop: &Shutdown) -> Result<(), RelayError> {
        let batch_size = self.settings.batch_size.max(1) as usize;
        let mut poll = tokio::time::interval(Duration::from_millis(
            self.settings.poll_interval_ms.max(10),
        ));
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is immediate; the start-up scan below covers it.
        poll.tick().await;
        let mut scan = Some(Scan::All);
        // Set when marking on its own failed: no retry before the next poll, so a database that
        // refuses writes is not hit every mark delay.
        let mut mark_failed = false;
        // When the rows published and not yet marked are to be marked on their own, at the
        // latest: the mark delay after the first of them, however busy the relay stays meanwhile.
        let mut mark_by = Instant::now() + self.mark_delay();
        // Batches of handed-over rows sent and awaiting their confirms, oldest first.
        let mut in_flight = InFlight::default();
        loop {
            let mut work = self.wakeup.take();
            if work.scan {
                scan = Some(Scan::All);
            }
            work.rows.sort_unstable_by_key(|row| row.id);
            work.rows.dedup_by_key(|row| row.id);
            let (mut carried, bare): (Vec<Written>, Vec<Written>) =
                work.rows.into_iter().partition(|row| row.content.is_some());
            let mut outcome = Ok(());
            if self.wakeup.unmarked_count() >= MAX_UNMARKED {
                // Marking has been failing: send nothing more until it succeeds (on the next
                // poll), so the ids waiting for it stay bounded.
                self.wakeup.restore(&carried);
                carried.clear();
            }
            // Sent before any read or scan of this round, which must not take them again.
            for (i, rows) in carried.chunks(batch_size).enumerate() {
                let sent = match in_flight.make_room(self, &mut mark_by).await {
                    Ok(()) => self.send_carried(channel, rows).await,
                    Err(error) => Err(error),
                };
                match sent {
                    Ok(sent) => in_flight.push(sent),
                    Err(error) => {
                        // Not sent: kept for the next session.
                        self.wakeup.restore(&carried[i * batch_size..]);
                        self.wakeup.restore(&bare);
                        outcome = Err(error);
                        break;
                    }
                }
            }
            if outcome.is_ok() && (!bare.is_empty() || scan.is_some()) {
                // The read and the scan work from what is marked or waiting to be: every batch
                // in flight first.
                outcome = in_flight.drain(self, &mut mark_by).await;
                if outcome.is_err() {
                    self.wakeup.restore(&bare);
                }
            }
            if outcome.is_ok() {
                for (i, rows) in bare.chunks(batch_size).enumerate() {
                    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
                    match self.publish_ids(channel, &ids).await {
                        // Its read marked what was waiting; what it published waits now.
                        Ok(_) => mark_by = Instant::now() + self.mark_delay(),
                        Err(error) => {
                            // Not published: kept for the next round.
                            self.wakeup.restore(&bare[i * batch_size..]);
                            outcome = Err(error);
                            break;
                        }
                    }
                }
            }
            while let Some(scope) = scan
                && outcome.is_ok()
            {
                match self.publish_orphans(channel, scope).await {
                    // A full batch: there may be more right behind it.
                    Ok(sent) if sent == batch_size => {}
                    Ok(_) => scan = None,
                    Err(error) => outcome = Err(error),
                }
            }
            let healthy = outcome.is_ok();
            match outcome {
                Ok(()) => {}
                // The database being away is no reason to drop the broker connection: wait for
                // the next poll and try again; the rows are safe where they are.
                Err(RelayError::Database(error)) => {
                    tracing::warn!(%error, "outbox relay cannot read the database; retrying");
                    scan = scan.max(Some(Scan::Orphans));
                }
                Err(error) => return Err(error),
            }
            if stop.is_triggered() {
                return in_flight.drain(self, &mut mark_by).await;
            }
            // One look at the waiting rows (a lock) serves both questions below.
            let unmarked = self.wakeup.unmarked_count();
            let marks_waiting = healthy && !mark_failed && unmarked > 0;
            // Under a steady stream the relay never waits long enough for the timer below: the
            // marks are made here instead, once due, or sooner once many wait, so that a long
            // `mark_delay_ms` at a high rate never reaches MAX_UNMARKED, which stops sending.
            if marks_waiting && (Instant::now() >= mark_by || unmarked >= MARK_AT_ONCE) {
                mark_failed = !self.mark_unmarked().await;
                continue;
            }
            tokio::select! {
                () = self.wakeup.0.notify.notified() => {}
                // The oldest batch in flight is confirmed (or refused, which ends the session).
                confirmed = in_flight.oldest() => in_flight.settle(self, confirmed, &mut mark_by)?,
                _ = poll.tick() => {
                    scan = scan.max(Some(Scan::Orphans));
                    mark_failed = false;
                }
                // The last flush: whatever this process committed, young or old.
                () = stop.wait() => scan = Some(Scan::All),
                // Nothing came to carry the marks along: mark them on their own.
                () = tokio::time::sleep_until(mark_by), if marks_waiting => {
                    mark_failed = !self.mark_unmarked().await;
                }
            }
        }
    }

    /// How long confirmed rows wait to be marked along with the next batch's read before they
    /// are marked on their own (`outbox.mark_delay_ms`, at most a minute).
    fn mark_delay(&self) -> Duration {
        Duration::from_millis(self.settings.mark_delay_ms.min(MAX_MARK_DELAY_MS))
    }

    /// `ids` were published and confirmed: they wait to be marked, by `mark_by` at the latest.
    fn published(&self, ids: impl IntoIterator<Item = i64>, mark_by: &mut Instant) {
        if !self.wakeup.has_unmarked() {
            *mark_by = Instant::now() + self.mark_delay();
        }
        self.wakeup.add_unmarked(ids);
    }

    /// Marks the rows published and not yet marked; false when the database refused.
    async fn mark_unmarked(&self) -> bool {
        let unmarked = self.wakeup.unmarked();
        match mark(&self.db, &unmarked).await {
            Ok(()) => {
                self.wakeup.set_unmarked(Vec::new());
                true
            }
            Err(error) => {
                tracing::warn!(%error, "outbox relay cannot mark published rows; retrying on the next poll");
                false
            }
        }
    }

    /// The fast path for rows handed over with their content: sent as written, with no
    /// statement at all. Returns the rows sent (only those with content) and their confirms,
    /// which the caller awaits while it goes on.
    async fn send_carried(&self, channel: &Channel, rows: &[Written]) -> Result<Sent, RelayError> {
        let (ids, messages): (Vec<i64>, Vec<Publication<'_>>) = rows
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
        Ok(Sent {
            ids,
            confirms: self.send(channel, &messages).await?,
        })
    }

    /// The path for rows known by id alone: the unpublished rows among `ids` (committed by
    /// this process), read by primary key and published, without a transaction held across the
    /// publish. The statement that reads them also marks the rows published before
    /// (`unmarked`), and the batch is left in `unmarked` in their place.
    async fn publish_ids(&self, channel: &Channel, ids: &[i64]) -> Result<usize, RelayError> {
        let rows = PendingRow::find_by_statement(stmt(
            READ_IDS,
            [
                Value::from(self.wakeup.unmarked()),
                Value::from(ids.to_vec()),
            ],
        ))
        .all(&self.db)
        .await?;
        self.wakeup.set_unmarked(Vec::new());
        if rows.is_empty() {
            return Ok(0);
        }
        self.publish(channel, &parsed(&rows)?).await?;
        self.wakeup
            .set_unmarked(rows.iter().map(|r| r.id).collect());
        Ok(rows.len())
    }

    /// The scan: one batch of the oldest unpublished rows in `scope` (but not the ones this
    /// relay published and has yet to mark), held `FOR UPDATE SKIP LOCKED` until they are
    /// marked. Returns how many messages it sent.
    async fn publish_orphans(&self, channel: &Channel, scope: Scan) -> Result<usize, RelayError> {
        let age = match scope {
            Scan::Orphans => self.settings.orphan_age_ms as f64 / 1000.0,
            Scan::All => 0.0,
        };
        let txn = self.db.begin().await?;
        let rows = PendingRow::find_by_statement(stmt(
            SCAN,
            [
                Value::from(i64::from(self.settings.batch_size.max(1))),
                Value::from(age),
                Value::from(self.wakeup.unmarked()),
            ],
        ))
        .all(&txn)
        .await?;
        if !rows.is_empty() {
            self.publish(channel, &parsed(&rows)?).await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            mark(&txn, &ids).await?;
        }
        txn.commit().await?;
        Ok(rows.len())
    }

    /// Publishes `messages` and waits for every confirm: all in flight at once, one round trip
    /// per batch rather than per message.
    async fn publish(
        &self,
        channel: &Channel,
        messages: &[Publication<'_>],
    ) -> Result<(), RelayError> {
        confirmed(self.send(channel, messages).await?).await
    }

    /// Publishes `messages`, without waiting for their confirms. lapin resolves a publish only
    /// once its I/O thread has written the frames: awaited one after another, a batch of n
    /// messages would cross to that thread and back n times, each crossing a wake-up on a
    /// busy machine. Polled together, each publish queues its frames on its first poll, in
    /// order, and the I/O thread writes them all on one wake-up.
    async fn send(
        &self,
        channel: &Channel,
        messages: &[Publication<'_>],
    ) -> Result<Vec<(uuid::Uuid, PublisherConfirm)>, RelayError> {
        let publishes = messages.iter().map(|message| {
            channel.basic_publish(
                message.exchange.into(),
                message.routing_key.into(),
                BasicPublishOptions::default(),
                message.body.as_bytes(),
                envelope::properties(&message.header, &self.app_id),
            )
        });
        let confirms = futures_util::future::try_join_all(publishes).await?;
        Ok(messages
            .iter()
            .map(|message| message.header.message_id)
            .zip(confirms)
            .collect())
    }
}

/// Waits for `confirms`, for `CONFIRM_TIMEOUT` at most: every one an ack, or the error.
async fn confirmed(confirms: Vec<(uuid::Uuid, PublisherConfirm)>) -> Result<(), RelayError> {
    let count = confirms.len();
    let all_confirmed = async {
        for (message_id, confirm) in confirms {
            if !confirm.await?.is_ack() {
                return Err(RelayError::Nacked(message_id));
            }
        }
        Ok(())
    };
    tokio::time::timeout(CONFIRM_TIMEOUT, all_confirmed)
        .await
        .map_err(|_| RelayError::ConfirmTimeout(CONFIRM_TIMEOUT))??;
    tracing::debug!(count, "outbox batch published");
    Ok(())
}

/// Most batches of handed-over rows sent and not yet confirmed. The relay sends the next batch
/// while earlier ones wait for their confirms (a quorum queue confirms once its log is on disk),
/// so a message committed meanwhile waits for no one else's confirm; past this many, it waits
/// for the oldest before it sends more.
const MAX_BATCHES_IN_FLIGHT: usize = 8;

type Confirmed = Pin<Box<dyn Future<Output = Result<(), RelayError>> + Send>>;

/// A batch sent: the ids of its rows, and the confirms that say whether they may be marked.
struct Sent {
    ids: Vec<i64>,
    confirms: Vec<(uuid::Uuid, PublisherConfirm)>,
}

/// The batches a relay has sent and not yet seen confirmed, oldest first. Dropped with the
/// session that sent them: their rows stay unpublished in the table, for the next session's
/// first scan.
#[derive(Default)]
struct InFlight(VecDeque<(Vec<i64>, Confirmed)>);

impl InFlight {
    fn push(&mut self, sent: Sent) {
        self.0
            .push_back((sent.ids, Box::pin(confirmed(sent.confirms))));
    }

    /// The oldest batch's confirms; pending for ever when there is none.
    async fn oldest(&mut self) -> Result<(), RelayError> {
        match self.0.front_mut() {
            Some((_, confirmed)) => confirmed.as_mut().await,
            None => std::future::pending().await,
        }
    }

    /// Takes the oldest batch, `confirmed` as [`oldest`](Self::oldest) said.
    fn settle(
        &mut self,
        relay: &Relay,
        confirmed: Result<(), RelayError>,
        mark_by: &mut Instant,
    ) -> Result<(), RelayError> {
        let Some((ids, _)) = self.0.pop_front() else {
            return Ok(());
        };
        confirmed?;
        relay.published(ids, mark_by);
        Ok(())
    }

    /// Waits for the oldest batches until there is room for one more.
    async fn make_room(&mut self, relay: &Relay, mark_by: &mut Instant) -> Result<(), RelayError> {
        while self.0.len() >= MAX_BATCHES_IN_FLIGHT {
            let confirmed = self.oldest().await;
            self.settle(relay, confirmed, mark_by)?;
        }
        Ok(())
    }

    /// Waits for every batch.
    async fn drain(&mut self, relay: &Relay, mark_by: &mut Instant) -> Result<(), RelayError> {
        while !self.0.is_empty() {
            let confirmed = self.oldest().await;
            self.settle(relay, confirmed, mark_by)?;
        }
        Ok(())
    }
}

/// One message to publish.
struct Publication<'a> {
    exchange: &'a str,
    routing_key: &'a str,
    body: &'a str,
    /// The envelope's ids and type, for the AMQP properties (its payload is not read).
    header: Cow<'a, Envelope>,
}

/// Rows read back from the table, as messages to publish: each body parsed for the properties.
fn parsed(rows: &[PendingRow]) -> Result<Vec<Publication<'_>>, RelayError> {
    rows.iter()
        .map(|row| {
            let header: Envelope =
                serde_json::from_str(&row.body).map_err(|e| RelayError::Corrupt(row.id, e))?;
            Ok(Publication {
                exchange: &row.exchange,
                routing_key: &row.routing_key,
                body: &row.body,
                header: Cow::Owned(header),
            })
        })
        .collect()
}

/// Marks the rows `ids` published, once the broker confirmed them.
async fn mark(db: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
    db.execute_raw(stmt(MARK, [Value::from(ids.to_vec())]))
        .await?;
    Ok(())
}
