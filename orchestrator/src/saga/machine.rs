//! The order saga as a pure function: `(state, event) -> (state, commands)`.
//!
//! Read it as a table: *during* this state, *when* this event arrives, *send* these commands and
//! *go to* that state. The match is exhaustive with no catch-all arm, so adding a state or an
//! event does not compile until every cell is decided. Three kinds of cell:
//! - a transition (new state, commands to send);
//! - an ignored message: a duplicate or late reply that changes nothing (`Ok` with the same state
//!   and no commands) — at-least-once delivery makes these normal, not errors;
//! - an [`InvalidTransition`]: a reply that contradicts what the saga knows (a decline after a
//!   charge, a reservation after it failed). It is dead-lettered for a human to look at.

use std::fmt;

/// Why an order failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    PaymentDeclined,
    OutOfStock,
    TimedOut,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentDeclined => "payment_declined",
            Self::OutOfStock => "out_of_stock",
            Self::TimedOut => "timed_out",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::PaymentDeclined, Self::OutOfStock, Self::TimedOut]
            .into_iter()
            .find(|r| r.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SagaState {
    /// `payment.charge` sent; waiting for charged or declined.
    AwaitingPayment,
    /// Paid; `inventory.reserve` sent.
    AwaitingStock,
    /// Compensating: `inventory.release` sent (the reservation may have happened); a refund
    /// follows. Only a deadline leads here.
    ReleasingStock(FailureReason),
    /// Compensating: `payment.refund` sent; the order will fail for the given reason.
    RefundingPayment(FailureReason),
    Completed,
    Failed(FailureReason),
}

/// What can happen to a saga, as facts: a participant's reply, or a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SagaEvent {
    PaymentCharged,
    PaymentDeclined,
    PaymentRefunded,
    StockReserved,
    StockReservationFailed,
    StockReleased,
    /// The state's deadline passed and resends are left (or an operator asked for a retry).
    DeadlinePassed,
    /// The deadline passed with every resend used (or an operator asked to compensate).
    ResendsExhausted,
}

