//! SQL for orders, their saga state and their timeline. Every function takes
//! `&impl ConnectionTrait`, so it runs the same inside or outside a transaction.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use saga_common::db::stmt;

use super::model::{Order, OrderItem, OrderStatus};
use crate::saga::SagaState;

/// Unique constraint on `orders.idempotency_key`.
pub const IDEMPOTENCY_KEY_CONSTRAINT: &str = "orders_idempotency_key";

const COLUMNS: &str = "order_id, customer_id, items, total_cents, saga_state, failure_reason, \
                       version, deadline_at, resends, pending_message_id, correlation_id, \
                       idempotency_key, created_at, updated_at";

#[derive(Debug, FromQueryResult)]
struct OrderRow {
    order_id: Uuid,
    customer_id: String,
    items: serde_json::Value,
    total_cents: i64,
    saga_state: String,
    failure_reason: Option<String>,
    version: i32,
    deadline_at: Option<DateTime<Utc>>,
    resends: i32,
    pending_message_id: Option<Uuid>,
    correlation_id: String,
    idempotency_key: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<OrderRow> for Order {
    type Error = DbErr;

    fn try_from(row: OrderRow) -> Result<Self, DbErr> {
        let state = SagaState::from_columns(&row.saga_state, row.failure_reason.as_deref())
            .ok_or_else(|| {
                DbErr::Custom(format!(
                    "order {} has an unknown saga state {} / {:?}",
                    row.order_id, row.saga_state, row.failure_reason
                ))
            })?;
        let items: Vec<OrderItem> = serde_json::from_value(row.items).map_err(|e| {
            DbErr::Custom(format!("order {} has unreadable items: {e}", row.order_id))
        })?;
        Ok(Order {
            order_id: row.order_id,
            customer_id: row.customer_id,
            items,
            total_cents: row.total_cents,
            state,
            version: row.version,
            deadline_at: row.deadline_at,
            resends: row.resends,
            pending_message_id: row.pending_message_id,
            correlation_id: row.correlation_id,
            idempotency_key: row.idempotency_key,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

async fn query(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<Order>, DbErr> {
    OrderRow::find_by_statement(stmt(sql, values))
        .all(db)
        .await?
        .into_iter()
        .map(Order::try_from)
        .collect()
}

pub async fn insert(db: &impl ConnectionTrait, order: &Order) -> Result<(), DbErr> {
    let items = serde_json::to_value(&order.items)
        .map_err(|e| DbErr::Custom(format!("cannot serialise items: {e}")))?;
    db.execute_raw(stmt(
        "INSERT INTO orders (order_id, customer_id, items, total_cents, saga_state, failure_reason, \
         version, correlation_id, idempotency_key, created_at, updated_at, deadline_at, resends, \
         pending_message_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        [
            order.order_id.into(),
            order.customer_id.clone().into(),
            items.into(),
            order.total_cents.into(),
            order.state.name().into(),
            order.state.failure_reason().map(|r| r.as_str().to_owned()).into(),
            order.version.into(),
            order.correlation_id.clone().into(),
            order.idempotency_key.clone().into(),
            order.created_at.into(),
            order.updated_at.into(),
            order.deadline_at.into(),
            order.resends.into(),
            Value::Uuid(order.pending_message_id),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn find(db: &impl ConnectionTrait, order_id: Uuid) -> Result<Option<Order>, DbErr> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE order_id = $1");
    Ok(query(db, &sql, vec![order_id.into()]).await?.pop())
}

/// Reads and locks the order until the transaction ends.
pub async fn find_for_update(
    db: &impl ConnectionTrait,
    order_id: Uuid,
) -> Result<Option<Order>, DbErr> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE order_id = $1 FOR UPDATE");
    Ok(query(db, &sql, vec![order_id.into()]).await?.pop())
}

pub async fn find_by_idempotency_key(
    db: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<Order>, DbErr> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE idempotency_key = $1");
    Ok(query(db, &sql, vec![key.into()]).await?.pop())
}

/// Position in the newest-first listing: the last order of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub order_id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!(
            "{}_{}",
            self.created_at.timestamp_micros(),
            self.order_id.simple()
        )
    }

    pub fn decode(value: &str) -> Option<Self> {
        let (micros, id) = value.split_once('_')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            order_id: Uuid::parse_str(id).ok()?,
        })
    }
}

#[derive(Debug, Default)]
pub struct ListFilter {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<String>,
    pub after: Option<Cursor>,
    pub limit: u64,
}

/// Newest first. Returns at most `limit` orders.
pub async fn list(db: &impl ConnectionTrait, filter: &ListFilter) -> Result<Vec<Order>, DbErr> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders \
         WHERE ($1::text IS NULL OR status = $1) \
           AND ($2::text IS NULL OR customer_id = $2) \
           AND ($3::timestamptz IS NULL OR (created_at, order_id) < ($3, $4::uuid)) \
         ORDER BY created_at DESC, order_id DESC LIMIT $5"
    );
    query(
        db,
        &sql,
        vec![
            filter.status.map(|s| s.as_str().to_owned()).into(),
            filter.customer_id.clone().into(),
            filter.after.as_ref().map(|c| c.created_at).into(),
            Value::Uuid(filter.after.as_ref().map(|c| c.order_id)),
            i64::try_from(filter.limit).unwrap_or(i64::MAX).into(),
        ],
    )
    .await
}

