//! Idempotent consumers.
//!
//! [`claim`] inserts `(consumer, message_id)` on the handler's transaction. The primary key makes a
//! second delivery of the same message (a redelivery, a duplicate publish, a resent command) find
//! the row and do nothing, even when two consumers race: the loser's insert waits for the winner's
//! transaction and then sees the row. A participant also records the reply it sent, so a repeated
//! command is answered again with the very same reply (same message id) and a lost reply is
//! recovered by resending the command.

use sea_orm::{ConnectionTrait, DbErr};

use super::envelope::{Envelope, OutgoingMessage};
use crate::db::stmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First time this consumer sees the message: handle it.
    First,
    /// Seen before; `reply` is what was answered then, if anything.
    Duplicate { reply: Option<OutgoingMessage> },
}

pub async fn claim(
    db: &impl ConnectionTrait,
    consumer: &str,
    envelope: &Envelope,
) -> Result<Claim, DbErr> {
    let inserted = db
        .execute_raw(stmt(
            "INSERT INTO inbox (consumer, message_id, message_type) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer, message_id) DO NOTHING",
            [
                consumer.into(),
                envelope.message_id.into(),
                envelope.message_type.clone().into(),
            ],
        ))
        .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::First);
    }
    let row = db
        .query_one_raw(stmt(
            "SELECT reply FROM inbox WHERE consumer = $1 AND message_id = $2",
            [consumer.into(), envelope.message_id.into()],
        ))
        .await?;
    let reply = match row {
        Some(row) => row
            .try_get::<Option<serde_json::Value>>("", "reply")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| DbErr::Custom(format!("unreadable recorded reply: {e}")))?,
        None => None,
    };
    Ok(Claim::Duplicate { reply })
}

/// Remembers the reply sent for a claimed message.
pub async fn record_reply(
    db: &impl ConnectionTrait,
    consumer: &str,
    message_id: uuid::Uuid,
    reply: &OutgoingMessage,
) -> Result<(), DbErr> {
    let reply = serde_json::to_value(reply)
        .map_err(|e| DbErr::Custom(format!("cannot serialise reply: {e}")))?;
    db.execute_raw(stmt(
        "UPDATE inbox SET reply = $3 WHERE consumer = $1 AND message_id = $2",
        [consumer.into(), message_id.into(), reply.into()],
    ))
    .await?;
    Ok(())
}
