//! Charges and refunds.
//!
//! Rules: a charge debits the account when the balance covers it, else it is declined
//! (`insufficient_funds`, or `no_account`). One payment per order (a database constraint), so a
//! charge repeated under a new message id answers with the outcome already recorded. A refund
//! credits a charged payment back exactly once. A refund for an order never charged records the
//! order as `DECLINED`/`cancelled`, so a charge that arrives after it (commands can overtake each
//! other when a saga times out) is declined instead of taking money for a failed order.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, DeriveActiveEnum, EnumIter, FromQueryResult,
    Statement, Value,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use saga_common::contracts::DeclineReason;
use saga_common::db::{self, Loaded, Part, PartName, Reads, Writes, stmt};
use saga_common::http::query::{OrderFilter, Params};
use saga_common::http::{ApiError, ErrorBody};

use crate::accounts;

mod ledger;

pub use ledger::{Ledger, Outcome, PaymentCommand, PaymentRow};

/// Where a payment stands; stored by name in `payments.status`, named the same in JSON.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, EnumIter, DeriveActiveEnum,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(
    rs_type = "String",
    db_type = "Text",
    rename_all = "SCREAMING_SNAKE_CASE"
)]
pub enum PaymentStatus {
    Charged,
    Refunded,
    Declined,
}

#[derive(Debug, Clone, Serialize, FromQueryResult, ToSchema)]
pub struct Payment {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: i64,
    pub status: PaymentStatus,
    /// Set when declined.
    pub decline_reason: Option<DeclineReason>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a batch of commands was decided to do.
pub struct Decided {
    /// One per command, in order.
    pub outcomes: Vec<Outcome>,
    /// Carries the decisions out; run it on the same transaction.
    pub writes: Writes,
}

/// Adds to `reads` what `commands` need, locked (`FOR NO KEY UPDATE`): the payments of their
/// orders, then the accounts of the customers they name, each in key order, so batches running
/// side by side never wait on each other in a circle.
pub fn read_for(reads: &mut Reads, commands: &[PaymentCommand]) {
    if commands.is_empty() {
        return;
    }
    let order_ids: Vec<Uuid> = db::lock_order(commands.iter().map(PaymentCommand::order_id));
    let customers: Vec<String> =
        db::lock_order(commands.iter().map(|c| c.customer_id().to_owned()));
    reads
        .read(
            PAYMENTS,
            Some(Part::new(
                "SELECT payment_id, order_id, customer_id, amount_cents, status, decline_reason \
                 FROM payments WHERE order_id = ANY($1) ORDER BY order_id FOR NO KEY UPDATE",
                vec![Value::from(order_ids)],
            )),
        )
        .read(ACCOUNTS, Some(accounts::lock_read(&customers)));
}

const PAYMENTS: PartName = PartName::new("payments");
const ACCOUNTS: PartName = PartName::new("accounts");
const BALANCES: PartName = PartName::new("balances");
const CHARGES: PartName = PartName::new("charges");
const REFUNDS: PartName = PartName::new("refunds");

/// Decides `commands` in order with the [`Ledger`], against the rows [`read_for`] loaded. The
/// caller runs the returned writes (balances, new payments, refunds) on the same transaction.
///
/// Two batches racing to create the payment of one order both find none; the second insert then
/// fails on `one_payment_per_order`, its transaction rolls back, and the command is handled again
/// to find the winner's row.
pub fn decide(loaded: &mut Loaded, commands: &[&PaymentCommand]) -> Result<Decided, DbErr> {
    let stored: Vec<PaymentRow> = loaded.take(PAYMENTS)?;
    let balances = accounts::balances(loaded.take(ACCOUNTS)?);
    let mut ledger = Ledger::new(stored, balances);
    let outcomes: Vec<Outcome> = commands.iter().map(|c| ledger.apply(c)).collect();
    let changes = ledger.changes();
    let mut writes = Writes::new();
    writes
        .add(BALANCES, accounts::adjust_part(&changes.balance_deltas)?)
        .add(CHARGES, insert_part(&changes.new_payments)?)
        .add(REFUNDS, refunded_part(&changes.refunded));
    Ok(Decided { outcomes, writes })
}

#[derive(Serialize)]
struct NewPayment<'a> {
    payment_id: Uuid,
    order_id: Uuid,
    customer_id: &'a str,
    amount_cents: i64,
    status: PaymentStatus,
    decline_reason: Option<DeclineReason>,
}

fn insert_part(payments: &[PaymentRow]) -> Result<Option<Part>, DbErr> {
    if payments.is_empty() {
        return Ok(None);
    }
    let rows: Vec<NewPayment> = payments
        .iter()
        .map(|p| NewPayment {
            payment_id: p.payment_id,
            order_id: p.order_id,
            customer_id: &p.customer_id,
            amount_cents: p.amount_cents,
            status: p.status,
            decline_reason: p.decline_reason,
        })
        .collect();
    Ok(Some(Part::new(
        "INSERT INTO payments (payment_id, order_id, customer_id, amount_cents, status, decline_reason) \
         SELECT p.payment_id, p.order_id, p.customer_id, p.amount_cents, p.status, p.decline_reason \
         FROM jsonb_to_recordset($1::jsonb) AS p(payment_id uuid, order_id uuid, customer_id text, \
           amount_cents bigint, status text, decline_reason text) RETURNING 1",
        vec![db::rows(&rows)?],
    )))
}

fn refunded_part(payment_ids: &[Uuid]) -> Option<Part> {
    (!payment_ids.is_empty()).then(|| {
        Part::new(
            "UPDATE payments SET status = $2, updated_at = now() WHERE payment_id = ANY($1) \
             RETURNING 1",
            vec![
                Value::from(payment_ids.to_vec()),
                PaymentStatus::Refunded.into(),
            ],
        )
    })
}

const COLUMNS: &str = "payment_id, order_id, customer_id, amount_cents, status, decline_reason, created_at, updated_at";

pub async fn list(
    db: &impl ConnectionTrait,
    order_id: Option<Uuid>,
) -> Result<Vec<Payment>, DbErr> {
    Payment::find_by_statement(list_statement(order_id))
        .all(db)
        .await
}

/// The statement [`list`] runs.
pub fn list_statement(order_id: Option<Uuid>) -> Statement {
    // Two statements rather than an optional filter, each with a plan of its own
    // (`saga_common::db::connect`).
    match order_id {
        Some(order_id) => stmt(
            &format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1"),
            [Value::from(order_id)],
        ),
        // Payment ids are UUIDv7, ordered by creation time: the primary key is the index of
        // the newest (there is none on `created_at`).
        None => stmt(
            &format!("SELECT {COLUMNS} FROM payments ORDER BY payment_id DESC LIMIT 100"),
            [],
        ),
    }
}

pub fn router(db: DatabaseConnection) -> Router {
    // Operator only: a customer reads their business through the orchestrator's orders.
    saga_common::http::auth::protect(
        Router::new()
            .route("/api/payments", get(list_payments))
            .with_state(db),
    )
}

/// Lists payments, newest first; only the order's when given.
#[utoipa::path(get, path = "/api/payments", tag = "payments", params(OrderFilter),
    security(("operator_token" = [])),
    responses(
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 200, description = "Payments", body = Vec<Payment>),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
    ))]
pub async fn list_payments(
    State(db): State<DatabaseConnection>,
    Params(filter): Params<OrderFilter>,
) -> Result<Json<Vec<Payment>>, ApiError> {
    Ok(Json(list(&db, filter.order_id).await?))
}