/// A saga step as it is written: the new state and what the timeout worker needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub to: SagaState,
    pub deadline_at: Option<DateTime<Utc>>,
    pub resends: i32,
    pub pending_message_id: Option<Uuid>,
}

/// Moves the saga from `expected_version`. `false` means another consumer got there first (the
/// version moved): the caller reloads and tries again.
pub async fn advance(
    db: &impl ConnectionTrait,
    order_id: Uuid,
    expected_version: i32,
    step: &Step,
) -> Result<bool, DbErr> {
    let result = db
        .execute_raw(stmt(
            "UPDATE orders SET saga_state = $3, failure_reason = $4, version = version + 1, \
             deadline_at = $5, resends = $6, pending_message_id = $7, updated_at = now() \
             WHERE order_id = $1 AND version = $2",
            [
                order_id.into(),
                expected_version.into(),
                step.to.name().into(),
                step.to
                    .failure_reason()
                    .map(|r| r.as_str().to_owned())
                    .into(),
                step.deadline_at.into(),
                step.resends.into(),
                Value::Uuid(step.pending_message_id),
            ],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Claims the most overdue saga that no other worker holds (`FOR UPDATE SKIP LOCKED`): several
/// orchestrator instances sweep at once without ever handling one saga twice concurrently.
pub async fn claim_overdue(db: &impl ConnectionTrait) -> Result<Option<Order>, DbErr> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE deadline_at <= now() \
         ORDER BY deadline_at LIMIT 1 FOR UPDATE SKIP LOCKED"
    );
    Ok(query(db, &sql, vec![]).await?.pop())
}

/// Sagas still in progress, the most overdue first; with `overdue_only`, just those past their
/// deadline.
pub async fn in_progress(
    db: &impl ConnectionTrait,
    overdue_only: bool,
    limit: u64,
) -> Result<Vec<Order>, DbErr> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE deadline_at IS NOT NULL \
         AND (NOT $1 OR deadline_at <= now()) ORDER BY deadline_at LIMIT $2"
    );
    query(
        db,
        &sql,
        vec![
            overdue_only.into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ],
    )
    .await
}

/// One saga transition, for the timeline.
#[derive(Debug, Clone, Serialize, FromQueryResult, ToSchema)]
pub struct TimelineEntry {
    /// Null for the first entry (the order was placed).
    #[schema(example = "AWAITING_PAYMENT")]
    pub from_state: Option<String>,
    #[schema(example = "AWAITING_STOCK")]
    pub to_state: String,
    /// The message type (or `order.placed`) that caused the transition.
    #[schema(example = "payment.charged")]
    pub trigger: String,
    /// Id of that message (for `order.placed`, the id the request was given).
    pub message_id: Uuid,
    /// Message types sent as a result.
    #[schema(example = json!(["inventory.reserve"]))]
    pub commands: Vec<String>,
    pub occurred_at: DateTime<Utc>,
}

pub async fn record_transition(
    db: &impl ConnectionTrait,
    order_id: Uuid,
    from: Option<SagaState>,
    to: SagaState,
    trigger: &str,
    message_id: Uuid,
    commands: Vec<String>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        "INSERT INTO saga_transitions (order_id, from_state, to_state, trigger, message_id, commands) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        [
            order_id.into(),
            from.map(|s| s.name().to_owned()).into(),
            to.name().into(),
            trigger.into(),
            message_id.into(),
            commands.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn timeline(
    db: &impl ConnectionTrait,
    order_id: Uuid,
) -> Result<Vec<TimelineEntry>, DbErr> {
    TimelineEntry::find_by_statement(stmt(
        "SELECT from_state, to_state, trigger, message_id, commands, occurred_at \
         FROM saga_transitions WHERE order_id = $1 ORDER BY id",
        [order_id.into()],
    ))
    .all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_763_000_000_123_456).unwrap(),
            order_id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("nope"), None);
        assert_eq!(Cursor::decode("12_notauuid"), None);
    }
}
