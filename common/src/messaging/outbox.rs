//! Transactional outbox.
//!
//! A service writes the messages a state change causes with [`insert_part`] (or
//! [`enqueue_all`]), on the same transaction as the change: a row in `outbox`, the message as
//! published, written once and never changed. The database adds a row in `outbox_pending`, its
//! id and time, for every outbox row written, whoever writes it (a trigger, see
//! `migration::SplitOutboxPending`). The relay ([`Relay`]) publishes committed rows with
//! publisher confirms, all confirms of a batch in flight at once, and marks the rows sent, by
//! deleting their pending rows, only after the broker confirmed every one. A crash between
//! publish and mark republishes the batch; consumers' inboxes make that harmless, which is also
//! why a mark does not wait for the WAL flush (`MARK`). (Why two tables: marking by an update
//! of the outbox row copied the whole row and its index entries.)
//!
//! How the relay finds its rows. Whoever commits outbox rows hands their ids to the relay
//! ([`RelayWakeup::committed`]); the relay reads exactly those rows by primary key, publishes
//! them and marks them (with the next batch's read when one follows within 20 ms): one or two
//! statements per batch, no transaction held across the publish, and a cost that does not grow
//! with the table. A scan of the unpublished rows runs as well ([`Scan`]): every
//! `outbox.poll_interval_ms` it takes rows older than `outbox.orphan_age_ms` (younger ones are
//! their writer's to publish); when a session starts, when it ends (the shutdown flush) and when
//! a writer cannot name its rows, it takes every unpublished row. Oldest first, claimed `FOR
//! UPDATE SKIP LOCKED` on a transaction held until they are marked, so two instances' scans
//! never publish a row twice at once. It finds what another instance, or this one before a
//! crash or a reconnect, left behind. A row can be published twice: when a scan takes a row its
//! writer is publishing at that moment (a full scan at a session's start or end, or a writer
//! stalled past the orphan age), when a batch is republished after a nack or a confirm timeout,
//! or when marking fails after the publish; the consumers' inboxes absorb the copy.
//!
//! Why the scan is not the fast path: the key of `outbox_pending` keeps an entry for every
//! deleted row until a vacuum removes it (a scan that finds one dead only marks it so), and a
//! scan from the oldest id reads them all: where autovacuum is off, a cost that grows with every
//! message sent since the last vacuum (docs/benchmarks.md).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::Channel;
use lapin::options::BasicPublishOptions;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, TransactionTrait, Value,
};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

use super::envelope::{self, Envelope, OutgoingMessage};
use crate::configuration::OutboxSettings;
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

/// How long published rows wait to be marked along with the next batch's read before they are
/// marked on their own: short, so a quiet relay still marks at once.
const MARK_DELAY: Duration = Duration::from_millis(20);

/// How long a batch may wait for its confirms. A broker that accepts a publish but never
/// confirms it (an unresponsive queue) must not hold the relay, and the rows' locks, forever: the
/// session is restarted instead and the rows are published again.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Ids of outbox rows a transaction wrote: handed to [`RelayWakeup::committed`] once it has
/// committed, so the relay publishes them without scanning for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enqueued(pub Vec<i64>);

impl Enqueued {
    pub fn extend(&mut self, other: Enqueued) {
        self.0.extend(other.0);
    }
}

/// Writes `messages` to the outbox on `db`, in this order, with one statement.
pub async fn enqueue_all(
    db: &impl ConnectionTrait,
    messages: &[OutgoingMessage],
) -> Result<Enqueued, DbErr> {
    let mut writes = Writes::new();
    writes.add("outbox", insert_part(messages, None)?);
    Ok(Enqueued(writes.execute(db).await?.take_ids("outbox")))
}

/// One row of an outbox insert.
#[derive(Serialize)]
struct NewRow<'a> {
    message_id: uuid::Uuid,
    exchange: &'a str,
    routing_key: &'a str,
    message_type: &'a str,
    saga_id: uuid::Uuid,
    body: String,
}

/// `messages`' outbox rows as a part of a [`Writes`], in this order, collecting their ids; with
/// `sagas` (a query of saga ids, such as another part's `RETURNING`), only the messages of those
/// sagas. `None` when there is nothing to write.
pub fn insert_part(
    messages: &[OutgoingMessage],
    sagas: Option<&str>,
) -> Result<Option<Part>, DbErr> {
    if messages.is_empty() {
        return Ok(None);
    }
    let rows = messages
        .iter()
        .map(|message| {
            Ok(NewRow {
                message_id: message.envelope.message_id,
                exchange: &message.exchange,
                routing_key: &message.routing_key,
                message_type: &message.envelope.message_type,
                saga_id: message.envelope.saga_id,
                body: serde_json::to_string(&message.envelope)
                    .map_err(|e| DbErr::Custom(format!("cannot serialise envelope: {e}")))?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let filter = sagas
        .map(|sagas| format!("WHERE m.saga_id IN ({sagas}) "))
        .unwrap_or_default();
    // `ORDER BY ordinality`: ids, and so publishing order, follow the order given.
    Ok(Some(
        Part::new(
            format!(
                "INSERT INTO outbox (message_id, exchange, routing_key, message_type, saga_id, body) \
                 SELECT m.message_id, m.exchange, m.routing_key, m.message_type, m.saga_id, m.body \
                 FROM ROWS FROM (jsonb_to_recordset($1) AS (message_id uuid, exchange text, \
                   routing_key text, message_type text, saga_id uuid, body text)) WITH ORDINALITY \
                   AS m(message_id, exchange, routing_key, message_type, saga_id, body, ordinality) \
                 {filter}ORDER BY m.ordinality RETURNING id"
            ),
            vec![db::rows(&rows)?],
        )
        .collecting_ids(),
    ))
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
            Enqueued(vec![r.try_get::<i64>("", "id")?]),
        ))
    })
    .transpose()
}

