//! Products: the stock a reservation draws from.
//!
//! `available` is what can still be reserved, `reserved` what is held for orders. Setting the
//! stock over HTTP sets `available` and leaves `reserved` alone: held units belong to their orders
//! until they are released.
//!
//! **Low-stock alerts.** Each product has a `low_stock_threshold` (set with its stock; half of
//! the stock set when not given) and an alarm that is armed or has gone off
//! (`low_stock_alerted`):
//!
//! - a reservation that takes `available` from at or above the threshold to below it, while
//!   armed, publishes `inventory.low_stock` (with `available` after it) in its own transaction
//!   and sets the alarm off ([`StockLevel::take`]): one alert per crossing;
//! - a `PUT` re-arms it when the stock it sets is at or above the threshold, and leaves it off
//!   when below (the operator who just set it knows; nothing is published);
//! - a release gives units back but does not re-arm: stock that comes back from a cancelled
//!   order is not a restock, and a product hovering at its threshold as orders time out would
//!   otherwise alert again and again. Only the next crossing after a `PUT` alerts again.
//!
//! Armed implies `available >= threshold` (a `PUT` arms only then, only reservations lower
//! `available` and the one that crosses disarms), so a threshold of 0 never alerts.
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router, extract::State};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use sea_orm::{DatabaseConnection, DbErr, FromQueryResult, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use saga_common::contracts::LowStock;
use saga_common::db::Part;
use saga_common::http::keyed::Keyed;
use saga_common::http::{ApiError, ErrorBody, JsonBody};

/// The most stock one product may be set to.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// The most units one product may hold for orders. With this cap, `available + reserved` never
/// passes the INTEGER range: setting the stock leaves at most `MAX_STOCK + MAX_RESERVED`, and
/// reserving or releasing only moves units between the two columns. So a release can always
/// give its units back.
pub const MAX_RESERVED: i64 = i32::MAX as i64 - MAX_STOCK;

#[derive(Debug, Clone, Serialize, FromQueryResult, ToSchema)]
#[schema(example = json!({
    "product_id": "p-1",
    "available": 97,
    "reserved": 3,
    "low_stock_threshold": 50,
    "low_stock_alerted": false,
    "updated_at": "2026-11-22T10:00:00Z"
}))]
pub struct Product {
    #[schema(example = "p-1")]
    pub product_id: String,
    /// Units that can still be reserved.
    #[schema(example = 97)]
    pub available: i32,
    /// Units held for orders.
    #[schema(example = 3)]
    pub reserved: i32,
    /// A reservation taking `available` below this publishes `inventory.low_stock`.
    #[schema(example = 50)]
    pub low_stock_threshold: i32,
    /// Whether the alert of the current crossing went out: set by the reservation that crossed,
    /// cleared by a `PUT` that sets the stock at or above the threshold (a release does not).
    pub low_stock_alerted: bool,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"stock": 100, "low_stock_threshold": 20}))]
pub struct SetStock {
    /// Units available for reservation, 0 to 1,000,000,000.
    #[schema(example = 100, minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
    /// 0 to 1,000,000,000 (0: never alert); absent or `null`: half of `stock`, rounded down.
    #[serde(default)]
    #[schema(example = 20, minimum = 0, maximum = 1_000_000_000)]
    pub low_stock_threshold: Option<i64>,
}

impl SetStock {
    /// The threshold to store: the one given, or half of the stock.
    pub fn threshold(&self) -> i64 {
        self.low_stock_threshold.unwrap_or(self.stock / 2)
    }
}

pub fn router(db: DatabaseConnection) -> Router {
    // Operator only: a customer reads their business through the orchestrator's orders.
    saga_common::http::auth::protect(
        Router::new()
            .route(
                "/api/products/{product_id}",
                get(get_product).put(put_product),
            )
            .with_state(db),
    )
}

/// Creates the product or sets its available stock and low-stock threshold; re-arms the
/// low-stock alert when the stock is at or above the threshold.
#[utoipa::path(put, path = "/api/products/{product_id}", tag = "products",
    security(("operator_token" = [])),
    params(("product_id" = String, Path, description = "1 to 64 characters")),
    request_body = SetStock,
    responses(
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 201, description = "Product created", body = Product),
        (status = 200, description = "Available stock and threshold set", body = Product),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid fields (`stock`, `low_stock_threshold`); nothing changed", body = ErrorBody),
    ))]
