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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Compensating: `payment.refund` sent; the order will fail for the given reason.
    RefundingPayment(FailureReason),
    Completed,
    Failed(FailureReason),
}

/// Replies from the participants, as facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SagaEvent {
    PaymentCharged,
    PaymentDeclined,
    PaymentRefunded,
    StockReserved,
    StockReservationFailed,
}

/// What the saga asks for; each becomes one outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SagaCommand {
    ChargePayment,
    ReserveStock,
    RefundPayment,
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

        // During AwaitingStock
        (S::AwaitingStock, On::PaymentCharged) => ignore(), // duplicate charge reply
        (S::AwaitingStock, On::PaymentDeclined) => invalid(),
        (S::AwaitingStock, On::PaymentRefunded) => invalid(),
        (S::AwaitingStock, On::StockReserved) => go(S::Completed, vec![Do::PublishOrderCompleted]),
        (S::AwaitingStock, On::StockReservationFailed) => {
            go(S::RefundingPayment(OutOfStock), vec![Do::RefundPayment])
        }

        // During RefundingPayment
        (S::RefundingPayment(_), On::PaymentCharged) => ignore(), // late duplicate
        (S::RefundingPayment(_), On::PaymentDeclined) => invalid(),
        (S::RefundingPayment(reason), On::PaymentRefunded) => {
            go(S::Failed(reason), vec![Do::PublishOrderFailed(reason)])
        }
        (S::RefundingPayment(_), On::StockReserved) => invalid(),
        (S::RefundingPayment(_), On::StockReservationFailed) => ignore(), // duplicate

        // Completed: only duplicates of the replies that got it here can arrive.
        (S::Completed, On::PaymentCharged) => ignore(),
        (S::Completed, On::StockReserved) => ignore(),
        (S::Completed, On::PaymentDeclined) => invalid(),
        (S::Completed, On::PaymentRefunded) => invalid(),
        (S::Completed, On::StockReservationFailed) => invalid(),

        // Failed because the payment was declined: only the decline can repeat.
        (S::Failed(PaymentDeclined), On::PaymentDeclined) => ignore(),
        (S::Failed(PaymentDeclined), On::PaymentCharged) => invalid(),
        (S::Failed(PaymentDeclined), On::PaymentRefunded) => invalid(),
        (S::Failed(PaymentDeclined), On::StockReserved) => invalid(),
        (S::Failed(PaymentDeclined), On::StockReservationFailed) => invalid(),

        // Failed out of stock after a refund: duplicates of the charge, failure and refund.
        (S::Failed(OutOfStock), On::PaymentCharged) => ignore(),
        (S::Failed(OutOfStock), On::StockReservationFailed) => ignore(),
        (S::Failed(OutOfStock), On::PaymentRefunded) => ignore(),
        (S::Failed(OutOfStock), On::PaymentDeclined) => invalid(),
        (S::Failed(OutOfStock), On::StockReserved) => invalid(),

        // Failed on a deadline: any reply may still be in flight and arrive late; none of them
        // reopens the order (compensation already ran).
        (S::Failed(TimedOut), On::PaymentCharged) => ignore(),
        (S::Failed(TimedOut), On::PaymentDeclined) => ignore(),
        (S::Failed(TimedOut), On::PaymentRefunded) => ignore(),
        (S::Failed(TimedOut), On::StockReserved) => ignore(),
        (S::Failed(TimedOut), On::StockReservationFailed) => ignore(),
    }
}

