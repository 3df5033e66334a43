//! Idempotent consumers: each records `(consumer, message_id)` in its `inbox` table on the
//! transaction of the message's effect, so a second delivery finds the row and does nothing,
//! even when two race (the loser's insert waits for the winner's commit). Each function works on
//! a whole batch, as one part of its single read or write. Two ways to use it:
//! - claim first ([`claim_part`]): the orchestrator inserts the rows in the statement that locks
//!   its sagas and applies only the new messages;
//! - look, act, record ([`seen_read`], then [`record_part`]): a participant also stores the reply
//!   it sent, so a repeated command is answered with the very same reply.
//!
//! The inbox remembers for [`DedupWindow`] (`retention.inbox_window`); the consumer and the
//! dead-letter replay both refuse a copy older than that, which the inbox may have forgotten.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use humantime_serde::re::humantime::format_duration;
use sea_orm::{DbErr, Value};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::envelope::{Envelope, OutgoingMessage};
use crate::db::{self, Part};

#[derive(Serialize)]
struct ClaimRow<'a> {
    message_id: Uuid,
    message_type: &'a str,
}

/// Inserts a row for every message of `envelopes`, as a data-modifying part returning the ids
/// that had none: the messages this consumer sees for the first time. Rows go in id order, so
/// two transactions claiming overlapping batches wait on each other in one direction only.
pub fn claim_part(consumer: &str, envelopes: &[Envelope]) -> Result<Option<Part>, DbErr> {
    if envelopes.is_empty() {
        return Ok(None);
    }
    let rows: Vec<ClaimRow> = envelopes
        .iter()
        .map(|e| ClaimRow {
            message_id: e.message_id,
            message_type: &e.message_type,
        })
        .collect();
    Ok(Some(Part::new(
        "INSERT INTO inbox (consumer, message_id, message_type) \
         SELECT DISTINCT ON (m.message_id) $1, m.message_id, m.message_type \
         FROM jsonb_to_recordset($2::jsonb) AS m(message_id uuid, message_type text) \
         ORDER BY m.message_id \
         ON CONFLICT (consumer, message_id) DO NOTHING RETURNING message_id",
        vec![consumer.into(), db::rows(&rows)?],
    )))
}

/// A message claimed by [`claim_part`], read back from its `RETURNING` rows.
#[derive(Debug, Deserialize)]
pub struct Claimed {
    pub message_id: Uuid,
}

/// A message this consumer recorded before, and the reply it sent.
#[derive(Debug, Deserialize)]
pub struct Seen {
    pub message_id: Uuid,
    pub reply: Option<OutgoingMessage>,
}

/// The query of the messages among `ids` this consumer has recorded already, each with its
/// reply ([`Seen`] rows), for a [`Reads`](crate::db::Reads).
pub fn seen_read(consumer: &str, ids: &[Uuid]) -> Option<Part> {
    (!ids.is_empty()).then(|| {
        Part::new(
            "SELECT message_id, reply FROM inbox WHERE consumer = $1 AND message_id = ANY($2)",
            vec![consumer.into(), Value::from(ids.to_vec())],
        )
    })
}

/// A message handled for the first time, and what was answered.
pub struct Handled<'a> {
    pub message: &'a Envelope,
    pub reply: Option<&'a OutgoingMessage>,
}

#[derive(Serialize)]
struct RecordRow<'a> {
    message_id: Uuid,
    message_type: &'a str,
    reply: Option<&'a OutgoingMessage>,
}