/// What the saga asks for; each becomes one outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SagaCommand {
    ChargePayment,
    ReserveStock,
    RefundPayment,
    ReleaseStock,
    /// Send the command the saga waits on again, with its original message id, so the
    /// participant's inbox recognises it and answers with the reply it recorded.
    ResendPending,
    PublishOrderCompleted,
    PublishOrderFailed(FailureReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event {event:?} is not possible in state {state:?}")]
pub struct InvalidTransition {
    pub state: SagaState,
    pub event: SagaEvent,
}

pub type Transition = (SagaState, Vec<SagaCommand>);

/// Where every saga starts: an accepted order, charging the customer.
pub fn start() -> Transition {
    (SagaState::AwaitingPayment, vec![SagaCommand::ChargePayment])
}

pub fn transition(state: SagaState, event: SagaEvent) -> Result<Transition, InvalidTransition> {
    use FailureReason::{OutOfStock, PaymentDeclined, TimedOut};
    use SagaCommand as Do;
    use SagaEvent as On;
    use SagaState as S;

    let go = |to: SagaState, commands: Vec<SagaCommand>| Ok((to, commands));
    let ignore = || Ok((state, Vec::new()));
    let invalid = || Err(InvalidTransition { state, event });

    match (state, event) {
        // During AwaitingPayment
        (S::AwaitingPayment, On::PaymentCharged) => go(S::AwaitingStock, vec![Do::ReserveStock]),
        (S::AwaitingPayment, On::PaymentDeclined) => go(
            S::Failed(PaymentDeclined),
            vec![Do::PublishOrderFailed(PaymentDeclined)],
        ),
        (S::AwaitingPayment, On::PaymentRefunded) => invalid(),
        (S::AwaitingPayment, On::StockReserved) => invalid(),
        (S::AwaitingPayment, On::StockReservationFailed) => invalid(),
        (S::AwaitingPayment, On::StockReleased) => invalid(),
        (S::AwaitingPayment, On::DeadlinePassed) => go(state, vec![Do::ResendPending]),
        // The charge may have happened with its reply lost: refunding is safe either way.
        (S::AwaitingPayment, On::ResendsExhausted) => {
            go(S::RefundingPayment(TimedOut), vec![Do::RefundPayment])
        }

        // During AwaitingStock
        (S::AwaitingStock, On::PaymentCharged) => ignore(), // duplicate charge reply
        (S::AwaitingStock, On::PaymentDeclined) => invalid(),
        (S::AwaitingStock, On::PaymentRefunded) => invalid(),
        (S::AwaitingStock, On::StockReserved) => go(S::Completed, vec![Do::PublishOrderCompleted]),
        (S::AwaitingStock, On::StockReservationFailed) => {
            go(S::RefundingPayment(OutOfStock), vec![Do::RefundPayment])
        }
        (S::AwaitingStock, On::StockReleased) => invalid(),
        (S::AwaitingStock, On::DeadlinePassed) => go(state, vec![Do::ResendPending]),
        // The reservation may have happened: release it, then refund.
        (S::AwaitingStock, On::ResendsExhausted) => {
            go(S::ReleasingStock(TimedOut), vec![Do::ReleaseStock])
        }

        // During ReleasingStock (compensating after a deadline)
        (S::ReleasingStock(_), On::PaymentCharged) => ignore(), // late duplicate
        (S::ReleasingStock(_), On::PaymentDeclined) => invalid(),
        (S::ReleasingStock(_), On::PaymentRefunded) => invalid(),
        (S::ReleasingStock(_), On::StockReserved) => ignore(), // late; the release undoes it
        (S::ReleasingStock(_), On::StockReservationFailed) => ignore(), // late
        (S::ReleasingStock(reason), On::StockReleased) => {
            go(S::RefundingPayment(reason), vec![Do::RefundPayment])
        }
        // Compensation never gives up: it keeps asking until the participant answers.
        (S::ReleasingStock(_), On::DeadlinePassed | On::ResendsExhausted) => {
            go(state, vec![Do::ResendPending])
        }

        // During RefundingPayment. After a deadline, any reply of the abandoned forward path
        // may still arrive late; out of stock, only duplicates can.
        (S::RefundingPayment(_), On::PaymentCharged) => ignore(), // late duplicate
        (S::RefundingPayment(TimedOut), On::PaymentDeclined) => ignore(), // late, or cancelled
        (S::RefundingPayment(TimedOut), On::StockReserved) => ignore(), // released already
        (S::RefundingPayment(TimedOut), On::StockReleased) => ignore(), // duplicate
        (S::RefundingPayment(PaymentDeclined | OutOfStock), On::PaymentDeclined) => invalid(),
        (S::RefundingPayment(PaymentDeclined | OutOfStock), On::StockReserved) => invalid(),
        (S::RefundingPayment(PaymentDeclined | OutOfStock), On::StockReleased) => invalid(),
        (S::RefundingPayment(reason), On::PaymentRefunded) => {
            go(S::Failed(reason), vec![Do::PublishOrderFailed(reason)])
        }
        (S::RefundingPayment(_), On::StockReservationFailed) => ignore(), // duplicate or late
        (S::RefundingPayment(_), On::DeadlinePassed | On::ResendsExhausted) => {
            go(state, vec![Do::ResendPending])
        }

        // Completed: only duplicates of the replies that got it here can arrive.
        (S::Completed, On::PaymentCharged) => ignore(),
        (S::Completed, On::StockReserved) => ignore(),
        (S::Completed, On::PaymentDeclined) => invalid(),
        (S::Completed, On::PaymentRefunded) => invalid(),
        (S::Completed, On::StockReservationFailed) => invalid(),
        (S::Completed, On::StockReleased) => invalid(),
        // A final saga has no deadline; a stale sweep or operator request changes nothing.
        (S::Completed, On::DeadlinePassed | On::ResendsExhausted) => ignore(),

        // Failed because the payment was declined: only the decline can repeat.
        (S::Failed(PaymentDeclined), On::PaymentDeclined) => ignore(),
        (S::Failed(PaymentDeclined), On::PaymentCharged) => invalid(),
        (S::Failed(PaymentDeclined), On::PaymentRefunded) => invalid(),
        (S::Failed(PaymentDeclined), On::StockReserved) => invalid(),
        (S::Failed(PaymentDeclined), On::StockReservationFailed) => invalid(),
        (S::Failed(PaymentDeclined), On::StockReleased) => invalid(),

        // Failed out of stock after a refund: duplicates of the charge, failure and refund.
        (S::Failed(OutOfStock), On::PaymentCharged) => ignore(),
        (S::Failed(OutOfStock), On::StockReservationFailed) => ignore(),
        (S::Failed(OutOfStock), On::PaymentRefunded) => ignore(),
        (S::Failed(OutOfStock), On::PaymentDeclined) => invalid(),
        (S::Failed(OutOfStock), On::StockReserved) => invalid(),
        (S::Failed(OutOfStock), On::StockReleased) => invalid(),

        // Failed on a deadline: any reply may still be in flight and arrive late; none of them
        // reopens the order (compensation already ran).
        (S::Failed(TimedOut), On::PaymentCharged) => ignore(),
        (S::Failed(TimedOut), On::PaymentDeclined) => ignore(),
        (S::Failed(TimedOut), On::PaymentRefunded) => ignore(),
        (S::Failed(TimedOut), On::StockReserved) => ignore(),
        (S::Failed(TimedOut), On::StockReservationFailed) => ignore(),
        (S::Failed(TimedOut), On::StockReleased) => ignore(),

        (S::Failed(_), On::DeadlinePassed | On::ResendsExhausted) => ignore(),
    }
}

impl SagaState {
    /// The persisted name (`saga_state` column).
    pub fn name(self) -> &'static str {
        match self {
            Self::AwaitingPayment => "AWAITING_PAYMENT",
            Self::AwaitingStock => "AWAITING_STOCK",
            Self::ReleasingStock(_) => "RELEASING_STOCK",
            Self::RefundingPayment(_) => "REFUNDING_PAYMENT",
            Self::Completed => "COMPLETED",
            Self::Failed(_) => "FAILED",
        }
    }

    /// The reason carried by a compensating or failed saga.
    pub fn failure_reason(self) -> Option<FailureReason> {
        match self {
            Self::ReleasingStock(reason)
            | Self::RefundingPayment(reason)
            | Self::Failed(reason) => Some(reason),
            Self::AwaitingPayment | Self::AwaitingStock | Self::Completed => None,
        }
    }

    /// Rebuilds a state from its persisted columns.
    pub fn from_columns(name: &str, reason: Option<&str>) -> Option<Self> {
        let reason = reason.and_then(FailureReason::parse);
        match name {
            "AWAITING_PAYMENT" => Some(Self::AwaitingPayment),
            "AWAITING_STOCK" => Some(Self::AwaitingStock),
            "RELEASING_STOCK" => reason.map(Self::ReleasingStock),
            "REFUNDING_PAYMENT" => reason.map(Self::RefundingPayment),
            "COMPLETED" => Some(Self::Completed),
            "FAILED" => reason.map(Self::Failed),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed(_))
    }
}

