//! Products: the stock a reservation draws from.
//!
//! `available` is what can still be reserved, `reserved` what is held for orders. Setting the
//! stock over HTTP sets `available` and leaves `reserved` alone: held units belong to their orders
//! until they are released.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router, extract::State};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use sea_orm::{DatabaseConnection, DbErr, FromQueryResult, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"stock": 100}))]
pub struct SetStock {
    /// Units available for reservation, 0 to 1,000,000,000.
    #[schema(example = 100, minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
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

/// Creates the product or sets its available stock.
#[utoipa::path(put, path = "/api/products/{product_id}", tag = "products",
    security(("operator_token" = [])),
    params(("product_id" = String, Path, description = "1 to 64 characters")),
    request_body = SetStock,
    responses(
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 201, description = "Product created", body = Product),
        (status = 200, description = "Available stock set", body = Product),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ))]
pub async fn put_product(
    State(db): State<DatabaseConnection>,
    Path(product_id): Path<String>,
    JsonBody(body): JsonBody<SetStock>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let stock = body.stock;
    PRODUCTS
        .put(&db, &product_id, stock, |violations| {
            violations.check(
                (0..=MAX_STOCK).contains(&stock),
                "stock",
                "must be between 0 and 1000000000",
            );
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

/// The stock arrives as a BIGINT, checked against [`MAX_STOCK`]; `::int` stores it in the
/// INTEGER column.
const PRODUCTS: Keyed = Keyed {
    key: "product_id",
    missing: "no product",
    find: "SELECT product_id, available, reserved, updated_at FROM products WHERE product_id = $1",
    upsert: "INSERT INTO products (product_id, available) VALUES ($1, $2::int) \
             ON CONFLICT (product_id) DO UPDATE SET available = EXCLUDED.available, updated_at = now() \
             RETURNING product_id, available, reserved, updated_at, (xmax = 0) AS created",
};

/// A product's stock, read under a row lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevel {
    pub available: i32,
    pub reserved: i32,
}

impl StockLevel {
    /// Whether `quantity` can be reserved: it is available, and holding it keeps `reserved`
    /// within [`MAX_RESERVED`] (else a later release could overflow INTEGER and fail for ever;
    /// refusing the reservation ends the order cleanly instead).
    pub fn covers(self, quantity: i32) -> bool {
        self.available >= quantity && i64::from(self.reserved) + i64::from(quantity) <= MAX_RESERVED
    }
}

/// The query that locks (`FOR NO KEY UPDATE`, in `product_id` byte order) the products named in
/// `named` and those held by lines of the orders `lines_of`: every product a batch of reserves
/// and releases may change. Every transaction that locks several products goes in this order,
/// so none waits on another in a circle. Its rows ([`Level`]) are read back through a
/// [`Reads`](saga_common::db::Reads); a product that does not exist is absent.
pub fn lock_read(named: &[String], lines_of: &[uuid::Uuid]) -> Part {
    if lines_of.is_empty() {
        return Part::new(
            "SELECT product_id, available, reserved FROM products WHERE product_id = ANY($1) \
             ORDER BY product_id COLLATE \"C\" FOR NO KEY UPDATE",
            vec![Value::from(named.to_vec())],
        );
    }
    Part::new(
        "SELECT product_id, available, reserved FROM products WHERE product_id IN ( \
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
                },
            )
        })
        .collect()
}

#[derive(Serialize)]
struct Delta<'a> {
    product_id: &'a str,
    available: i32,
    reserved: i32,
}

/// Adds each `(product, available, reserved)` change to its product, as a part of a
/// [`Writes`](saga_common::db::Writes). The rows must have been locked and checked with
/// [`lock_read`]; the check constraints refuse a negative stock in any case.
pub fn adjust_part(deltas: &[(String, i32, i32)]) -> Result<Option<Part>, DbErr> {
    if deltas.is_empty() {
        return Ok(None);
    }
    let rows: Vec<Delta> = deltas
        .iter()
        .map(|(product_id, available, reserved)| Delta {
            product_id,
            available: *available,
            reserved: *reserved,
        })
        .collect();
    Ok(Some(Part::new(
        "UPDATE products p SET available = p.available + d.available, \
         reserved = p.reserved + d.reserved, updated_at = now() \
         FROM jsonb_to_recordset($1::jsonb) AS d(product_id text, available int, reserved int) \
         WHERE p.product_id = d.product_id RETURNING 1",
        vec![saga_common::db::rows(&rows)?],
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stock_level_covers_what_is_available_and_no_more() {
        let level = StockLevel {
            available: 5,
            reserved: 0,
        };
        assert!(level.covers(5));
        assert!(!level.covers(6));
    }

    #[test]
    fn a_stock_level_refuses_a_reservation_the_reserved_count_cannot_hold() {
        let level = StockLevel {
            available: 10,
            reserved: (MAX_RESERVED - 5) as i32,
        };
        assert!(level.covers(5));
        assert!(!level.covers(6));
    }
}
