//! The `inventory.commands` consumer.

use sea_orm::DatabaseConnection;

use saga_common::contracts::{self, command, reply};
use saga_common::messaging::participant;
use saga_common::messaging::{Envelope, HandleError, MessageHandler};

use crate::reservations::{self, ReserveOutcome, StockRequest};

/// Inbox consumer name.
pub const CONSUMER: &str = "inventory";

pub struct InventoryCommands {
    pub db: DatabaseConnection,
}

impl MessageHandler for InventoryCommands {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        match envelope.message_type.as_str() {
            command::RESERVE_STOCK => self.reserve(envelope).await,
            command::RELEASE_STOCK => self.release(envelope).await,
            other => Err(HandleError::unknown_type(other)),
        }
    }
}

impl InventoryCommands {
    async fn reserve(&self, envelope: Envelope) -> Result<(), HandleError> {
        let command: contracts::ReserveStock =
            envelope.payload().map_err(HandleError::invalid_payload)?;
        let request = StockRequest::parse(command, envelope.saga_id)
            .map_err(|error| HandleError::permanent("invalid_payload", error))?;
        let Some(txn) = participant::begin(&self.db, CONSUMER, &envelope).await? else {
            return Ok(());
        };
        let outcome = reservations::reserve(&txn, &request).await?;
        tracing::info!(?outcome, lines = request.lines().len(), "reserve handled");
        let order_id = request.order_id();
        let answer = match outcome {
            ReserveOutcome::Reserved => envelope.reply(
                reply::STOCK_RESERVED,
                &contracts::StockReserved { order_id },
            ),
            ReserveOutcome::Rejected { reason } => envelope.reply(
                reply::STOCK_RESERVATION_FAILED,
                &contracts::StockReservationFailed { order_id, reason },
            ),
        }
        .map_err(HandleError::invalid_payload)?;
        participant::finish(txn, CONSUMER, &envelope, answer).await
    }

    async fn release(&self, envelope: Envelope) -> Result<(), HandleError> {
        let command: contracts::ReleaseStock =
            envelope.payload().map_err(HandleError::invalid_payload)?;
        if command.order_id != envelope.saga_id {
            return Err(HandleError::permanent(
                "invalid_payload",
                "order_id must equal saga_id",
            ));
        }
        let Some(txn) = participant::begin(&self.db, CONSUMER, &envelope).await? else {
            return Ok(());
        };
        let outcome = reservations::release(&txn, command.order_id).await?;
        tracing::info!(?outcome, "release handled");
        let answer = envelope
            .reply(
                reply::STOCK_RELEASED,
                &contracts::StockReleased {
                    order_id: command.order_id,
                },
            )
            .map_err(HandleError::invalid_payload)?;
        participant::finish(txn, CONSUMER, &envelope, answer).await
    }
}
