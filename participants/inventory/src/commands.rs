//! The `inventory.commands` consumer: a batch of reserves and releases on one transaction.

use saga_common::contracts::{self, InventoryCommand};
use saga_common::db::{Loaded, Reads, Writes};
use saga_common::messaging::participant::{Note, Participant};
use saga_common::messaging::{Envelope, HandleError};

use crate::reservations::{self, ReserveOutcome, StockCommand, StockOutcome, StockRequest};

/// Inbox consumer name.
pub const CONSUMER: &str = "inventory";

pub struct InventoryCommands;

impl Participant for InventoryCommands {
    type Command = StockCommand;
    type Outcome = StockOutcome;
    const CONSUMER: &'static str = CONSUMER;

    fn parse(envelope: &Envelope) -> Result<StockCommand, HandleError> {
        parse(envelope)
    }

    fn read_for(reads: &mut Reads, commands: &[StockCommand]) {
        reservations::read_for(reads, commands);
    }

    fn decide(
        loaded: &mut Loaded,
        commands: &[&StockCommand],
    ) -> Result<(Vec<StockOutcome>, Writes), HandleError> {
        let decided = reservations::decide(loaded, commands)?;
        Ok((decided.outcomes, decided.writes))
    }

    fn answer(command: &Envelope, outcome: StockOutcome) -> Result<Envelope, HandleError> {
        answer(command, outcome)
    }

    fn events(command: &Envelope, outcome: &StockOutcome) -> Result<Vec<Envelope>, HandleError> {
        events(command, outcome)
    }

    fn after_commit(command: &Envelope, outcome: &StockOutcome) -> Option<Note> {
        Some(crate::facts::note(command, outcome))
    }
}

/// Checks a command: its payload fits its type and it is for its own saga; a reservation has
/// lines, each of a positive quantity.
fn parse(envelope: &Envelope) -> Result<StockCommand, HandleError> {
    match envelope.decode::<InventoryCommand>()? {
        InventoryCommand::Reserve(reserve) => StockRequest::parse(reserve, envelope.saga_id)
            .map(StockCommand::Reserve)
            .map_err(|error| HandleError::permanent("invalid_payload", error)),
        InventoryCommand::Release(release) => {
            if release.order_id != envelope.saga_id {
                return Err(HandleError::permanent(
                    "invalid_payload",
                    "order_id must equal saga_id",
                ));
            }
            Ok(StockCommand::Release {
                order_id: release.order_id,
            })
        }
    }
}

fn answer(command: &Envelope, outcome: StockOutcome) -> Result<Envelope, HandleError> {
    // The span records its fields whether or not a line is written: made only when one is.
    if tracing::enabled!(tracing::Level::DEBUG) {
        command
            .span()
            .in_scope(|| tracing::debug!(?outcome, "inventory command handled"));
    }
    let order_id = command.saga_id;
    match outcome {
        StockOutcome::Reserve(ReserveOutcome::Reserved { .. }) => {
            command.reply(&contracts::StockReserved { order_id })
        }
        StockOutcome::Reserve(ReserveOutcome::Rejected { reason }) => {
            command.reply(&contracts::StockReservationFailed { order_id, reason })
        }
        StockOutcome::Release(_) => command.reply(&contracts::StockReleased { order_id }),
    }
    .map_err(HandleError::invalid_payload)
}

/// The `inventory.low_stock` alerts of a reservation: caused by its command (same order,
/// correlation and trace, so the alert can be followed back to the order that took the stock).
fn events(command: &Envelope, outcome: &StockOutcome) -> Result<Vec<Envelope>, HandleError> {
    let StockOutcome::Reserve(ReserveOutcome::Reserved { low_stock }) = outcome else {
        return Ok(Vec::new());
    };
    low_stock
        .iter()
        .map(|alert| command.reply(alert).map_err(HandleError::invalid_payload))
        .collect()
}
