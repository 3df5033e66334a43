//! Transactional outbox.
//!
//! A service writes the messages a state change causes with [`enqueue`], on the same transaction
//! as the change. The relay ([`Relay`]) publishes committed rows in id order with publisher
//! confirms, all confirms of a batch in flight at once, and marks the rows sent only after the
//! broker confirmed every one. A crash between publish and mark republishes the batch; consumers'
//! inboxes make that harmless. Rows are claimed `FOR UPDATE SKIP LOCKED`, so several instances of a
//! service can relay from one table without publishing a row twice at the same time.

use std::sync::Arc;
use std::time::Duration;

use lapin::Channel;
use lapin::options::BasicPublishOptions;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, TransactionTrait, Value,
};
use tokio::sync::Notify;

use super::envelope::{self, Envelope, OutgoingMessage};
use crate::configuration::OutboxSettings;
use crate::db::stmt;
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

/// How long a batch may wait for its confirms. A broker that accepts a publish but never
/// confirms it (an unresponsive queue) must not hold the relay, and the rows' locks, forever: the
/// session is restarted instead and the rows are published again.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `message` to the outbox on `db` (pass the business transaction).
pub async fn enqueue(db: &impl ConnectionTrait, message: &OutgoingMessage) -> Result<(), DbErr> {
    let body = serde_json::to_string(&message.envelope)
        .map_err(|e| DbErr::Custom(format!("cannot serialise envelope: {e}")))?;
    db.execute_raw(stmt(
        "INSERT INTO outbox (message_id, exchange, routing_key, message_type, saga_id, body) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        [
            message.envelope.message_id.into(),
            message.exchange.clone().into(),
            message.routing_key.clone().into(),
            message.envelope.message_type.clone().into(),
            message.envelope.saga_id.into(),
            body.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Queues a message already in the outbox to be published again, same id and body: the way a
/// timed-out command is resent so its receiver's inbox recognises it. Returns the message's
/// type, or `None` if there is no such message.
pub async fn resend(
    db: &impl ConnectionTrait,
    message_id: uuid::Uuid,
) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            "INSERT INTO outbox (message_id, exchange, routing_key, message_type, saga_id, body) \
             SELECT message_id, exchange, routing_key, message_type, saga_id, body FROM outbox \
             WHERE id = (SELECT min(id) FROM outbox WHERE message_id = $1) \
             RETURNING message_type",
            [message_id.into()],
        ))
        .await?;
    row.map(|r| r.try_get::<String>("", "message_type"))
        .transpose()
}

/// Messages not yet confirmed by the broker (used by tests and readiness details).
pub async fn pending_count(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(stmt(
            "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL",
            [],
        ))
        .await?;
    row.map_or(Ok(0), |r| r.try_get::<i64>("", "n"))
}

#[derive(Debug, FromQueryResult)]
struct PendingRow {
    id: i64,
    exchange: String,
    routing_key: String,
    body: String,
}

/// Wakes the relay as soon as a transaction that wrote to the outbox commits.
#[derive(Clone, Default, Debug)]
pub struct RelayWakeup(Arc<Notify>);

impl RelayWakeup {
    pub fn notify(&self) {
        self.0.notify_one();
    }
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
    pub async fn run(&self, channel: &Channel, stop: &Shutdown) -> Result<(), RelayError> {
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        loop {
            match self.publish_batch(channel).await {
                // A full batch: there may be more right behind it.
                Ok(sent) if sent == self.settings.batch_size as usize => continue,
                Ok(_) => {}
                // The database being away is no reason to drop the broker connection: wait and
                // try again; the rows are safe where they are.
                Err(RelayError::Database(error)) => {
                    tracing::warn!(%error, "outbox relay cannot read the database; retrying");
                }
                Err(error) => return Err(error),
            }
            if stop.is_triggered() {
                return Ok(());
            }
            tokio::select! {
                () = self.wakeup.0.notified() => {}
                () = tokio::time::sleep(poll) => {}
                () = stop.wait() => {}
            }
        }
    }

    /// Publishes one batch and returns how many messages it sent.
    pub async fn publish_batch(&self, channel: &Channel) -> Result<usize, RelayError> {
        let txn = self.db.begin().await?;
        let rows = PendingRow::find_by_statement(stmt(
            "SELECT id, exchange, routing_key, body FROM outbox WHERE published_at IS NULL \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            [Value::from(i64::from(self.settings.batch_size))],
        ))
        .all(&txn)
        .await?;
        if rows.is_empty() {
            txn.commit().await?;
            return Ok(0);
        }

        // Publish the whole batch first, then collect the confirms: one round trip per batch,
        // not per message.
        let mut confirms = Vec::with_capacity(rows.len());
        for row in &rows {
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

        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        txn.execute_raw(stmt(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1)",
            [Value::from(ids)],
        ))
        .await?;
        txn.commit().await?;
        tracing::debug!(count = rows.len(), "outbox batch published");
        Ok(rows.len())
    }
}
