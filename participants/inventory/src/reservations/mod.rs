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
//! A reserve that takes a product below its low-stock threshold also publishes
//! `inventory.low_stock` (rules in `products`), in the same statement as its reply.
//!
//! A batch of commands is decided in memory by the [`Stockroom`] and written with one statement
//! per batch ([`read_for`], [`decide`]). Two batches racing for the same order both find no row; the second
//! insert then fails on the primary key, its transaction rolls back and the command is handled
//! again, to find the winner's row.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, DeriveActiveEnum, EnumIter, FromQueryResult, Value,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use saga_common::contracts::{LowStock, RejectionReason, ReserveStock, StockLine};
use saga_common::db::{self, Loaded, Part, PartName, Reads, Writes, stmt};
use saga_common::http::query::{OrderFilter, Params};
use saga_common::http::{ApiError, ErrorBody};

use crate::products;

mod stockroom;

pub use stockroom::{ReservationRow, StockCommand, StockOutcome, Stockroom};

/// Where a reservation stands; stored by name in `reservations.status`, named the same in JSON.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, EnumIter, DeriveActiveEnum,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(
    rs_type = "String",
    db_type = "Text",
    rename_all = "SCREAMING_SNAKE_CASE"
)]
pub enum ReservationStatus {
    Reserved,
    Released,
    Rejected,
}

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
    /// With the products this reservation took below their low-stock threshold (each alert
    /// once per crossing; see `products`), published beside the reply.
    Reserved {
        low_stock: Vec<LowStock>,
    },
    Rejected {
        reason: RejectionReason,
    },
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

/// What a batch of commands was decided to do.
pub struct Decided {
    /// One per command, in order.
    pub outcomes: Vec<StockOutcome>,
    /// Carries the decisions out; run it on the same transaction.
    pub writes: Writes,
}

const RESERVATIONS: PartName = PartName::new("reservations");
const LINES: PartName = PartName::new("lines");
const PRODUCTS: PartName = PartName::new("products");
const STOCK: PartName = PartName::new("stock");
const RELEASES: PartName = PartName::new("releases");

/// Adds to `reads` what `commands` need: the reservations of their orders, locked (`FOR NO KEY
/// UPDATE`, in order id order); when some are releases, the lines of their orders (what a
/// release gives back); and, locked in `product_id` byte order, every product a reserve names
/// or such a line holds. Every batch locks reservations before products and each in one order,
/// so batches running side by side never wait on each other in a circle.
pub fn read_for(reads: &mut Reads, commands: &[StockCommand]) {
    if commands.is_empty() {
        return;
    }
    let order_ids: Vec<Uuid> = db::lock_order(commands.iter().map(StockCommand::order_id));
    let named: Vec<String> = db::lock_order(
        commands
            .iter()
            .flat_map(|command| match command {
                StockCommand::Reserve(request) => request.lines().to_vec(),
                StockCommand::Release { .. } => Vec::new(),
            })
            .map(|line| line.product_id),
    );
    // Releases come only from sagas that timed out; without one, the lines of stored
    // reservations are not needed, and the products are found by their keys alone.
    let releasing: Vec<Uuid> =
        db::lock_order(commands.iter().filter_map(|command| match command {
            StockCommand::Release { order_id } => Some(*order_id),
            StockCommand::Reserve(_) => None,
        }));
    reads.read(
        RESERVATIONS,
        Some(Part::new(
            "SELECT order_id, status, reason FROM reservations WHERE order_id = ANY($1) \
             ORDER BY order_id FOR NO KEY UPDATE",
            vec![Value::from(order_ids)],
        )),
    );
    if !releasing.is_empty() {
        reads.read(
            LINES,
            Some(Part::new(
                "SELECT order_id, product_id, quantity FROM reservation_lines \
                 WHERE order_id = ANY($1)",
                vec![Value::from(releasing.clone())],
            )),
        );
    }
    reads.read(PRODUCTS, Some(products::lock_read(&named, &releasing)));
}

#[derive(Deserialize)]
struct LineRow {
    order_id: Uuid,
    product_id: String,
    quantity: i32,
}

/// Decides `commands` in order with the [`Stockroom`], against the rows [`read_for`] loaded.
/// The caller runs the returned writes (stock, new reservations and their lines, releases) on
/// the same transaction.
pub fn decide(loaded: &mut Loaded, commands: &[&StockCommand]) -> Result<Decided, DbErr> {
    let stored: Vec<ReservationRow> = loaded.take(RESERVATIONS)?;
    let mut lines: HashMap<Uuid, Vec<StockLine>> = HashMap::new();
    for line in loaded.take::<LineRow>(LINES)? {
        lines.entry(line.order_id).or_default().push(StockLine {
            product_id: line.product_id,
            quantity: line.quantity,
        });
    }
    for order_lines in lines.values_mut() {
        order_lines.sort_by(|a, b| a.product_id.as_bytes().cmp(b.product_id.as_bytes()));
    }
    let levels = products::levels(loaded.take(PRODUCTS)?);
    let mut room = Stockroom::new(stored, lines, levels);
    let outcomes: Vec<StockOutcome> = commands.iter().map(|c| room.apply(c)).collect();
    let changes = room.changes();
    let (reservations, lines) = insert_parts(&changes.new_reservations)?;
    let mut writes = Writes::new();
    writes
        .add(STOCK, products::adjust_part(&changes.stock_deltas)?)
        .add(RESERVATIONS, reservations)
        .add(LINES, lines)
        .add(RELEASES, released_part(&changes.released));
    Ok(Decided { outcomes, writes })
}

