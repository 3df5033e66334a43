//! Reservations: stock held for an order, all lines or none, and given back once.
//!
//! Rules, one row per order in `reservations`:
//!
//! | the order's row | reserve                                       | release                             |
//! |-----------------|-----------------------------------------------|-------------------------------------|
//! | none            | all lines taken, `RESERVED`; or none taken, `REJECTED` `out_of_stock` | `REJECTED` `released_before_reserved` |
//! | `RESERVED`      | answered reserved again                       | every line given back, `RELEASED`   |
//! | `RELEASED`      | answered reserved again                       | nothing (given back already)        |
//! | `REJECTED`      | answered failed again, with the reason        | nothing (nothing was taken)         |
//!
//! So a reserve repeated under a new message id answers with the outcome recorded, and a release
//! that overtakes its reserve leaves a row that stops the late reserve from ever taking stock.
//!
//! Two handlers racing for the same order both find no row; the second insert then fails on the
//! primary key, its transaction rolls back and the command is requeued as transient, to find the
//! winner's row on the next attempt.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, Value};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use saga_common::contracts::{ReserveStock, StockLine};
use saga_common::db::stmt;
use saga_common::http::extract::parse_uuid;
use saga_common::http::{ApiError, ErrorBody};

use crate::products;

pub const RESERVED: &str = "RESERVED";
pub const RELEASED: &str = "RELEASED";
pub const REJECTED: &str = "REJECTED";

pub const OUT_OF_STOCK: &str = "out_of_stock";
pub const RELEASED_BEFORE_RESERVED: &str = "released_before_reserved";

/// Why a reserve command can never be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("order_id {order_id} differs from the envelope's saga_id {saga_id}")]
    OrderMismatch { order_id: Uuid, saga_id: Uuid },
    #[error("a reservation needs at least one line")]
    NoLines,
    #[error("line {index} (product `{product_id}`) has quantity {quantity}; it must be 1 or more")]
    NotPositive {
        index: usize,
        product_id: String,
        quantity: i32,
    },
    #[error("the quantities of product `{product_id}` add up to more than an INTEGER holds")]
    TooLarge { product_id: String },
}

/// A reserve command once checked: one line per product (duplicates summed), in `product_id` byte
/// order, every quantity positive. The order is also the order products are locked in, so two
/// reservations sharing products never wait on each other in a circle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRequest {
    order_id: Uuid,
    lines: Vec<StockLine>,
}

impl StockRequest {
    /// Checks `command`, which arrived in an envelope of saga `saga_id`.
    pub fn parse(command: ReserveStock, saga_id: Uuid) -> Result<Self, InvalidRequest> {
        if command.order_id != saga_id {
            return Err(InvalidRequest::OrderMismatch {
                order_id: command.order_id,
                saga_id,
            });
        }
        if command.lines.is_empty() {
            return Err(InvalidRequest::NoLines);
        }
        let mut merged: BTreeMap<String, i32> = BTreeMap::new();
        for (index, line) in command.lines.into_iter().enumerate() {
            if line.quantity <= 0 {
                return Err(InvalidRequest::NotPositive {
                    index,
                    product_id: line.product_id,
                    quantity: line.quantity,
                });
            }
            let total = merged.entry(line.product_id.clone()).or_default();
            *total = total
                .checked_add(line.quantity)
                .ok_or(InvalidRequest::TooLarge {
                    product_id: line.product_id,
                })?;
        }
        Ok(Self {
            order_id: command.order_id,
            lines: merged
                .into_iter()
                .map(|(product_id, quantity)| StockLine {
                    product_id,
                    quantity,
                })
                .collect(),
        })
    }

    pub fn order_id(&self) -> Uuid {
        self.order_id
    }

    pub fn lines(&self) -> &[StockLine] {
        &self.lines
    }
}

/// What a reserve command ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved,
    Rejected { reason: String },
}

/// What a release command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The order's units went back to available stock.
    Released { units: i64 },
    /// An earlier release already gave them back.
    AlreadyReleased,
    /// The reservation had been rejected: nothing was taken.
    NothingReserved,
    /// No reservation yet: one is recorded as rejected so a late reserve takes nothing.
    Blocked,
}

