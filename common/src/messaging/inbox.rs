//! Idempotent consumers.
//!
//! Every consumer records `(consumer, message_id)` in its `inbox` table on the transaction of the
//! message's effect. The primary key makes a second delivery of the same message (a redelivery, a
//! duplicate publish, a resent command) find the row and do nothing, even when two consumers
//! race: the loser's insert waits for the winner's transaction and then sees the row. Each
//! function takes a whole batch and costs one statement, whatever the batch's size.
//!
//! Two ways to use it:
//! - claim first ([`claim_all`]): the orchestrator inserts the rows before it touches a saga and
//!   applies only the messages that were new;
//! - look, act, record ([`seen`], then [`record_part`]): a participant also stores the reply it
//!   sent, so a repeated command is answered again with the very same reply (same message id) and
//!   a lost reply is recovered by resending the command. Inserting the row once, with its reply,
//!   writes one row version instead of an insert and an update.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DbErr, Value};
use serde::Serialize;
use uuid::Uuid;

use super::envelope::{Envelope, OutgoingMessage};
use crate::db::{self, Part, stmt};

#[derive(Serialize)]
struct ClaimRow<'a> {
    message_id: Uuid,
    message_type: &'a str,
}

/// Inserts a row for every message of `envelopes` and returns the ids that had none: the
/// messages this consumer sees for the first time. Rows go in id order, so two transactions
/// claiming overlapping batches wait on each other in one direction only.
pub async fn claim_all(
    db: &impl ConnectionTrait,
    consumer: &str,
    envelopes: &[Envelope],
) -> Result<HashSet<Uuid>, DbErr> {
    if envelopes.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<ClaimRow> = envelopes
        .iter()
        .map(|e| ClaimRow {
            message_id: e.message_id,
            message_type: &e.message_type,
        })
        .collect();
    let claimed = db
        .query_all_raw(stmt(
            "INSERT INTO inbox (consumer, message_id, message_type) \
             SELECT DISTINCT ON (m.message_id) $1, m.message_id, m.message_type \
             FROM jsonb_to_recordset($2) AS m(message_id uuid, message_type text) \
             ORDER BY m.message_id \
             ON CONFLICT (consumer, message_id) DO NOTHING RETURNING message_id",
            [consumer.into(), db::rows(&rows)?],
        ))
        .await?;
    claimed
        .iter()
        .map(|row| row.try_get::<Uuid>("", "message_id"))
        .collect()
}

/// The messages among `ids` this consumer has recorded already, each with the reply it sent.
pub async fn seen(
    db: &impl ConnectionTrait,
    consumer: &str,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Option<OutgoingMessage>>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = db
        .query_all_raw(stmt(
            "SELECT message_id, reply FROM inbox WHERE consumer = $1 AND message_id = ANY($2)",
            [consumer.into(), Value::from(ids.to_vec())],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            let reply = row
                .try_get::<Option<serde_json::Value>>("", "reply")?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| DbErr::Custom(format!("unreadable recorded reply: {e}")))?;
            Ok((row.try_get::<Uuid>("", "message_id")?, reply))
        })
        .collect()
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
/// messages means another transaction recorded one of them first, after [`seen`] looked: the
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
    // Id order, as in `claim_all`.
    rows.sort_by_key(|r| r.message_id);
    Ok(Some(Part::new(
        "INSERT INTO inbox (consumer, message_id, message_type, reply) \
         SELECT $1, m.message_id, m.message_type, m.reply \
         FROM jsonb_to_recordset($2) AS m(message_id uuid, message_type text, reply jsonb) \
         ON CONFLICT (consumer, message_id) DO NOTHING RETURNING message_id",
        vec![consumer.into(), db::rows(&rows)?],
    )))
}