impl fmt::Display for SagaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::FailureReason::{OutOfStock, PaymentDeclined, TimedOut};
    use super::SagaCommand as Do;
    use super::SagaEvent as On;
    use super::SagaState as S;
    use super::*;

    /// Expected outcome of one cell.
    #[derive(Debug)]
    enum Cell {
        Go(SagaState, Vec<SagaCommand>),
        Ignore,
        Invalid,
    }
    use Cell::{Go, Ignore, Invalid};

    const ALL_EVENTS: [SagaEvent; 8] = [
        On::PaymentCharged,
        On::PaymentDeclined,
        On::PaymentRefunded,
        On::StockReserved,
        On::StockReservationFailed,
        On::StockReleased,
        On::DeadlinePassed,
        On::ResendsExhausted,
    ];

    fn check(state: SagaState, event: SagaEvent, expected: Cell) {
        let actual = transition(state, event);
        match expected {
            Go(to, commands) => assert_eq!(actual, Ok((to, commands)), "{state:?} x {event:?}"),
            Ignore => assert_eq!(actual, Ok((state, vec![])), "{state:?} x {event:?}"),
            Invalid => assert_eq!(
                actual,
                Err(InvalidTransition { state, event }),
                "{state:?} x {event:?}"
            ),
        }
    }

    #[test]
    fn a_new_saga_awaits_payment_and_charges() {
        assert_eq!(start(), (S::AwaitingPayment, vec![Do::ChargePayment]));
    }

    #[test]
    fn during_awaiting_payment() {
        let state = S::AwaitingPayment;
        check(
            state,
            On::PaymentCharged,
            Go(S::AwaitingStock, vec![Do::ReserveStock]),
        );
        check(
            state,
            On::PaymentDeclined,
            Go(
                S::Failed(PaymentDeclined),
                vec![Do::PublishOrderFailed(PaymentDeclined)],
            ),
        );
        check(state, On::PaymentRefunded, Invalid);
        check(state, On::StockReserved, Invalid);
        check(state, On::StockReservationFailed, Invalid);
        check(state, On::StockReleased, Invalid);
        check(
            state,
            On::DeadlinePassed,
            Go(state, vec![Do::ResendPending]),
        );
        check(
            state,
            On::ResendsExhausted,
            Go(S::RefundingPayment(TimedOut), vec![Do::RefundPayment]),
        );
    }

    #[test]
    fn during_awaiting_stock() {
        let state = S::AwaitingStock;
        check(state, On::PaymentCharged, Ignore);
        check(state, On::PaymentDeclined, Invalid);
        check(state, On::PaymentRefunded, Invalid);
        check(
            state,
            On::StockReserved,
            Go(S::Completed, vec![Do::PublishOrderCompleted]),
        );
        check(
            state,
            On::StockReservationFailed,
            Go(S::RefundingPayment(OutOfStock), vec![Do::RefundPayment]),
        );
        check(state, On::StockReleased, Invalid);
        check(
            state,
            On::DeadlinePassed,
            Go(state, vec![Do::ResendPending]),
        );
        check(
            state,
            On::ResendsExhausted,
            Go(S::ReleasingStock(TimedOut), vec![Do::ReleaseStock]),
        );
    }

    #[test]
    fn during_releasing_stock() {
        let state = S::ReleasingStock(TimedOut);
        check(state, On::PaymentCharged, Ignore);
        check(state, On::PaymentDeclined, Invalid);
        check(state, On::PaymentRefunded, Invalid);
        check(state, On::StockReserved, Ignore);
        check(state, On::StockReservationFailed, Ignore);
        check(
            state,
            On::StockReleased,
            Go(S::RefundingPayment(TimedOut), vec![Do::RefundPayment]),
        );
        check(
            state,
            On::DeadlinePassed,
            Go(state, vec![Do::ResendPending]),
        );
        check(
            state,
            On::ResendsExhausted,
            Go(state, vec![Do::ResendPending]),
        );
    }

    #[test]
    fn during_refunding_payment_out_of_stock() {
        let state = S::RefundingPayment(OutOfStock);
        check(state, On::PaymentCharged, Ignore);
        check(state, On::PaymentDeclined, Invalid);
        check(
            state,
            On::PaymentRefunded,
            Go(
                S::Failed(OutOfStock),
                vec![Do::PublishOrderFailed(OutOfStock)],
            ),
        );
        check(state, On::StockReserved, Invalid);
        check(state, On::StockReservationFailed, Ignore);
        check(state, On::StockReleased, Invalid);
        check(
            state,
            On::DeadlinePassed,
            Go(state, vec![Do::ResendPending]),
        );
        check(
            state,
            On::ResendsExhausted,
            Go(state, vec![Do::ResendPending]),
        );
    }

    #[test]
    fn during_refunding_payment_after_a_deadline() {
        let state = S::RefundingPayment(TimedOut);
        check(state, On::PaymentCharged, Ignore);
        check(state, On::PaymentDeclined, Ignore);
        check(
            state,
            On::PaymentRefunded,
            Go(S::Failed(TimedOut), vec![Do::PublishOrderFailed(TimedOut)]),
        );
        check(state, On::StockReserved, Ignore);
        check(state, On::StockReservationFailed, Ignore);
        check(state, On::StockReleased, Ignore);
        check(
            state,
            On::DeadlinePassed,
            Go(state, vec![Do::ResendPending]),
        );
        check(
            state,
            On::ResendsExhausted,
            Go(state, vec![Do::ResendPending]),
        );
    }

    #[test]
    fn once_completed() {
        let state = S::Completed;
        check(state, On::PaymentCharged, Ignore);
        check(state, On::StockReserved, Ignore);
        check(state, On::PaymentDeclined, Invalid);
        check(state, On::PaymentRefunded, Invalid);
        check(state, On::StockReservationFailed, Invalid);
        check(state, On::StockReleased, Invalid);
        check(state, On::DeadlinePassed, Ignore);
        check(state, On::ResendsExhausted, Ignore);
    }

    #[test]
    fn once_failed_on_a_declined_payment() {
        let state = S::Failed(PaymentDeclined);
        check(state, On::PaymentDeclined, Ignore);
        check(state, On::PaymentCharged, Invalid);
        check(state, On::PaymentRefunded, Invalid);
        check(state, On::StockReserved, Invalid);
        check(state, On::StockReservationFailed, Invalid);
        check(state, On::StockReleased, Invalid);
        check(state, On::DeadlinePassed, Ignore);
        check(state, On::ResendsExhausted, Ignore);
    }

    #[test]
    fn once_failed_out_of_stock() {
        let state = S::Failed(OutOfStock);
        check(state, On::PaymentCharged, Ignore);
        check(state, On::StockReservationFailed, Ignore);
        check(state, On::PaymentRefunded, Ignore);
        check(state, On::PaymentDeclined, Invalid);
        check(state, On::StockReserved, Invalid);
        check(state, On::StockReleased, Invalid);
        check(state, On::DeadlinePassed, Ignore);
        check(state, On::ResendsExhausted, Ignore);
    }

    #[test]
    fn once_timed_out_late_replies_change_nothing() {
        let state = S::Failed(TimedOut);
        for event in ALL_EVENTS {
            check(state, event, Ignore);
        }
    }

    #[test]
    fn final_states_never_send_commands_again() {
        let finals = [
            S::Completed,
            S::Failed(PaymentDeclined),
            S::Failed(OutOfStock),
            S::Failed(TimedOut),
        ];
        for state in finals {
            for event in ALL_EVENTS {
                if let Ok((to, commands)) = transition(state, event) {
                    assert_eq!(to, state);
                    assert!(commands.is_empty());
                }
            }
        }
    }

    #[test]
    fn states_survive_their_persisted_form() {
        for state in [
            S::AwaitingPayment,
            S::AwaitingStock,
            S::ReleasingStock(TimedOut),
            S::RefundingPayment(OutOfStock),
            S::RefundingPayment(TimedOut),
            S::Completed,
            S::Failed(PaymentDeclined),
            S::Failed(OutOfStock),
            S::Failed(TimedOut),
        ] {
            let reason = state.failure_reason().map(FailureReason::as_str);
            assert_eq!(SagaState::from_columns(state.name(), reason), Some(state));
        }
        assert_eq!(SagaState::from_columns("FAILED", None), None);
        assert_eq!(SagaState::from_columns("NONSENSE", None), None);
    }
}
