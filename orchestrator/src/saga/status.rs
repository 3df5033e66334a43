//! How a saga's state reads in the API: the coarse [`OrderStatus`] clients see, and the
//! [`StateName`] operators and timelines show. Both are views of [`SagaState`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::machine::SagaState;

/// Order status as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Completed,
    Failed,
}

impl OrderStatus {
    pub fn of(state: SagaState) -> Self {
        match state {
            SagaState::AwaitingPayment
            | SagaState::AwaitingStock
            | SagaState::ReleasingStock(_)
            | SagaState::RefundingPayment(_) => Self::Pending,
            SagaState::Completed => Self::Completed,
            SagaState::Failed(_) => Self::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Pending, Self::Completed, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// A saga state by name, without its reason: what the `saga_state` column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateName {
    AwaitingPayment,
    AwaitingStock,
    ReleasingStock,
    RefundingPayment,
    Completed,
    Failed,
}

impl From<SagaState> for StateName {
    fn from(state: SagaState) -> Self {
        match state {
            SagaState::AwaitingPayment => Self::AwaitingPayment,
            SagaState::AwaitingStock => Self::AwaitingStock,
            SagaState::ReleasingStock(_) => Self::ReleasingStock,
            SagaState::RefundingPayment(_) => Self::RefundingPayment,
            SagaState::Completed => Self::Completed,
            SagaState::Failed(_) => Self::Failed,
        }
    }
}

impl StateName {
    /// The name as stored; one spelling, [`SagaState::name`]'s.
    pub fn parse(name: &str) -> Option<Self> {
        use super::machine::FailureReason::TimedOut;
        // Any reason will do: the name does not depend on it.
        SagaState::from_columns(name, Some(TimedOut.as_str())).map(Self::from)
    }

    /// The name as stored in `saga_state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingPayment => "AWAITING_PAYMENT",
            Self::AwaitingStock => "AWAITING_STOCK",
            Self::ReleasingStock => "RELEASING_STOCK",
            Self::RefundingPayment => "REFUNDING_PAYMENT",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    /// The status every saga in this state has.
    pub fn status(self) -> OrderStatus {
        match self {
            Self::Completed => OrderStatus::Completed,
            Self::Failed => OrderStatus::Failed,
            _ => OrderStatus::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::machine::FailureReason::OutOfStock;

    #[test]
    fn a_state_name_serialises_as_the_stored_name() {
        for state in [
            SagaState::AwaitingPayment,
            SagaState::AwaitingStock,
            SagaState::ReleasingStock(OutOfStock),
            SagaState::RefundingPayment(OutOfStock),
            SagaState::Completed,
            SagaState::Failed(OutOfStock),
        ] {
            let name = StateName::from(state);
            assert_eq!(serde_json::to_value(name).unwrap(), state.name());
            assert_eq!(StateName::parse(state.name()), Some(name));
            assert_eq!(name.as_str(), state.name());
            assert_eq!(name.status(), OrderStatus::of(state));
        }
        assert_eq!(StateName::parse("LOST"), None);
    }
}
