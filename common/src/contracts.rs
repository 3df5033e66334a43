//! The messages the fleet exchanges: payloads, and the contracts that give each its type name
//! (also its routing key).
//!
//! Commands are imperatives sent by the orchestrator; replies are past-tense facts sent back by a
//! participant; order events are published for anyone else interested. Each set is a contract
//! enum declared below with [`contract!`]; [`typed`] holds the traits an envelope is built from
//! and decoded into. Failure reasons are enums that serialise as the snake_case strings on the
//! wire.

use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[cfg(test)]
mod tests;
mod typed;

use typed::contract;
pub use typed::{Contract, DecodeError, Message, Payload};

contract! {
    /// Commands to the payment service, routed on `saga.commands` by their type.
    PaymentCommand {
        Charge(ChargePayment) = "payment.charge",
        Refund(RefundPayment) = "payment.refund",
    }
}

contract! {
    /// Commands to the inventory service, routed on `saga.commands` by their type.
    InventoryCommand {
        Reserve(ReserveStock) = "inventory.reserve",
        Release(ReleaseStock) = "inventory.release",
    }
}

contract! {
    /// The participants' replies to the orchestrator, published on `saga.replies`.
    Reply {
        PaymentCharged(PaymentCharged) = "payment.charged",
        PaymentDeclined(PaymentDeclined) = "payment.declined",
        PaymentRefunded(PaymentRefunded) = "payment.refunded",
        StockReserved(StockReserved) = "inventory.reserved",
        StockReservationFailed(StockReservationFailed) = "inventory.reservation_failed",
        StockReleased(StockReleased) = "inventory.released",
    }
}

contract! {
    /// Order lifecycle events, published on the `saga.events` topic exchange.
    OrderEvent {
        Completed(OrderCompleted) = "order.completed",
        Failed(OrderFailed) = "order.failed",
    }
}

contract! {
    /// The payment service's account events, published on `saga.events`: what others keep a
    /// copy of (the notification service, a customer's address).
    AccountEvent {
        Updated(AccountUpdated) = "account.updated",
    }
}

contract! {
    /// The inventory service's stock events, published on `saga.events`.
    StockEvent {
        LowStock(LowStock) = "inventory.low_stock",
    }
}

/// A reason carried in a payload and also stored by name in a participant's database: the
/// same snake_case name on the wire, in JSON answers and in the column.
macro_rules! stored_reason {
    ($(#[$doc:meta])* $name:ident { $($(#[$variant_doc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, EnumIter,
            DeriveActiveEnum,
        )]
        #[serde(rename_all = "snake_case")]
        #[sea_orm(rs_type = "String", db_type = "Text", rename_all = "snake_case")]
        pub enum $name {
            $($(#[$variant_doc])* $variant),+
        }
    };
}

stored_reason! {
    /// Why a charge was declined.
    DeclineReason {
        InsufficientFunds,
        NoAccount,
        /// A refund came first (the saga gave up): the order is closed to charges.
        Cancelled,
    }
}

stored_reason! {
    /// Why a reservation failed.
    RejectionReason {
        OutOfStock,
        /// A release for the order arrived before its reserve.
        ReleasedBeforeReserved,
    }
}

/// Why an order failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderFailureReason {
    PaymentDeclined,
    OutOfStock,
    TimedOut,
}

/// The largest amount of money in cents anything of the fleet holds or moves: a balance, an
/// order's total, a charge (10^15 cents, ten trillion in the currency's unit). Far below
/// `i64::MAX` (about 9.2 × 10^18), so a sum of two such amounts, or of a balance and a refund,
/// cannot overflow; a refund onto a full balance is capped there (see the payment ledger).
pub const MAX_AMOUNT_CENTS: i64 = 1_000_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargePayment {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPayment {
    pub order_id: Uuid,
    pub customer_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLine {
    pub product_id: String,
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveStock {
    pub order_id: Uuid,
    pub lines: Vec<StockLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseStock {
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCharged {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDeclined {
    pub order_id: Uuid,
    pub reason: DeclineReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub order_id: Uuid,
    /// Zero when there was nothing to refund (the charge never happened or was declined).
    pub refunded_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReservationFailed {
    pub order_id: Uuid,
    pub reason: RejectionReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReleased {
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCompleted {
    pub order_id: Uuid,
    pub customer_id: String,
    pub total_cents: i64,
    /// What was bought (absent in events published before lines were added: empty).
    #[serde(default)]
    pub lines: Vec<OrderLine>,
}

/// One line of a completed order, as its confirmation shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFailed {
    pub order_id: Uuid,
    pub customer_id: String,
    pub reason: OrderFailureReason,
}

/// An account was created or changed: its owner's e-mail address as it now stands (`None`
/// when the account has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUpdated {
    pub customer_id: String,
    pub email: Option<String>,
}

/// A reservation took a product's `available` stock from at or above its threshold to below
/// it (published once per crossing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowStock {
    pub product_id: String,
    pub available: i32,
    pub threshold: i32,
}