impl SagaState {
    /// The persisted name (`saga_state` column).
    pub fn name(self) -> &'static str {
        match self {
            Self::AwaitingPayment => "AWAITING_PAYMENT",
            Self::AwaitingStock => "AWAITING_STOCK",
            Self::RefundingPayment(_) => "REFUNDING_PAYMENT",
            Self::Completed => "COMPLETED",
            Self::Failed(_) => "FAILED",
        }
    }

    /// The reason carried by a compensating or failed saga.
    pub fn failure_reason(self) -> Option<FailureReason> {
        match self {
            Self::RefundingPayment(reason) | Self::Failed(reason) => Some(reason),
            Self::AwaitingPayment | Self::AwaitingStock | Self::Completed => None,
        }
    }

    /// Rebuilds a state from its persisted columns.
    pub fn from_columns(name: &str, reason: Option<&str>) -> Option<Self> {
        let reason = reason.and_then(FailureReason::parse);
        match name {
            "AWAITING_PAYMENT" => Some(Self::AwaitingPayment),
            "AWAITING_STOCK" => Some(Self::AwaitingStock),
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
        check(
            S::AwaitingPayment,
            On::PaymentCharged,
            Go(S::AwaitingStock, vec![Do::ReserveStock]),
        );
        check(
            S::AwaitingPayment,
            On::PaymentDeclined,
            Go(
                S::Failed(PaymentDeclined),
                vec![Do::PublishOrderFailed(PaymentDeclined)],
            ),
        );
        check(S::AwaitingPayment, On::PaymentRefunded, Invalid);
        check(S::AwaitingPayment, On::StockReserved, Invalid);
        check(S::AwaitingPayment, On::StockReservationFailed, Invalid);
    }

    #[test]
    fn during_awaiting_stock() {
        check(S::AwaitingStock, On::PaymentCharged, Ignore);
        check(S::AwaitingStock, On::PaymentDeclined, Invalid);
        check(S::AwaitingStock, On::PaymentRefunded, Invalid);
        check(
            S::AwaitingStock,
            On::StockReserved,
            Go(S::Completed, vec![Do::PublishOrderCompleted]),
        );
        check(
            S::AwaitingStock,
            On::StockReservationFailed,
            Go(S::RefundingPayment(OutOfStock), vec![Do::RefundPayment]),
        );
    }

    #[test]
    fn during_refunding_payment() {
        for reason in [OutOfStock, TimedOut] {
            let state = S::RefundingPayment(reason);
            check(state, On::PaymentCharged, Ignore);
            check(state, On::PaymentDeclined, Invalid);
            check(
                state,
                On::PaymentRefunded,
                Go(S::Failed(reason), vec![Do::PublishOrderFailed(reason)]),
            );
            check(state, On::StockReserved, Invalid);
            check(state, On::StockReservationFailed, Ignore);
        }
    }

    #[test]
    fn once_completed() {
        check(S::Completed, On::PaymentCharged, Ignore);
        check(S::Completed, On::StockReserved, Ignore);
        check(S::Completed, On::PaymentDeclined, Invalid);
        check(S::Completed, On::PaymentRefunded, Invalid);
        check(S::Completed, On::StockReservationFailed, Invalid);
    }

    #[test]
    fn once_failed_on_a_declined_payment() {
        let state = S::Failed(PaymentDeclined);
        check(state, On::PaymentDeclined, Ignore);
        check(state, On::PaymentCharged, Invalid);
        check(state, On::PaymentRefunded, Invalid);
        check(state, On::StockReserved, Invalid);
        check(state, On::StockReservationFailed, Invalid);
    }

    #[test]
    fn once_failed_out_of_stock() {
        let state = S::Failed(OutOfStock);
        check(state, On::PaymentCharged, Ignore);
        check(state, On::StockReservationFailed, Ignore);
        check(state, On::PaymentRefunded, Ignore);
        check(state, On::PaymentDeclined, Invalid);
        check(state, On::StockReserved, Invalid);
    }

    #[test]
    fn once_timed_out_late_replies_change_nothing() {
        let state = S::Failed(TimedOut);
        for event in [
            On::PaymentCharged,
            On::PaymentDeclined,
            On::PaymentRefunded,
            On::StockReserved,
            On::StockReservationFailed,
        ] {
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
            for event in [
                On::PaymentCharged,
                On::PaymentDeclined,
                On::PaymentRefunded,
                On::StockReserved,
                On::StockReservationFailed,
            ] {
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
            S::RefundingPayment(OutOfStock),
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
