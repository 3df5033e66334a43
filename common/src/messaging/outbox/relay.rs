//! The relay: publishes committed outbox rows, and has them marked once the broker confirmed
//! them. Each round it publishes, in this order: the rows handed over with their content (no
//! statement at all, several batches in flight), the rows handed over by id (read by key once
//! the batches in flight are confirmed), and, when a scan is due, the oldest unpublished rows.
//!
//! A scan takes every unpublished row when a session starts and ends and when a writer could not
//! name its rows, and rows older than `outbox.orphan_age_ms` every `outbox.poll_interval_ms`
//! (younger ones are their writer's to publish). A nack or a confirm timeout ends the session
//! with every batch in flight unmarked; the next session's first scan publishes them again.

use std::time::Duration;

use lapin::Channel;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio::time::{Interval, MissedTickBehavior};

use super::enqueue::Written;
use super::mark::{MAX_UNMARKED, Marks, Unmarked, mark};
use super::publish::{Batch, InFlight, Sent, send};
use super::scan::{self, Scan};
use super::wakeup::RelayWakeup;
use crate::configuration::OutboxSettings;
use crate::shutdown::Shutdown;

/// The shortest poll interval taken as given: a shorter one would keep the database busy with
/// scans that find nothing.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

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

pub struct Relay {
    pub db: DatabaseConnection,
    pub settings: OutboxSettings,
    pub wakeup: RelayWakeup,
    /// Written into the AMQP `app_id` property.
    pub app_id: String,
}

impl Relay {
    /// Publishes until `stop` is triggered, then flushes once more. Starts with a scan, since
    /// ids handed to an earlier session may be lost; for the same reason the future may be
    /// dropped at any await: a row stays unpublished in the table until it is marked.
    pub async fn run(&self, channel: &Channel, stop: &Shutdown) -> Result<(), RelayError> {
        let outcome = self.relay(channel, stop).await;
        // Published and confirmed, but not yet marked: mark them if the database lets us, or
        // a scan will publish them again (a duplicate the inboxes absorb).
        self.wakeup.unmarked().mark(&self.db).await;
        outcome
    }

    async fn relay(&self, channel: &Channel, stop: &Shutdown) -> Result<(), RelayError> {
        let mut session = Session::start(self, channel).await;
        loop {
            let outcome = session.round().await;
            let healthy = session.survive(outcome)?;
            if stop.is_triggered() {
                return session.drain().await;
            }
            session.wait(stop, healthy).await?;
        }
    }
}

/// One broker session of the relay: what it has sent and what it is to do next. Its methods take
/// `&mut self` even to read: a `&Session` held across an await would need `InFlight` to be `Sync`.
struct Session<'a> {
    relay: &'a Relay,
    channel: &'a Channel,
    batch_size: usize,
    poll: Interval,
    /// The scan due, if any; a session starts with a scan of every row.
    scan: Option<Scan>,
    marks: Marks,
    /// Batches of handed-over rows sent and awaiting their confirms, oldest first.
    in_flight: InFlight,
}

impl<'a> Session<'a> {
    async fn start(relay: &'a Relay, channel: &'a Channel) -> Self {
        let settings = &relay.settings;
        let mut poll = tokio::time::interval(
            Duration::from_millis(settings.poll_interval_ms).max(MIN_POLL_INTERVAL),
        );
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is immediate; the start-up scan covers it.
        poll.tick().await;
        Self {
            relay,
            channel,
            batch_size: settings.batch_size.max(1) as usize,
            poll,
            scan: Some(Scan::All),
            marks: Marks::new(settings.mark_delay_ms),
            in_flight: InFlight::new(settings.max_batches_in_flight),
        }
    }