/// Reserves every line of `request` or none, or returns the outcome recorded for the order before.
pub async fn reserve(
    db: &impl ConnectionTrait,
    request: &StockRequest,
) -> Result<ReserveOutcome, DbErr> {
    let order_id = request.order_id();
    if let Some(existing) = find_for_update(db, order_id).await? {
        return Ok(match existing.status.as_str() {
            REJECTED => ReserveOutcome::Rejected {
                reason: existing.reason.unwrap_or_else(|| OUT_OF_STOCK.to_owned()),
            },
            _ => ReserveOutcome::Reserved,
        });
    }
    for line in request.lines() {
        let covered = products::lock(db, &line.product_id)
            .await?
            .is_some_and(|level| level.covers(line.quantity));
        if !covered {
            tracing::info!(product_id = %line.product_id, quantity = line.quantity, "not enough stock");
            insert(db, order_id, REJECTED, Some(OUT_OF_STOCK)).await?;
            return Ok(ReserveOutcome::Rejected {
                reason: OUT_OF_STOCK.to_owned(),
            });
        }
    }
    insert(db, order_id, RESERVED, None).await?;
    for line in request.lines() {
        products::take(db, &line.product_id, line.quantity).await?;
        db.execute_raw(stmt(
            "INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES ($1, $2, $3)",
            [
                order_id.into(),
                line.product_id.clone().into(),
                line.quantity.into(),
            ],
        ))
        .await?;
    }
    Ok(ReserveOutcome::Reserved)
}

/// Gives the order's reserved units back exactly once; see the table at the top for every case.
pub async fn release(db: &impl ConnectionTrait, order_id: Uuid) -> Result<ReleaseOutcome, DbErr> {
    let Some(reservation) = find_for_update(db, order_id).await? else {
        insert(db, order_id, REJECTED, Some(RELEASED_BEFORE_RESERVED)).await?;
        return Ok(ReleaseOutcome::Blocked);
    };
    match reservation.status.as_str() {
        RESERVED => {
            let mut units = 0;
            for line in lines_of(db, order_id).await? {
                products::give_back(db, &line.product_id, line.quantity).await?;
                units += i64::from(line.quantity);
            }
            db.execute_raw(stmt(
                "UPDATE reservations SET status = $2, updated_at = now() WHERE order_id = $1",
                [order_id.into(), RELEASED.into()],
            ))
            .await?;
            Ok(ReleaseOutcome::Released { units })
        }
        RELEASED => Ok(ReleaseOutcome::AlreadyReleased),
        _ => Ok(ReleaseOutcome::NothingReserved),
    }
}

#[derive(Debug, Clone, FromQueryResult)]
struct Reservation {
    status: String,
    reason: Option<String>,
}

async fn find_for_update(
    db: &impl ConnectionTrait,
    order_id: Uuid,
) -> Result<Option<Reservation>, DbErr> {
    Reservation::find_by_statement(stmt(
        "SELECT status, reason FROM reservations WHERE order_id = $1 FOR UPDATE",
        [order_id.into()],
    ))
    .one(db)
    .await
}

async fn insert(
    db: &impl ConnectionTrait,
    order_id: Uuid,
    status: &str,
    reason: Option<&str>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        "INSERT INTO reservations (order_id, status, reason) VALUES ($1, $2, $3)",
        [
            order_id.into(),
            status.into(),
            reason.map(str::to_owned).into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The order's lines in `product_id` byte order (`COLLATE "C"`), the order a reserve locks them
/// in, so a release and a reserve sharing products update them in the same order.
async fn lines_of(db: &impl ConnectionTrait, order_id: Uuid) -> Result<Vec<StockLine>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            "SELECT product_id, quantity FROM reservation_lines WHERE order_id = $1 \
             ORDER BY product_id COLLATE \"C\"",
            [order_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(StockLine {
                product_id: row.try_get("", "product_id")?,
                quantity: row.try_get("", "quantity")?,
            })
        })
        .collect()
}