/// Most ids waiting for the relay. Past it (the broker has been away for a while) the ids are
/// dropped and the relay scans instead: the rows are safe in the table, and memory stays
/// bounded.
const MAX_WAITING_IDS: usize = 100_000;

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
    ids: Vec<i64>,
    /// Scan every unpublished row, whatever its age: a writer could not name its rows, or ids
    /// were dropped.
    scan: bool,
}

impl RelayWakeup {
    /// `enqueued` was committed: publish those rows.
    pub fn committed(&self, enqueued: Enqueued) {
        if enqueued.0.is_empty() {
            return;
        }
        if let Ok(mut work) = self.0.work.lock() {
            if work.ids.len() + enqueued.0.len() > MAX_WAITING_IDS {
                work.ids.clear();
                work.scan = true;
            } else {
                work.ids.extend(enqueued.0);
            }
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

    /// Puts back ids the relay could not publish, without waking it: it retries on its own
    /// schedule, not in a tight loop while the database fails.
    fn restore(&self, ids: &[i64]) {
        if let Ok(mut work) = self.0.work.lock() {
            if work.ids.len() + ids.len() > MAX_WAITING_IDS {
                work.ids.clear();
                work.scan = true;
            } else {
                work.ids.extend_from_slice(ids);
            }
        }
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
        // refuses writes is not hit every MARK_DELAY.
        let mut mark_failed = false;
        loop {
            let mut work = self.wakeup.take();
            if work.scan {
                scan = Some(Scan::All);
            }
            work.ids.sort_unstable();
            work.ids.dedup();
            let mut outcome = Ok(());
            for (i, ids) in work.ids.chunks(batch_size).enumerate() {
                if let Err(error) = self.publish_ids(channel, ids).await {
                    // Not published: kept for the next round.
                    self.wakeup.restore(&work.ids[i * batch_size..]);
                    outcome = Err(error);
                    break;
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
                return Ok(());
            }
            let marks_waiting = healthy && !mark_failed && self.wakeup.has_unmarked();
            tokio::select! {
                () = self.wakeup.0.notify.notified() => {}
                _ = poll.tick() => {
                    scan = scan.max(Some(Scan::Orphans));
                    mark_failed = false;
                }
                // The last flush: whatever this process committed, young or old.
                () = stop.wait() => scan = Some(Scan::All),
                // Nothing came to carry the marks along: mark them on their own.
                () = tokio::time::sleep(MARK_DELAY), if marks_waiting => {
                    let unmarked = self.wakeup.unmarked();
                    match mark(&self.db, &unmarked).await {
                        Ok(()) => self.wakeup.set_unmarked(Vec::new()),
                        Err(error) => {
                            mark_failed = true;
                            tracing::warn!(%error, "outbox relay cannot mark published rows; retrying on the next poll");
                        }
                    }
                }
            }
        }
    }

    /// The fast path: the unpublished rows among `ids` (committed by this process), read by
    /// primary key and published, without a transaction held across the publish. The statement
    /// that reads them also marks the batch published before (`unmarked`), and the batch is
    /// left in `unmarked` for the next one: under load, one round trip per batch.
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
        self.publish(channel, &rows).await?;
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
            self.publish(channel, &rows).await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            mark(&txn, &ids).await?;
        }
        txn.commit().await?;
        Ok(rows.len())
    }

    /// Publishes `rows` and waits for every confirm: all in flight at once, one round trip per
    /// batch rather than per message.
    async fn publish(&self, channel: &Channel, rows: &[PendingRow]) -> Result<(), RelayError> {
        let mut confirms = Vec::with_capacity(rows.len());
        for row in rows {
            let envelope: Envelope =
                serde_json::from_str(&row.body).map_err(|e| RelayError::Corrupt(row.id, e))?;
            let confirm = channel
                .basic_publish(
                    row.exchange.as_str().into(),
                    row.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    row.body.as_bytes(),
                    envelope::properties(&envelope, &self.app_id),
                )
                .await?;
            confirms.push((envelope.message_id, confirm));
        }
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
        tracing::debug!(count = rows.len(), "outbox batch published");
        Ok(())
    }
}

/// Marks the rows `ids` published, once the broker confirmed them.
async fn mark(db: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
    db.execute_raw(stmt(MARK, [Value::from(ids.to_vec())]))
        .await?;
    Ok(())
}
