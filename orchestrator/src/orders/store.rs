//! SQL for orders: the insert of new ones (with their saga's first step), reads by id, by
//! idempotency key and by page. Every function takes `&impl ConnectionTrait`, so it runs the
//! same inside or outside a transaction. The saga's own columns are `saga::store`'s.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};
use serde::Serialize;
use uuid::Uuid;

use saga_common::db::{self, Part};

use super::model::{Order, OrderItem, OrderStatus};
pub use crate::saga::search::Cursor;
use crate::saga::store::{Step, StepColumns, items_of, state_of};

/// Unique constraint on `orders.idempotency_key`.
pub const IDEMPOTENCY_KEY_CONSTRAINT: &str = "orders_idempotency_key";

const COLUMNS: &str = "order_id, customer_id, items, total_cents, saga_state, failure_reason, \
                       correlation_id, idempotency_key, created_at, updated_at, traceparent";

#[derive(Debug, FromQueryResult, serde::Deserialize)]
struct OrderRow {
    order_id: Uuid,
    customer_id: String,
    items: serde_json::Value,
    total_cents: i64,
    saga_state: String,
    failure_reason: Option<String>,
    correlation_id: String,
    idempotency_key: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    traceparent: Option<String>,
}

impl TryFrom<OrderRow> for Order {
    type Error = DbErr;

    fn try_from(row: OrderRow) -> Result<Self, DbErr> {
        let state = state_of(row.order_id, &row.saga_state, row.failure_reason.as_deref())?;
        Ok(Order {
            order_id: row.order_id,
            customer_id: row.customer_id,
            items: items_of(row.order_id, row.items)?,
            total_cents: row.total_cents,
            state,
            correlation_id: row.correlation_id,
            idempotency_key: row.idempotency_key,
            created_at: row.created_at,
            updated_at: row.updated_at,
            traceparent: row.traceparent,
        })
    }
}

async fn query(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<Order>, DbErr> {
    db::query_as::<OrderRow, _>(db, sql, values).await
}

#[derive(Serialize)]
struct NewOrderRow<'a> {
    order_id: Uuid,
    customer_id: &'a str,
    items: &'a [OrderItem],
    total_cents: i64,
    correlation_id: &'a str,
    idempotency_key: Option<&'a str>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    traceparent: Option<&'a str>,
    #[serde(flatten)]
    saga: StepColumns,
}

/// Inserts `orders`, each with its saga's first step (as `plan::start` decided it), as a part
/// of a [`Writes`](saga_common::db::Writes) returning the ids inserted (`order_id`, with
/// `created_at` for the sales rollup). An order whose idempotency key another order holds
/// already (or an earlier one of `orders`) is left out.
pub fn insert_part(orders: &[(&Order, &Step)]) -> Result<Option<Part>, DbErr> {
    if orders.is_empty() {
        return Ok(None);
    }
    let rows: Vec<NewOrderRow> = orders
        .iter()
        .map(|(order, step)| NewOrderRow {
            order_id: order.order_id,
            customer_id: &order.customer_id,
            items: &order.items,
            total_cents: order.total_cents,
            correlation_id: &order.correlation_id,
            idempotency_key: order.idempotency_key.as_deref(),
            created_at: order.created_at,
            updated_at: order.updated_at,
            traceparent: order.traceparent.as_deref(),
            saga: StepColumns::new(step, 0),
        })
        .collect();
    Ok(Some(Part::new(
        format!(
            "INSERT INTO orders (order_id, customer_id, items, total_cents, saga_state, \
             failure_reason, version, correlation_id, idempotency_key, created_at, updated_at, \
             traceparent, deadline_at, resends, pending_message_id) \
             SELECT o.order_id, o.customer_id, o.items, o.total_cents, o.saga_state, \
             o.failure_reason, o.version, o.correlation_id, o.idempotency_key, o.created_at, \
             o.updated_at, o.traceparent, o.deadline_at, o.resends, o.pending_message_id \
             FROM jsonb_to_recordset($1::jsonb) AS o(order_id uuid, customer_id text, items jsonb, \
               total_cents bigint, correlation_id text, idempotency_key text, \
               created_at timestamptz, updated_at timestamptz, traceparent text, {}) \
             ON CONFLICT ON CONSTRAINT {IDEMPOTENCY_KEY_CONSTRAINT} DO NOTHING \
             RETURNING order_id, created_at",
            StepColumns::TYPES
        ),
        vec![db::rows(&rows)?],
    )))
}

/// Inserts `orders` alone (no timeline, no messages); returns how many were inserted.
pub async fn insert_all(
    db: &impl ConnectionTrait,
    orders: &[(&Order, &Step)],
) -> Result<u64, DbErr> {
    match insert_part(orders)? {
        Some(part) => part.execute(db).await,
        None => Ok(0),
    }
}

pub async fn find(db: &impl ConnectionTrait, order_id: Uuid) -> Result<Option<Order>, DbErr> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE order_id = $1");
    Ok(query(db, &sql, vec![order_id.into()]).await?.pop())
}

pub async fn find_by_idempotency_key(
    db: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<Order>, DbErr> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE idempotency_key = $1");
    Ok(query(db, &sql, vec![key.into()]).await?.pop())
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
    let (sql, values) = list_statement(filter);
    query(db, &sql, values).await
}

/// The statement [`list`] runs for `filter`, and its values.
pub fn list_statement(filter: &ListFilter) -> (String, Vec<Value>) {
    // Only the filters given go into the statement: each combination is its own prepared
    // statement, whose generic plan walks the one index that serves it (see `db::connect`).
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(status) = filter.status {
        // A literal (one of the few fixed status names, never input), not a parameter: a
        // generic plan for `status = $1` must suit every status at once, and when the
        // statistics show nearly all orders COMPLETED, it walks the newest-first index and
        // filters, reading the whole table to list the few PENDING ones.
        conditions.push(format!("status = '{}'", status.as_str()));
    }
    if let Some(customer_id) = &filter.customer_id {
        values.push(customer_id.clone().into());
        conditions.push(format!("customer_id = ${}", values.len()));
    }
    if let Some(after) = &filter.after {
        values.push(after.created_at.into());
        values.push(after.order_id.into());
        conditions.push(format!(
            "(created_at, order_id) < (${}, ${})",
            values.len() - 1,
            values.len()
        ));
    }
    values.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
    let filters = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM orders {filters}ORDER BY created_at DESC, order_id DESC LIMIT ${}",
        values.len()
    );
    (sql, values)
}
