//! The messages the fleet exchanges: type names (also the routing keys) and payloads.
//!
//! Commands are imperatives sent by the orchestrator; replies are past-tense facts sent back by a
//! participant; order events are published for anyone else interested.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Commands, routed on `saga.commands` by their type.
pub mod command {
    pub const CHARGE_PAYMENT: &str = "payment.charge";
    pub const REFUND_PAYMENT: &str = "payment.refund";
    pub const RESERVE_STOCK: &str = "inventory.reserve";
    pub const RELEASE_STOCK: &str = "inventory.release";
}

/// Replies, published on `saga.replies`.
pub mod reply {
    pub const PAYMENT_CHARGED: &str = "payment.charged";
    pub const PAYMENT_DECLINED: &str = "payment.declined";
    pub const PAYMENT_REFUNDED: &str = "payment.refunded";
    pub const STOCK_RESERVED: &str = "inventory.reserved";
    pub const STOCK_RESERVATION_FAILED: &str = "inventory.reservation_failed";
    pub const STOCK_RELEASED: &str = "inventory.released";
}

/// Order lifecycle events, published on the `saga.events` topic exchange.
pub mod event {
    pub const ORDER_COMPLETED: &str = "order.completed";
    pub const ORDER_FAILED: &str = "order.failed";
}

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
    /// `insufficient_funds` or `no_account`.
    pub reason: String,
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
    /// `out_of_stock`, or `released_before_reserved` when a release for the order came first.
    pub reason: String,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFailed {
    pub order_id: Uuid,
    pub customer_id: String,
    pub reason: String,
}