    fn unmarked(&self) -> &'a Unmarked {
        self.relay.wakeup.unmarked()
    }

    /// Publishes what was handed over, then what a scan finds.
    async fn round(&mut self) -> Result<(), RelayError> {
        let work = self.relay.wakeup.take();
        if work.scan {
            self.scan = Some(Scan::All);
        }
        let (mut carried, bare) = work.into_rows();
        if self.unmarked().count() >= MAX_UNMARKED {
            // Marking has been failing: send nothing more until it succeeds (on the next
            // poll), so the ids waiting for it stay bounded.
            self.relay.wakeup.restore(&carried);
            carried.clear();
        }
        self.send_carried(&carried, &bare).await?;
        self.publish_by_id(&bare).await?;
        self.scan().await
    }

    /// The rows handed over with their content, sent as written with no statement at all, and
    /// before any read or scan of this round, which must not take them again. What is not
    /// sent is kept for the next session, `bare` with it.
    async fn send_carried(
        &mut self,
        carried: &[Written],
        bare: &[Written],
    ) -> Result<(), RelayError> {
        for (i, rows) in carried.chunks(self.batch_size).enumerate() {
            let sent = match self.make_room().await {
                Ok(()) => self.send(Batch::carried(rows)).await,
                Err(error) => Err(error),
            };
            match sent {
                Ok(sent) => self.in_flight.push(sent),
                Err(error) => {
                    self.relay.wakeup.restore(&carried[i * self.batch_size..]);
                    self.relay.wakeup.restore(bare);
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// The rows handed over by id alone, read by key and published. The read and the scan
    /// after it work from what is marked or waiting to be: every batch in flight first. What
    /// is not published is kept for the next round.
    async fn publish_by_id(&mut self, bare: &[Written]) -> Result<(), RelayError> {
        if bare.is_empty() && self.scan.is_none() {
            return Ok(());
        }
        if let Err(error) = self.drain().await {
            self.relay.wakeup.restore(bare);
            return Err(error);
        }
        for (i, rows) in bare.chunks(self.batch_size).enumerate() {
            let ids = rows.iter().map(|row| row.id).collect();
            if let Err(error) = self.publish_ids(ids).await {
                self.relay.wakeup.restore(&bare[i * self.batch_size..]);
                return Err(error);
            }
            // Its read marked what was waiting; what it published waits now.
            self.marks.restart();
        }
        Ok(())
    }

    /// The unpublished rows among `ids`, read by primary key and published, with no
    /// transaction held across the publish. The read also marks the rows published before,
    /// and the batch waits to be marked in their place.
    async fn publish_ids(&mut self, ids: Vec<i64>) -> Result<(), RelayError> {
        let rows = scan::read_ids(&self.relay.db, self.unmarked().ids(), ids).await?;
        self.unmarked().set(Vec::new());
        if rows.is_empty() {
            return Ok(());
        }
        let published = self.send(scan::batch(&rows)?).await?.confirmed().await?;
        self.unmarked().set(published);
        Ok(())
    }

    /// Scans while a scan is due and each batch comes back full.
    async fn scan(&mut self) -> Result<(), RelayError> {
        while let Some(scope) = self.scan {
            // A full batch: there may be more right behind it.
            if self.publish_scanned(scope).await? < self.batch_size {
                self.scan = None;
            }
        }
        Ok(())
    }

    /// One batch of the oldest unpublished rows in `scope` (but not the ones this relay has
    /// yet to mark), held on a transaction until they are marked. Returns how many it sent.
    async fn publish_scanned(&mut self, scope: Scan) -> Result<usize, RelayError> {
        let txn = self.relay.db.begin().await?;
        let unmarked = self.unmarked().ids();
        let rows =
            scan::claim(&txn, &self.relay.settings, scope, self.batch_size, unmarked).await?;
        if !rows.is_empty() {
            let published = self.send(scan::batch(&rows)?).await?.confirmed().await?;
            mark(&txn, &published).await?;
        }
        txn.commit().await?;
        Ok(rows.len())
    }

    /// The one publish path: sends `batch`, its confirms to await now or later.
    async fn send(&mut self, batch: Batch<'_>) -> Result<Sent, RelayError> {
        let confirm_timeout = Duration::from_millis(self.relay.settings.confirm_timeout_ms);
        send(self.channel, &self.relay.app_id, batch, confirm_timeout).await
    }

    /// Whether the round went well; only an error other than the database being away ends the
    /// session, since the rows are safe where they are and the next poll tries again.
    fn survive(&mut self, outcome: Result<(), RelayError>) -> Result<bool, RelayError> {
        match outcome {
            Ok(()) => Ok(true),
            Err(RelayError::Database(error)) => {
                tracing::warn!(%error, "outbox relay cannot read the database; retrying");
                self.scan = self.scan.max(Some(Scan::Orphans));
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Marks what is due, or waits for the next thing to do.
    async fn wait(&mut self, stop: &Shutdown, healthy: bool) -> Result<(), RelayError> {
        // One look at the waiting rows (a lock) serves both questions.
        let unmarked = self.unmarked().count();
        let marks_waiting = self.marks.waiting(unmarked, healthy);
        if marks_waiting && self.marks.due(unmarked) {
            self.marks.mark(&self.relay.db, self.unmarked()).await;
            return Ok(());
        }
        tokio::select! {
            () = self.relay.wakeup.notified() => {}
            // The oldest batch in flight is confirmed (or refused, which ends the session).
            confirmed = self.in_flight.oldest() => self.settle(confirmed)?,
            _ = self.poll.tick() => {
                self.scan = self.scan.max(Some(Scan::Orphans));
                self.marks.retry();
            }
            // The last flush: whatever this process committed, young or old.
            () = stop.wait() => self.scan = Some(Scan::All),
            // Nothing came to carry the marks along: mark them on their own.
            () = tokio::time::sleep_until(self.marks.deadline()), if marks_waiting => {
                self.marks.mark(&self.relay.db, self.unmarked()).await;
            }
        }
        Ok(())
    }

    /// Takes the oldest batch in flight, `confirmed` as [`InFlight::oldest`] said: its rows
    /// wait to be marked.
    fn settle(&mut self, confirmed: Result<Vec<i64>, RelayError>) -> Result<(), RelayError> {
        self.in_flight.pop_oldest();
        self.marks.confirmed(self.unmarked(), confirmed?);
        Ok(())
    }

    /// Waits for the oldest batches until there is room for one more.
    async fn make_room(&mut self) -> Result<(), RelayError> {
        while self.in_flight.is_full() {
            let confirmed = self.in_flight.oldest().await;
            self.settle(confirmed)?;
        }
        Ok(())
    }

    /// Waits for every batch in flight.
    async fn drain(&mut self) -> Result<(), RelayError> {
        while !self.in_flight.is_empty() {
            let confirmed = self.in_flight.oldest().await;
            self.settle(confirmed)?;
        }
        Ok(())
    }
}