/// Records `handled` (ids must be distinct), as a part of a
/// [`Writes`](crate::db::Writes) returning one row per message recorded. Fewer rows than
/// messages means another transaction recorded one of them first, after [`seen_read`] looked: the
/// caller must roll back, because that message's effect now happened twice on paper.
pub fn record_part(consumer: &str, handled: &[Handled<'_>]) -> Result<Option<Part>, DbErr> {
    if handled.is_empty() {
        return Ok(None);
    }
    let mut rows: Vec<RecordRow> = handled
        .iter()
        .map(|h| RecordRow {
            message_id: h.message.message_id,
            message_type: &h.message.message_type,
            reply: h.reply,
        })
        .collect();
    // Id order, as in `claim_part`.
    rows.sort_by_key(|r| r.message_id);
    Ok(Some(Part::new(
        "INSERT INTO inbox (consumer, message_id, message_type, reply) \
         SELECT $1, m.message_id, m.message_type, m.reply \
         FROM jsonb_to_recordset($2::jsonb) AS m(message_id uuid, message_type text, reply jsonb) \
         ON CONFLICT (consumer, message_id) DO NOTHING RETURNING message_id",
        vec![consumer.into(), db::rows(&rows)?],
    )))
}

/// How long the inbox remembers a message: its entries are pruned after `retention.inbox_window`
/// (plus a margin), so a copy older than that could take effect a second time. Such a copy is
/// refused instead (dead-lettered `outside_dedup_window`, or left in the DLQ by a replay): a
/// clear refusal an operator can act on, rather than a silent second charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupWindow(TimeDelta);

impl DedupWindow {
    pub fn new(window: Duration) -> Self {
        // Only a window of some 292 million years does not fit: as good as endless.
        Self(TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX))
    }

    /// Whether a message that occurred at `occurred_at` may still be applied at `now`: its age
    /// is at most the window. The age is counted from the envelope's `occurred_at`, which is
    /// never later than the first copy's inbox entry (`received_at`) but for clock skew, which
    /// the pruner's margin covers; a time in the future (a producer's clock ahead) is admitted.
    pub fn admits(
        self,
        occurred_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), OutsideWindow> {
        let age = now.signed_duration_since(occurred_at);
        if age <= self.0 {
            Ok(())
        } else {
            Err(OutsideWindow {
                age,
                window: self.0,
            })
        }
    }
}

impl Default for DedupWindow {
    fn default() -> Self {
        Self::new(crate::configuration::RetentionSettings::default().inbox_window)
    }
}

/// A message older than the [`DedupWindow`]; its `Display` is the dead letter's detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "occurred {} ago, more than the deduplication window of {} (retention.inbox_window): the \
     inbox may have forgotten it, so it is not applied",
    whole_seconds(*age),
    whole_seconds(*window)
)]
pub struct OutsideWindow {
    pub age: TimeDelta,
    pub window: TimeDelta,
}

/// `delta` in words to the second (`8days 2h 5s`), for people reading a dead letter.
fn whole_seconds(delta: TimeDelta) -> impl std::fmt::Display {
    let seconds = u64::try_from(delta.num_seconds()).unwrap_or(0);
    format_duration(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(seconds: u64) -> DedupWindow {
        DedupWindow::new(Duration::from_secs(seconds))
    }

    #[test]
    fn a_message_is_admitted_up_to_the_age_of_the_window_and_refused_past_it() {
        let now = Utc::now();
        let seven_days = window(7 * 24 * 3600);
        let at_the_edge = now - TimeDelta::days(7);
        assert_eq!(seven_days.admits(now, now), Ok(()));
        assert_eq!(seven_days.admits(at_the_edge, now), Ok(()));
        let just_past = at_the_edge - TimeDelta::milliseconds(1);
        assert_eq!(
            seven_days.admits(just_past, now),
            Err(OutsideWindow {
                age: TimeDelta::days(7) + TimeDelta::milliseconds(1),
                window: TimeDelta::days(7),
            })
        );
    }

    #[test]
    fn a_message_from_the_future_is_admitted() {
        let now = Utc::now();
        assert_eq!(window(60).admits(now + TimeDelta::hours(1), now), Ok(()));
        assert_eq!(window(0).admits(now + TimeDelta::seconds(1), now), Ok(()));
    }

    #[test]
    fn an_endless_window_admits_any_age() {
        let endless = DedupWindow::new(Duration::MAX);
        assert_eq!(endless.admits(DateTime::<Utc>::MIN_UTC, Utc::now()), Ok(()));
    }

    #[test]
    fn a_refusal_says_the_age_and_the_window() {
        let now = Utc::now();
        let old = now - TimeDelta::days(8) - TimeDelta::hours(2) - TimeDelta::milliseconds(300);
        let refusal = window(7 * 24 * 3600).admits(old, now).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "occurred 8days 2h ago, more than the deduplication window of 7days \
             (retention.inbox_window): the inbox may have forgotten it, so it is not applied"
        );
    }
}
