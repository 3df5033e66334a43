//! The shape of every participant's command handling, so both participants get it right once.
//! [`handle_batch`] runs on the consumer's transaction, for a whole batch:
//!
//! 1. A command this participant has handled before is answered again with the reply recorded
//!    the first time (same message id, through the outbox), and has no second effect. A second
//!    copy of a command within the batch is dropped: the first copy's reply answers both.
//! 2. The caller's `effect` decides the others, in delivery order, and returns one reply each
//!    and the writes that carry out its decisions (not yet run).
//! 3. Those writes, the replies' outbox rows and the commands' inbox rows (with their replies)
//!    go to the database as one statement.

use std::collections::HashSet;
use std::future::Future;

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::consumer::HandleError;
use super::envelope::{Envelope, OutgoingMessage};
use super::inbox::{self, Handled};
use super::outbox::{self, Enqueued};
use crate::db::Writes;

/// What a participant decided for a batch's new commands.
pub struct Effect {
    /// One reply per command, in the commands' order.
    pub replies: Vec<Envelope>,
    /// The writes that carry the decisions out; parts must not be named `outbox` or `inbox`.
    pub writes: Writes,
}

pub async fn handle_batch<'a, F, Fut>(
    txn: &DatabaseTransaction,
    consumer: &str,
    batch: &'a [Envelope],
    effect: F,
) -> Result<Enqueued, HandleError>
where
    F: FnOnce(Vec<&'a Envelope>) -> Fut,
    Fut: Future<Output = Result<Effect, HandleError>>,
{
    let ids: Vec<Uuid> = batch.iter().map(|e| e.message_id).collect();
    let seen = inbox::seen(txn, consumer, &ids).await?;
    let mut outgoing = Vec::new();
    let mut fresh = Vec::with_capacity(batch.len());
    let mut taken = HashSet::with_capacity(batch.len());
    for command in batch {
        let first_copy = taken.insert(command.message_id);
        if let Some(reply) = seen.get(&command.message_id) {
            command.span().in_scope(|| {
                tracing::info!(
                    answered_again = first_copy && reply.is_some(),
                    "duplicate command; no second effect"
                );
            });
            if let (true, Some(reply)) = (first_copy, reply) {
                outgoing.push(reply.clone());
            }
        } else if first_copy {
            fresh.push(command);
        } else {
            command.span().in_scope(|| {
                tracing::info!("command delivered twice in one batch; handled once");
            });
        }
    }

    let Effect {
        replies,
        mut writes,
    } = effect(fresh.clone()).await?;
    if replies.len() != fresh.len() {
        return Err(HandleError::Transient(format!(
            "{} replies for {} commands",
            replies.len(),
            fresh.len()
        )));
    }
    let answered = outgoing.len();
    outgoing.extend(replies.into_iter().map(OutgoingMessage::reply));
    let handled: Vec<Handled> = fresh
        .iter()
        .zip(&outgoing[answered..])
        .map(|(message, reply)| Handled {
            message,
            reply: Some(reply),
        })
        .collect();
    writes
        .add("outbox", outbox::insert_part(&outgoing, None)?)
        .add("inbox", inbox::record_part(consumer, &handled)?);
    let mut counts = writes.execute(txn).await?;
    if counts.get("inbox") != handled.len() as i64 {
        return Err(HandleError::Transient(
            "another delivery of a command in this batch was handled at the same time".into(),
        ));
    }
    Ok(Enqueued(counts.take_ids("outbox")))
}