pub async fn put_product(
    State(db): State<DatabaseConnection>,
    Path(product_id): Path<String>,
    JsonBody(body): JsonBody<SetStock>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let (stock, threshold) = (body.stock, body.threshold());
    let values = vec![Value::from(stock), Value::from(threshold)];
    PRODUCTS
        .put(&db, &product_id, values, |violations| {
            violations.check(
                (0..=MAX_STOCK).contains(&stock),
                "stock",
                "must be between 0 and 1000000000",
            );
            if body.low_stock_threshold.is_some() {
                violations.check(
                    (0..=MAX_STOCK).contains(&threshold),
                    "low_stock_threshold",
                    "must be between 0 and 1000000000",
                );
            }
        })
        .await
}

/// Reads a product's stock.
#[utoipa::path(get, path = "/api/products/{product_id}", tag = "products",
    security(("operator_token" = [])),
    params(("product_id" = String, Path, description = "1 to 64 characters")),
    responses(
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 200, description = "The product", body = Product),
        (status = 404, description = "No such product", body = ErrorBody),
        (status = 422, description = "Invalid product id", body = ErrorBody),
    ))]
pub async fn get_product(
    State(db): State<DatabaseConnection>,
    Path(product_id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    PRODUCTS.get(&db, &product_id).await
}

/// The stock and threshold arrive as BIGINTs, checked against [`MAX_STOCK`]; `::int` stores
/// them in the INTEGER columns. The alert is armed when the stock is at or above the threshold.
const PRODUCTS: Keyed = Keyed {
    key: "product_id",
    missing: "no product",
    find: "SELECT product_id, available, reserved, low_stock_threshold, low_stock_alerted, updated_at \
           FROM products WHERE product_id = $1",
    upsert: "INSERT INTO products (product_id, available, low_stock_threshold, low_stock_alerted) \
             VALUES ($1, $2::int, $3::int, $2::int < $3::int) \
             ON CONFLICT (product_id) DO UPDATE SET available = EXCLUDED.available, \
               low_stock_threshold = EXCLUDED.low_stock_threshold, \
               low_stock_alerted = EXCLUDED.low_stock_alerted, updated_at = now() \
             RETURNING product_id, available, reserved, low_stock_threshold, low_stock_alerted, \
               updated_at, (xmax = 0) AS created",
};

/// A product's stock, read under a row lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevel {
    pub available: i32,
    pub reserved: i32,
    pub threshold: i32,
    /// The low-stock alarm has gone off (see the module's "Low-stock alerts").
    pub alerted: bool,
}

impl StockLevel {
    /// Whether `quantity` can be reserved: it is available, and holding it keeps `reserved`
    /// within [`MAX_RESERVED`] (else a later release could overflow INTEGER and fail for ever;
    /// refusing the reservation ends the order cleanly instead).
    pub fn covers(self, quantity: i32) -> bool {
        self.available >= quantity && i64::from(self.reserved) + i64::from(quantity) <= MAX_RESERVED
    }

    /// Holds `quantity` (which [`StockLevel::covers`] allowed) for an order. When that takes
    /// `available` from at or above the threshold to below it and the alarm is armed, the alarm
    /// goes off and the alert to publish is returned: `available` after this reservation.
    pub fn take(&mut self, product_id: &str, quantity: i32) -> Option<LowStock> {
        let before = self.available;
        self.available -= quantity;
        self.reserved += quantity;
        let crossed = before >= self.threshold && self.available < self.threshold;
        (crossed && !self.alerted).then(|| {
            self.alerted = true;
            LowStock {
                product_id: product_id.to_owned(),
                available: self.available,
                threshold: self.threshold,
            }
        })
    }

    /// Gives `quantity` held for an order back. The alarm stays as it is: only a `PUT`
    /// re-arms it.
    pub fn give_back(&mut self, quantity: i32) {
        self.available += quantity;
        self.reserved -= quantity;
    }
}

/// The query that locks (`FOR NO KEY UPDATE`, in `product_id` byte order) the products named in
/// `named` and those held by lines of the orders `lines_of`: every product a batch of reserves
/// and releases may change. Every transaction that locks several products goes in this order,
/// so none waits on another in a circle. Its rows ([`Level`]) are read back through a
/// [`Reads`](saga_common::db::Reads); a product that does not exist is absent.
/// The threshold and the alarm come with the stock, so deciding an alert costs no statement.
pub fn lock_read(named: &[String], lines_of: &[uuid::Uuid]) -> Part {
    if lines_of.is_empty() {
        return Part::new(
            "SELECT product_id, available, reserved, low_stock_threshold, low_stock_alerted \
             FROM products WHERE product_id = ANY($1) \
             ORDER BY product_id COLLATE \"C\" FOR NO KEY UPDATE",
            vec![Value::from(named.to_vec())],
        );
    }
    Part::new(
        "SELECT product_id, available, reserved, low_stock_threshold, low_stock_alerted \
         FROM products WHERE product_id IN ( \
           SELECT unnest($1::text[]) \
           UNION SELECT product_id FROM reservation_lines WHERE order_id = ANY($2)) \
         ORDER BY product_id COLLATE \"C\" FOR NO KEY UPDATE",
        vec![Value::from(named.to_vec()), Value::from(lines_of.to_vec())],
    )
}

