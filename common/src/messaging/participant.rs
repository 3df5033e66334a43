//! The shape of every participant command handler, so both participants get it right once:
//!
//! 1. [`begin`]: open a transaction and claim the message in the inbox. A duplicate is answered
//!    again with the reply recorded the first time (same message id, through the outbox) and
//!    committed right there; the caller gets `None` and is done.
//! 2. The caller applies its effect on the transaction and builds its reply.
//! 3. [`finish`]: put the reply in the outbox, record it in the inbox, commit.

use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use super::consumer::HandleError;
use super::envelope::{Envelope, OutgoingMessage};
use super::inbox::{self, Claim};
use super::outbox;

pub async fn begin(
    db: &DatabaseConnection,
    consumer: &str,
    envelope: &Envelope,
) -> Result<Option<DatabaseTransaction>, HandleError> {
    let txn = db.begin().await?;
    match inbox::claim(&txn, consumer, envelope).await? {
        Claim::First => Ok(Some(txn)),
        Claim::Duplicate { reply } => {
            tracing::info!(
                answered_again = reply.is_some(),
                "duplicate command; no second effect"
            );
            if let Some(reply) = reply {
                outbox::enqueue(&txn, &reply).await?;
            }
            txn.commit().await?;
            Ok(None)
        }
    }
}

pub async fn finish(
    txn: DatabaseTransaction,
    consumer: &str,
    command: &Envelope,
    reply: Envelope,
) -> Result<(), HandleError> {
    let reply = OutgoingMessage::reply(reply);
    outbox::enqueue(&txn, &reply).await?;
    inbox::record_reply(&txn, consumer, command.message_id, &reply).await?;
    txn.commit().await?;
    Ok(())
}
