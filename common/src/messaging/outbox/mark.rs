//! Marking rows sent: deleting their `outbox_pending` rows once the broker confirmed them. Rows
//! confirmed within `outbox.mark_delay_ms` are marked together, by one statement of their own or
//! along with the next read by id: under load one statement per delay rather than one per batch,
//! and no transaction held across a publish. (Two tables because marking by an update of the
//! outbox row copied the whole row and its index entries.)

use std::sync::Mutex;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbErr, Value};
use tokio::time::Instant;

use crate::db::stmt;

/// Deletes the pending rows `$1`: the rows are sent. Its commit alone does not wait for the WAL
/// flush (`SET LOCAL synchronous_commit = off`): a mark lost in a crash is a row published
/// again, which the inboxes absorb, so waiting would buy nothing.
macro_rules! mark_sql {
    () => {
        "DELETE FROM outbox_pending \
         WHERE id = ANY($1) AND set_config('synchronous_commit', 'off', true) = 'off'"
    };
}
const MARK: &str = mark_sql!();

/// Most rows confirmed but not yet marked; while the database refuses marks, the relay sends
/// no more handed-over rows past this many, so the ids it keeps stay bounded.
pub(super) const MAX_UNMARKED: usize = super::wakeup::MAX_CARRIED;

/// Confirmed rows are marked at once, however young, once this many wait: a long mark delay at a
/// high rate must never reach [`MAX_UNMARKED`], which stops sending.
const MARK_AT_ONCE: usize = MAX_UNMARKED / 2;

/// The longest `outbox.mark_delay_ms` taken as given: a longer delay only widens what a crash
/// sends again (and a huge one would overflow the deadline arithmetic).
const MAX_MARK_DELAY: Duration = Duration::from_secs(60);

/// Marks the rows `ids` published, once the broker confirmed them.
pub(super) async fn mark(db: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
    db.execute_raw(stmt(MARK, [Value::from(ids.to_vec())]))
        .await?;
    Ok(())
}

/// Rows the relay published and saw confirmed but has not yet marked. Kept in the wakeup rather
/// than in the relay's future, which a shutdown or a reconnect drops: the next session marks
/// them instead of publishing them again.
#[derive(Default, Debug)]
pub(super) struct Unmarked(Mutex<Vec<i64>>);

impl Unmarked {
    pub(super) fn count(&self) -> usize {
        self.0.lock().map(|ids| ids.len()).unwrap_or(0)
    }

    pub(super) fn ids(&self) -> Vec<i64> {
        self.0.lock().map(|ids| ids.clone()).unwrap_or_default()
    }

    /// Replaces the waiting ids: a read by id marked the old ones, and its own rows wait now.
    pub(super) fn set(&self, ids: Vec<i64>) {
        if let Ok(mut unmarked) = self.0.lock() {
            *unmarked = ids;
        }
    }

    /// Adds `ids`; true when none waited before.
    fn add(&self, ids: Vec<i64>) -> bool {
        self.0
            .lock()
            .map(|mut unmarked| {
                let first = unmarked.is_empty();
                unmarked.extend(ids);
                first
            })
            .unwrap_or(false)
    }

    /// Marks every waiting row; false when the database refused (the rows keep waiting).
    pub(super) async fn mark(&self, db: &impl ConnectionTrait) -> bool {
        let ids = self.ids();
        if ids.is_empty() {
            return true;
        }
        match mark(db, &ids).await {
            Ok(()) => {
                self.set(Vec::new());
                true
            }
            Err(error) => {
                tracing::warn!(%error, count = ids.len(), "outbox relay cannot mark published rows; they wait for the next try");
                false
            }
        }
    }
}

/// When a session marks the rows waiting in [`Unmarked`]: the mark delay after the first of them
/// at the latest, however busy the relay stays meanwhile, and not before the next poll once
/// marking failed, so a database that refuses writes is not hit every mark delay.
pub(super) struct Marks {
    delay: Duration,
    by: Instant,
    failed: bool,
}

impl Marks {
    pub(super) fn new(delay_ms: u64) -> Self {
        let delay = Duration::from_millis(delay_ms).min(MAX_MARK_DELAY);
        Self {
            delay,
            by: Instant::now() + delay,
            failed: false,
        }
    }

    /// `ids` were published and confirmed: they wait in `unmarked` to be marked.
    pub(super) fn confirmed(&mut self, unmarked: &Unmarked, ids: Vec<i64>) {
        if unmarked.add(ids) {
            self.restart();
        }
    }

    /// What waits now was published just now: the delay starts again.
    pub(super) fn restart(&mut self) {
        self.by = Instant::now() + self.delay;
    }

    /// Whether rows wait to be marked, with `count` waiting, after a round that went well or not.
    pub(super) fn waiting(&self, count: usize, healthy: bool) -> bool {
        healthy && !self.failed && count > 0
    }

    /// Whether the `count` rows waiting are to be marked now rather than on the timer: under a
    /// steady stream the relay never waits long enough for it.
    pub(super) fn due(&self, count: usize) -> bool {
        Instant::now() >= self.by || count >= MARK_AT_ONCE
    }

    pub(super) fn deadline(&self) -> Instant {
        self.by
    }

    pub(super) async fn mark(&mut self, db: &impl ConnectionTrait, unmarked: &Unmarked) {
        self.failed = !unmarked.mark(db).await;
    }

    /// The poll came: marking may be tried again.
    pub(super) fn retry(&mut self) {
        self.failed = false;
    }
}
