//! Waking the relay. A writer commits through [`RelayWakeup`], which hands the relay the rows
//! the transaction wrote in the same call: the relay publishes them at once, as written, without
//! scanning for them. What waits for the relay is bounded in memory; past the bounds the rows
//! are kept by id, or dropped for a scan to find, as they are safe in the table either way.

use std::future::Future;
use std::sync::{Arc, Mutex};

use sea_orm::{DatabaseTransaction, DbErr};
use tokio::sync::Notify;

use super::enqueue::{Enqueued, Written};
use super::mark::Unmarked;

/// Most rows waiting for the relay: past it (the broker has been away a while) they are dropped
/// and the relay scans instead, so memory stays bounded.
const MAX_WAITING_ROWS: usize = 100_000;

/// Most waiting rows that keep their content (a few hundred bytes each); the rest are kept by
/// id and read back, so a relay that fell behind costs a read per batch, not memory.
pub(super) const MAX_CARRIED: usize = 10_000;

/// Commits what writers enqueued and tells the relay, so it publishes at once.
#[derive(Clone, Default, Debug)]
pub struct RelayWakeup(Arc<Wakeup>);

#[derive(Default, Debug)]
struct Wakeup {
    notify: Notify,
    work: Mutex<Work>,
    unmarked: Unmarked,
}

/// What the relay is to publish next.
#[derive(Default, Debug)]
pub(super) struct Work {
    rows: Vec<Written>,
    /// How many of `rows` carry their content.
    carried: usize,
    /// Scan every unpublished row, whatever its age: a writer could not name its rows, or rows
    /// were dropped.
    pub(super) scan: bool,
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

    /// The rows in id order, each once: those with their content, and those known by id alone.
    pub(super) fn into_rows(mut self) -> (Vec<Written>, Vec<Written>) {
        self.rows.sort_unstable_by_key(|row| row.id);
        self.rows.dedup_by_key(|row| row.id);
        self.rows.into_iter().partition(|row| row.content.is_some())
    }
}

impl RelayWakeup {
    /// Commits `txn` and hands the relay the outbox rows it wrote, `enqueued`.
    pub async fn commit(&self, txn: DatabaseTransaction, enqueued: Enqueued) -> Result<(), DbErr> {
        txn.commit().await?;
        self.hand_over(enqueued);
        Ok(())
    }

    /// Runs `write`, which commits as it runs (one statement, with no transaction around it),
    /// and hands the relay the outbox rows it wrote.
    pub async fn autocommit<T, E>(
        &self,
        write: impl Future<Output = Result<(T, Enqueued), E>>,
    ) -> Result<T, E> {
        let (written, enqueued) = write.await?;
        self.hand_over(enqueued);
        Ok(written)
    }

    /// Something was committed to the outbox without its ids at hand: scan for it.
    #[cfg(feature = "testing")]
    pub fn notify(&self) {
        if let Ok(mut work) = self.0.work.lock() {
            work.scan = true;
        }
        self.0.notify.notify_one();
    }

    /// Says what the committed work had to say, then wakes the relay if it wrote rows.
    fn hand_over(&self, enqueued: Enqueued) {
        let Enqueued(rows, notes, _) = enqueued;
        notes.run();
        if rows.is_empty() {
            return;
        }
        if let Ok(mut work) = self.0.work.lock() {
            work.add(rows.into_iter());
        }
        self.0.notify.notify_one();
    }

    /// Woken by a writer (or by a wake-up given while the relay was busy).
    pub(super) async fn notified(&self) {
        self.0.notify.notified().await;
    }

    pub(super) fn take(&self) -> Work {
        self.0
            .work
            .lock()
            .map(|mut work| std::mem::take(&mut *work))
            .unwrap_or_default()
    }

    /// Puts back rows the relay could not publish, without waking it: it retries on its own
    /// schedule, not in a tight loop while the database or the broker fails.
    pub(super) fn restore(&self, rows: &[Written]) {
        if let Ok(mut work) = self.0.work.lock() {
            work.add(rows.iter().cloned());
        }
    }

    pub(super) fn unmarked(&self) -> &Unmarked {
        &self.0.unmarked
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn notes_are_said_once_the_write_commits_and_never_when_it_fails() {
        let said = Arc::new(AtomicUsize::new(0));
        let noted = || {
            let mut enqueued = Enqueued::default();
            let said = said.clone();
            enqueued.after_commit(move || {
                said.fetch_add(1, Ordering::SeqCst);
            });
            enqueued
        };
        let wakeup = RelayWakeup::default();
        let failed: Result<(), &str> = wakeup.autocommit(async { Err("rolled back") }).await;
        assert!(failed.is_err());
        let mut both = noted();
        both.extend(noted());
        let written: Result<(), &str> = wakeup.autocommit(async { Ok(((), both)) }).await;
        assert!(written.is_ok());
        assert_eq!(said.load(Ordering::SeqCst), 2);
        drop(noted());
        assert_eq!(
            said.load(Ordering::SeqCst),
            2,
            "a note dropped unsaid says nothing"
        );
    }
}
