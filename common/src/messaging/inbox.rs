//! Idempotent consumers: each records `(consumer, message_id)` in its `inbox` table on the
//! transaction of the message's effect, so a second delivery finds the row and does nothing,
//! even when two race (the loser's insert waits for the winner's commit). Each function works on
//! a whole batch, as one part of its single read or write. Two ways to use it:
//! - claim first ([`claim_part`]): the orchestrator inserts the rows in the statement that locks
//!   its sagas and applies only the new messages;
//! - look, act, record ([`seen_read`], then [`record_part`]): a participant also stores the reply
//!   it sent, so a repeated command is answered with the very same reply.

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