#[derive(Serialize)]
struct NewReservation {
    order_id: Uuid,
    status: ReservationStatus,
    reason: Option<RejectionReason>,
}

#[derive(Serialize)]
struct NewLine<'a> {
    order_id: Uuid,
    product_id: &'a str,
    quantity: i32,
}

/// The new reservations, and their lines: two parts of one statement, the lines' foreign key
/// checked once both are written.
fn insert_parts(
    reservations: &[(ReservationRow, Vec<StockLine>)],
) -> Result<(Option<Part>, Option<Part>), DbErr> {
    if reservations.is_empty() {
        return Ok((None, None));
    }
    let rows: Vec<NewReservation> = reservations
        .iter()
        .map(|(r, _)| NewReservation {
            order_id: r.order_id,
            status: r.status,
            reason: r.reason,
        })
        .collect();
    let reservations_part = Part::new(
        "INSERT INTO reservations (order_id, status, reason) \
         SELECT r.order_id, r.status, r.reason \
         FROM jsonb_to_recordset($1::jsonb) AS r(order_id uuid, status text, reason text) \
         RETURNING 1",
        vec![db::rows(&rows)?],
    );
    let lines: Vec<NewLine> = reservations
        .iter()
        .flat_map(|(r, lines)| {
            lines.iter().map(|line| NewLine {
                order_id: r.order_id,
                product_id: &line.product_id,
                quantity: line.quantity,
            })
        })
        .collect();
    let lines_part = if lines.is_empty() {
        None
    } else {
        Some(Part::new(
            "INSERT INTO reservation_lines (order_id, product_id, quantity) \
             SELECT l.order_id, l.product_id, l.quantity \
             FROM jsonb_to_recordset($1::jsonb) AS l(order_id uuid, product_id text, quantity int) \
             RETURNING 1",
            vec![db::rows(&lines)?],
        ))
    };
    Ok((Some(reservations_part), lines_part))
}

fn released_part(order_ids: &[Uuid]) -> Option<Part> {
    (!order_ids.is_empty()).then(|| {
        Part::new(
            "UPDATE reservations SET status = $2, updated_at = now() WHERE order_id = ANY($1) \
             RETURNING 1",
            vec![
                Value::from(order_ids.to_vec()),
                ReservationStatus::Released.into(),
            ],
        )
    })
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
    pub status: ReservationStatus,
}

/// Lines of reserved and released orders, newest order first; only the order's when given.
pub async fn list(
    db: &impl ConnectionTrait,
    order_id: Option<Uuid>,
) -> Result<Vec<ReservationLine>, DbErr> {
    // Two statements rather than an optional filter, each with a plan of its own
    // (`saga_common::db::connect`).
    const LINES: &str = "SELECT l.order_id, l.product_id, l.quantity, r.status \
         FROM reservation_lines l JOIN reservations r ON r.order_id = l.order_id";
    let statement = match order_id {
        Some(order_id) => stmt(
            &format!("{LINES} WHERE l.order_id = $1 ORDER BY l.product_id"),
            [Value::from(order_id)],
        ),
        None => stmt(
            &format!("{LINES} ORDER BY r.created_at DESC, l.order_id, l.product_id LIMIT 100"),
            [],
        ),
    };
    ReservationLine::find_by_statement(statement).all(db).await
}

pub fn router(db: DatabaseConnection) -> Router {
    // Operator only: a customer reads their business through the orchestrator's orders.
    saga_common::http::auth::protect(
        Router::new()
            .route("/api/reservations", get(list_reservations))
            .with_state(db),
    )
}

/// Lists reservation lines, newest order first; only the order's when given.
#[utoipa::path(get, path = "/api/reservations", tag = "reservations", params(OrderFilter),
    security(("operator_token" = [])),
    responses(
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 200, description = "Reservation lines", body = Vec<ReservationLine>),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
    ))]
pub async fn list_reservations(
    State(db): State<DatabaseConnection>,
    Params(filter): Params<OrderFilter>,
) -> Result<Json<Vec<ReservationLine>>, ApiError> {
    Ok(Json(list(&db, filter.order_id).await?))
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
