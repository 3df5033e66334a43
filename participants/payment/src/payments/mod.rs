//! Charges and refunds.
//!
//! Rules: a charge debits the account when the balance covers it, else it is declined
//! (`insufficient_funds`, or `no_account`). One payment per order (a database constraint), so a
//! charge repeated under a new message id answers with the outcome already recorded. A refund
//! credits a charged payment back exactly once. A refund for an order never charged records the
//! order as `DECLINED`/`cancelled`, so a charge that arrives after it (commands can overtake each
//! other when a saga times out) is declined instead of taking money for a failed order.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, Value};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use saga_common::db::stmt;
use saga_common::http::extract::parse_uuid;
use saga_common::http::{ApiError, ErrorBody};

use crate::accounts;

pub const CHARGED: &str = "CHARGED";
pub const REFUNDED: &str = "REFUNDED";
pub const DECLINED: &str = "DECLINED";

pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
pub const NO_ACCOUNT: &str = "no_account";
/// A refund arrived before any charge (the saga gave up first): the order is closed to charges.
pub const CANCELLED: &str = "cancelled";

#[derive(Debug, Clone, Serialize, FromQueryResult, ToSchema)]
pub struct Payment {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: i64,
    /// `CHARGED`, `REFUNDED` or `DECLINED`.
    #[schema(example = "CHARGED")]
    pub status: String,
    /// `insufficient_funds` or `no_account` when declined.
    pub decline_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a charge command ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Charged { payment_id: Uuid, amount_cents: i64 },
    Declined { reason: String },
}

/// Charges `amount` for `order_id`, or returns the outcome recorded for that order before.
pub async fn charge(
    db: &impl ConnectionTrait,
    order_id: Uuid,
    customer_id: &str,
    amount_cents: i64,
) -> Result<ChargeOutcome, DbErr> {
    if let Some(existing) = find_for_update(db, order_id).await? {
        return Ok(match existing.decline_reason {
            Some(reason) if existing.status == DECLINED => ChargeOutcome::Declined { reason },
            _ => ChargeOutcome::Charged {
                payment_id: existing.payment_id,
                amount_cents: existing.amount_cents,
            },
        });
    }
    let payment_id = Uuid::now_v7();
    let (status, reason) = if accounts::debit(db, customer_id, amount_cents).await? {
        (CHARGED, None)
    } else if accounts::find(db, customer_id).await?.is_some() {
        (DECLINED, Some(INSUFFICIENT_FUNDS))
    } else {
        (DECLINED, Some(NO_ACCOUNT))
    };
    db.execute_raw(stmt(
        "INSERT INTO payments (payment_id, order_id, customer_id, amount_cents, status, decline_reason) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        [
            payment_id.into(),
            order_id.into(),
            customer_id.into(),
            amount_cents.into(),
            status.into(),
            reason.map(str::to_owned).into(),
        ],
    ))
    .await?;
    Ok(match reason {
        None => ChargeOutcome::Charged {
            payment_id,
            amount_cents,
        },
        Some(reason) => ChargeOutcome::Declined {
            reason: reason.to_owned(),
        },
    })
}

/// Refunds the order's charge once; returns the amount refunded by this or an earlier refund
/// (0 when nothing was ever charged).
pub async fn refund(
    db: &impl ConnectionTrait,
    order_id: Uuid,
    customer_id: &str,
) -> Result<i64, DbErr> {
    let Some(payment) = find_for_update(db, order_id).await? else {
        // Two refunds racing here both insert; the loser's unique violation rolls it back and
        // its retry finds this row.
        db.execute_raw(stmt(
            "INSERT INTO payments (payment_id, order_id, customer_id, amount_cents, status, decline_reason) \
             VALUES ($1, $2, $3, 0, $4, $5)",
            [
                Uuid::now_v7().into(),
                order_id.into(),
                customer_id.into(),
                DECLINED.into(),
                CANCELLED.into(),
            ],
        ))
        .await?;
        return Ok(0);
    };
    match payment.status.as_str() {
        CHARGED => {
            accounts::credit(db, &payment.customer_id, payment.amount_cents).await?;
            db.execute_raw(stmt(
                "UPDATE payments SET status = $2, updated_at = now() WHERE payment_id = $1",
                [payment.payment_id.into(), REFUNDED.into()],
            ))
            .await?;
            Ok(payment.amount_cents)
        }
        REFUNDED => Ok(payment.amount_cents),
        _ => Ok(0),
    }
}

const COLUMNS: &str = "payment_id, order_id, customer_id, amount_cents, status, decline_reason, created_at, updated_at";

async fn find_for_update(
    db: &impl ConnectionTrait,
    order_id: Uuid,
) -> Result<Option<Payment>, DbErr> {
    Payment::find_by_statement(stmt(
        &format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1 FOR UPDATE"),
        [order_id.into()],
    ))
    .one(db)
    .await
}

pub async fn list(
    db: &impl ConnectionTrait,
    order_id: Option<Uuid>,
) -> Result<Vec<Payment>, DbErr> {
    Payment::find_by_statement(stmt(
        &format!(
            "SELECT {COLUMNS} FROM payments WHERE ($1::uuid IS NULL OR order_id = $1) \
             ORDER BY created_at DESC LIMIT 100"
        ),
        [Value::Uuid(order_id)],
    ))
    .all(db)
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PaymentFilter {
    /// Only the payment of this order (UUID). Without it: the 100 newest payments.
    pub order_id: Option<String>,
}

pub fn router(db: DatabaseConnection) -> Router {
    Router::new()
        .route("/api/payments", get(list_payments))
        .with_state(db)
}

/// Lists payments, newest first.
#[utoipa::path(get, path = "/api/payments", tag = "payments", params(PaymentFilter),
    responses(
        (status = 200, description = "Payments", body = Vec<Payment>),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
    ))]
pub async fn list_payments(
    State(db): State<DatabaseConnection>,
    Query(filter): Query<PaymentFilter>,
) -> Result<Json<Vec<Payment>>, ApiError> {
    let order_id = filter
        .order_id
        .as_deref()
        .map(|id| parse_uuid("order_id", id))
        .transpose()?;
    Ok(Json(list(&db, order_id).await?))
}