/// A product's stock as [`lock_read`] returns it.
#[derive(Debug, Deserialize)]
pub struct Level {
    pub product_id: String,
    pub available: i32,
    pub reserved: i32,
    pub low_stock_threshold: i32,
    pub low_stock_alerted: bool,
}

/// Stock levels by product.
pub fn levels(rows: Vec<Level>) -> HashMap<String, StockLevel> {
    rows.into_iter()
        .map(|l| {
            (
                l.product_id,
                StockLevel {
                    available: l.available,
                    reserved: l.reserved,
                    threshold: l.low_stock_threshold,
                    alerted: l.low_stock_alerted,
                },
            )
        })
        .collect()
}

/// What a batch changes in one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockDelta {
    pub product_id: String,
    /// Added to `available`.
    pub available: i32,
    /// Added to `reserved`.
    pub reserved: i32,
    /// The batch set the low-stock alarm off (and published the alert).
    pub alerted: bool,
}

/// Adds each change to its product, as a part of a [`Writes`](saga_common::db::Writes): the
/// same single `UPDATE` as before alerts, with the alarm set where a reservation crossed. The
/// rows must have been locked and checked with [`lock_read`]; the check constraints refuse a
/// negative stock in any case.
pub fn adjust_part(deltas: &[StockDelta]) -> Result<Option<Part>, DbErr> {
    if deltas.is_empty() {
        return Ok(None);
    }
    Ok(Some(Part::new(
        "UPDATE products p SET available = p.available + d.available, \
         reserved = p.reserved + d.reserved, \
         low_stock_alerted = p.low_stock_alerted OR d.alerted, updated_at = now() \
         FROM jsonb_to_recordset($1::jsonb) \
           AS d(product_id text, available int, reserved int, alerted boolean) \
         WHERE p.product_id = d.product_id RETURNING 1",
        vec![saga_common::db::rows(deltas)?],
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(available: i32, threshold: i32) -> StockLevel {
        StockLevel {
            available,
            reserved: 0,
            threshold,
            alerted: false,
        }
    }

    #[test]
    fn a_stock_level_covers_what_is_available_and_no_more() {
        let level = level(5, 0);
        assert!(level.covers(5));
        assert!(!level.covers(6));
    }

    #[test]
    fn a_stock_level_refuses_a_reservation_the_reserved_count_cannot_hold() {
        let level = StockLevel {
            reserved: (MAX_RESERVED - 5) as i32,
            ..level(10, 0)
        };
        assert!(level.covers(5));
        assert!(!level.covers(6));
    }

    #[test]
    fn the_reservation_that_crosses_the_threshold_alerts_once() {
        let mut stock = level(10, 5);
        assert_eq!(stock.take("p", 5), None, "5 is at the threshold, not below");
        assert_eq!(
            stock.take("p", 1),
            Some(LowStock {
                product_id: "p".into(),
                available: 4,
                threshold: 5
            })
        );
        assert!(stock.alerted);
        assert_eq!(stock.take("p", 1), None, "already below");
        assert_eq!((stock.available, stock.reserved), (3, 7));
    }

    #[test]
    fn a_release_back_above_the_threshold_does_not_rearm() {
        let mut stock = level(6, 5);
        assert!(stock.take("p", 2).is_some());
        stock.give_back(2);
        assert_eq!((stock.available, stock.reserved), (6, 0));
        assert!(stock.alerted);
        assert_eq!(stock.take("p", 2), None);
    }

    #[test]
    fn a_zero_threshold_never_alerts() {
        let mut stock = level(3, 0);
        assert_eq!(stock.take("p", 3), None);
        assert_eq!(stock.available, 0);
    }

    #[test]
    fn the_default_threshold_is_half_the_stock_rounded_down() {
        let set = |stock, low_stock_threshold| SetStock {
            stock,
            low_stock_threshold,
        };
        assert_eq!(set(100, None).threshold(), 50);
        assert_eq!(set(7, None).threshold(), 3);
        assert_eq!(set(1, None).threshold(), 0);
        assert_eq!(set(100, Some(90)).threshold(), 90);
    }
}