/// One product held (or once held) for an order.
#[derive(Debug, Clone, Serialize, FromQueryResult, ToSchema)]
#[schema(example = json!({
    "order_id": "0193a3c4-5d6e-7f80-9a0b-1c2d3e4f5a6b",
    "product_id": "p-1",
    "quantity": 3,
    "status": "RESERVED"
}))]
pub struct ReservationLine {
    pub order_id: Uuid,
    #[schema(example = "p-1")]
    pub product_id: String,
    #[schema(example = 3)]
    pub quantity: i32,
    /// `RESERVED` (held) or `RELEASED` (given back).
    #[schema(example = "RESERVED")]
    pub status: String,
}

/// Lines of reserved and released orders, newest order first; only the order's when given.
pub async fn list(
    db: &impl ConnectionTrait,
    order_id: Option<Uuid>,
) -> Result<Vec<ReservationLine>, DbErr> {
    ReservationLine::find_by_statement(stmt(
        "SELECT l.order_id, l.product_id, l.quantity, r.status \
         FROM reservation_lines l JOIN reservations r ON r.order_id = l.order_id \
         WHERE ($1::uuid IS NULL OR l.order_id = $1) \
         ORDER BY r.created_at DESC, l.order_id, l.product_id LIMIT 100",
        [Value::Uuid(order_id)],
    ))
    .all(db)
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReservationFilter {
    /// Only the lines of this order (UUID). Without it: the 100 newest lines.
    pub order_id: Option<String>,
}

pub fn router(db: DatabaseConnection) -> Router {
    Router::new()
        .route("/api/reservations", get(list_reservations))
        .with_state(db)
}

/// Lists reservation lines, newest order first.
#[utoipa::path(get, path = "/api/reservations", tag = "reservations", params(ReservationFilter),
    responses(
        (status = 200, description = "Reservation lines", body = Vec<ReservationLine>),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
    ))]
pub async fn list_reservations(
    State(db): State<DatabaseConnection>,
    Query(filter): Query<ReservationFilter>,
) -> Result<Json<Vec<ReservationLine>>, ApiError> {
    let order_id = filter
        .order_id
        .as_deref()
        .map(|id| parse_uuid("order_id", id))
        .transpose()?;
    Ok(Json(list(&db, order_id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(product_id: &str, quantity: i32) -> StockLine {
        StockLine {
            product_id: product_id.to_owned(),
            quantity,
        }
    }

    fn command(lines: Vec<StockLine>) -> (ReserveStock, Uuid) {
        let order_id = Uuid::now_v7();
        (ReserveStock { order_id, lines }, order_id)
    }

    #[test]
    fn duplicate_products_are_summed_and_lines_sorted_by_product() {
        let (command, saga_id) = command(vec![line("b", 1), line("a", 2), line("b", 3)]);
        let request = StockRequest::parse(command, saga_id);
        assert_eq!(
            request.map(|r| r.lines().to_vec()),
            Ok(vec![line("a", 2), line("b", 4)])
        );
    }

    #[test]
    fn a_request_without_lines_is_invalid() {
        let (command, saga_id) = command(vec![]);
        assert_eq!(
            StockRequest::parse(command, saga_id),
            Err(InvalidRequest::NoLines)
        );
    }

    #[test]
    fn a_zero_or_negative_quantity_is_invalid() {
        for quantity in [0, -1] {
            let (command, saga_id) = command(vec![line("a", 1), line("b", quantity)]);
            assert!(matches!(
                StockRequest::parse(command, saga_id),
                Err(InvalidRequest::NotPositive { index: 1, .. })
            ));
        }
    }

    #[test]
    fn an_order_other_than_the_saga_is_invalid() {
        let (command, _) = command(vec![line("a", 1)]);
        assert!(matches!(
            StockRequest::parse(command, Uuid::now_v7()),
            Err(InvalidRequest::OrderMismatch { .. })
        ));
    }

    #[test]
    fn quantities_that_overflow_when_summed_are_invalid() {
        let (command, saga_id) = command(vec![line("a", i32::MAX), line("a", 1)]);
        assert_eq!(
            StockRequest::parse(command, saga_id),
            Err(InvalidRequest::TooLarge {
                product_id: "a".to_owned()
            })
        );
    }
}
