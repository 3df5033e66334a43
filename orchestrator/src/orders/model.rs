//! Orders as the API and the saga see them, and the parsing of a new order at the edge.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use saga_common::http::ApiError;
use saga_common::http::extract::{Violations, check_id};

pub use crate::saga::status::OrderStatus;
use crate::saga::store::{Line, Saga};
use crate::saga::{FailureReason, SagaState};

pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 10_000;
pub const MAX_UNIT_PRICE_CENTS: i64 = 1_000_000_000;

// The largest order's total is an amount the payment service accepts.
const _: () = assert!(
    MAX_ITEMS as i64 * MAX_QUANTITY * MAX_UNIT_PRICE_CENTS
        <= saga_common::contracts::MAX_AMOUNT_CENTS
);

/// `POST /api/orders` body as sent; checked by [`PlaceOrder::parse`].
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"customer_id": "c-1", "items": [{"product_id": "p-1", "quantity": 2, "unit_price_cents": 1999}]}))]
pub struct PlaceOrderRequest {
    /// 1 to 64 characters. With a customer token it may be omitted (it is then the token's
    /// `sub`) and, if given, must be the token's `sub` (else 403 `customer_mismatch`); with the
    /// operator token it is required.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// 1 to 100 lines.
    pub items: Vec<OrderItemRequest>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemRequest {
    /// 1 to 64 characters.
    pub product_id: String,
    /// 1 to 10000.
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: i64,
    /// 0 to 1000000000.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub unit_price_cents: i64,
}

/// One order line, already checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    #[schema(example = "p-1")]
    pub product_id: String,
    #[schema(example = 2)]
    pub quantity: i32,
    #[schema(example = 1999)]
    pub unit_price_cents: i64,
}

/// A valid new order: only [`PlaceOrder::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrder {
    pub customer_id: String,
    pub items: Vec<OrderItem>,
}

impl PlaceOrder {
    /// Checks every field and reports all that are wrong at once.
    pub fn parse(request: PlaceOrderRequest) -> Result<Self, ApiError> {
        let mut violations = Violations::default();
        let given = request.customer_id.is_some();
        let customer_id = request.customer_id.unwrap_or_default();
        if given {
            check_id(&mut violations, "customer_id", &customer_id);
        } else {
            // Only the operator gets here without one: a customer's is taken from the token.
            violations.check(false, "customer_id", "is required with the operator token");
        }
        violations.check(
            (1..=MAX_ITEMS).contains(&request.items.len()),
            "items",
            format!("must hold 1 to {MAX_ITEMS} items"),
        );
        let mut items = Vec::with_capacity(request.items.len());
        for (index, item) in request.items.into_iter().enumerate() {
            check_id(
                &mut violations,
                &format!("items[{index}].product_id"),
                &item.product_id,
            );
            let quantity = i32::try_from(item.quantity)
                .ok()
                .filter(|q| (1..=MAX_QUANTITY).contains(&i64::from(*q)));
            if quantity.is_none() {
                violations.add(
                    format!("items[{index}].quantity"),
                    format!("must be between 1 and {MAX_QUANTITY}"),
                );
            }
            violations.check(
                (0..=MAX_UNIT_PRICE_CENTS).contains(&item.unit_price_cents),
                format!("items[{index}].unit_price_cents"),
                format!("must be between 0 and {MAX_UNIT_PRICE_CENTS}"),
            );
            items.push(OrderItem {
                product_id: item.product_id,
                quantity: quantity.unwrap_or_default(),
                unit_price_cents: item.unit_price_cents,
            });
        }
        violations.finish(Self { customer_id, items })
    }

    /// At most 100 × 10 000 × 10⁹ = 10¹⁵ = `MAX_AMOUNT_CENTS` (checked at compile time below),
    /// so it never saturates; saturating arithmetic keeps that true even if a bound changes.
    pub fn total_cents(&self) -> i64 {
        self.items.iter().fold(0_i64, |total, i| {
            total.saturating_add(i64::from(i.quantity).saturating_mul(i.unit_price_cents))
        })
    }
}

/// A stored order and where its saga stands (the rest of the saga is `saga::store`'s).
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: Uuid,
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub state: SagaState,
    pub correlation_id: String,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// W3C `traceparent` of the step that placed it: later steps the sweep or an operator
    /// takes continue this trace. `None` for an order placed before tracing.
    pub traceparent: Option<String>,
}

/// An order as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: Uuid,
    pub status: OrderStatus,
    /// Set once FAILED; null otherwise.
    #[schema(example = json!(null))]
    pub failure_reason: Option<FailureReason>,
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// The saga of a new order, before its first step.
    pub fn new_saga(&self) -> Saga {
        Saga {
            order_id: self.order_id,
            customer_id: self.customer_id.clone(),
            items: self
                .items
                .iter()
                .map(|item| Line {
                    product_id: item.product_id.clone(),
                    quantity: item.quantity,
                    unit_price_cents: item.unit_price_cents,
                })
                .collect(),
            total_cents: self.total_cents,
            state: self.state,
            version: 0,
            deadline_at: None,
            resends: 0,
            pending_message_id: None,
            correlation_id: self.correlation_id.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            traceparent: self.traceparent.clone(),
        }
    }
}

impl From<&Order> for OrderView {
    fn from(order: &Order) -> Self {
        let status = OrderStatus::of(order.state);
        Self {
            order_id: order.order_id,
            status,
            failure_reason: match order.state {
                SagaState::Failed(reason) => Some(reason),
                _ => None,
            },
            customer_id: order.customer_id.clone(),
            items: order.items.clone(),
            total_cents: order.total_cents,
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(quantity: i64, price: i64, items: usize) -> PlaceOrderRequest {
        PlaceOrderRequest {
            customer_id: Some("c-1".into()),
            items: (0..items)
                .map(|i| OrderItemRequest {
                    product_id: format!("p-{i}"),
                    quantity,
                    unit_price_cents: price,
                })
                .collect(),
        }
    }

    fn fields(error: ApiError) -> Vec<String> {
        error.body().details.into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn a_valid_order_totals_its_lines() {
        let order = PlaceOrder::parse(request(2, 1999, 3)).unwrap();
        assert_eq!(order.total_cents(), 3 * 2 * 1999);
    }

    #[test]
    fn bounds_are_inclusive() {
        assert!(PlaceOrder::parse(request(1, 0, 1)).is_ok());
        assert!(PlaceOrder::parse(request(MAX_QUANTITY, MAX_UNIT_PRICE_CENTS, MAX_ITEMS)).is_ok());
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut bad = request(0, -1, 2);
        bad.customer_id = Some(String::new());
        bad.items[1].product_id = "x".repeat(65);
        bad.items[1].quantity = MAX_QUANTITY + 1;
        let error = PlaceOrder::parse(bad).unwrap_err();
        assert_eq!(
            fields(error),
            [
                "customer_id",
                "items[0].quantity",
                "items[0].unit_price_cents",
                "items[1].product_id",
                "items[1].quantity",
                "items[1].unit_price_cents",
            ]
        );
    }

    #[test]
    fn item_count_is_bounded() {
        assert_eq!(
            fields(PlaceOrder::parse(request(1, 1, 0)).unwrap_err()),
            ["items"]
        );
        assert_eq!(
            fields(PlaceOrder::parse(request(1, 1, MAX_ITEMS + 1)).unwrap_err()),
            ["items"]
        );
    }
}
