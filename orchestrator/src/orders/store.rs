//! SQL for orders, their saga state and their timeline. Every function takes
//! `&impl ConnectionTrait`, so it runs the same inside or outside a transaction.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use saga_common::db::{self, Loaded, Part, stmt};

use super::model::{Order, OrderItem, OrderStatus};
use crate::saga::SagaState;

/// Unique constraint on `orders.idempotency_key`.
pub const IDEMPOTENCY_KEY_CONSTRAINT: &str = "orders_idempotency_key";

const COLUMNS: &str = "order_id, customer_id, items, total_cents, saga_state, failure_reason, \
                       version, deadline_at, resends, pending_message_id, correlation_id, \
                       idempotency_key, created_at, updated_at";

#[derive(Debug, FromQueryResult, serde::Deserialize)]
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

#[derive(Serialize)]
struct NewOrderRow<'a> {
    order_id: Uuid,
    customer_id: &'a str,
    items: &'a [OrderItem],
    total_cents: i64,
    saga_state: &'a str,
    failure_reason: Option<&'a str>,
    version: i32,
    correlation_id: &'a str,
    idempotency_key: Option<&'a str>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deadline_at: Option<DateTime<Utc>>,
    resends: i32,
    pending_message_id: Option<Uuid>,
}

/// Inserts `orders` as a part of a [`Writes`](saga_common::db::Writes) returning the ids inserted. An order whose
/// idempotency key another order holds already (or an earlier one of `orders`) is left out.
pub fn insert_part(orders: &[&Order]) -> Result<Option<Part>, DbErr> {
    if orders.is_empty() {
        return Ok(None);
    }
    let rows: Vec<NewOrderRow> = orders
        .iter()
        .map(|order| NewOrderRow {
            order_id: order.order_id,
            customer_id: &order.customer_id,
            items: &order.items,
            total_cents: order.total_cents,
            saga_state: order.state.name(),
            failure_reason: order.state.failure_reason().map(|r| r.as_str()),
            version: order.version,
            correlation_id: &order.correlation_id,
            idempotency_key: order.idempotency_key.as_deref(),
            created_at: order.created_at,
            updated_at: order.updated_at,
            deadline_at: order.deadline_at,
            resends: order.resends,
            pending_message_id: order.pending_message_id,
        })
        .collect();
    Ok(Some(Part::new(
        format!(
            "INSERT INTO orders (order_id, customer_id, items, total_cents, saga_state, \
             failure_reason, version, correlation_id, idempotency_key, created_at, updated_at, \
             deadline_at, resends, pending_message_id) \
             SELECT o.order_id, o.customer_id, o.items, o.total_cents, o.saga_state, \
             o.failure_reason, o.version, o.correlation_id, o.idempotency_key, o.created_at, \
             o.updated_at, o.deadline_at, o.resends, o.pending_message_id \
             FROM jsonb_to_recordset($1::jsonb) AS o(order_id uuid, customer_id text, items jsonb, \
               total_cents bigint, saga_state text, failure_reason text, version int, \
               correlation_id text, idempotency_key text, created_at timestamptz, \
               updated_at timestamptz, deadline_at timestamptz, resends int, \
               pending_message_id uuid) \
             ON CONFLICT ON CONSTRAINT {IDEMPOTENCY_KEY_CONSTRAINT} DO NOTHING \
             RETURNING order_id"
        ),
        vec![db::rows(&rows)?],
    )))
}

/// Inserts `orders` alone (no timeline, no messages); returns how many were inserted.
pub async fn insert_all(db: &impl ConnectionTrait, orders: &[&Order]) -> Result<u64, DbErr> {
    match insert_part(orders)? {
        Some(part) => part.execute(db).await,
        None => Ok(0),
    }
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
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE order_id = $1 FOR NO KEY UPDATE");
    Ok(query(db, &sql, vec![order_id.into()]).await?.pop())
}

/// The query that locks the orders among `order_ids` until the transaction ends (`FOR NO KEY
/// UPDATE`), in id order: two transactions locking overlapping sets wait on each other in one
/// direction only, never in a circle. For a [`Reads`](saga_common::db::Reads); read back with
/// [`orders`].
pub fn lock_read(order_ids: &[Uuid]) -> Part {
    Part::new(
        format!(
            "SELECT {COLUMNS} FROM orders WHERE order_id = ANY($1) \
             ORDER BY order_id FOR NO KEY UPDATE"
        ),
        vec![Value::from(order_ids.to_vec())],
    )
}

/// The orders a [`lock_read`] named `name` returned.
pub fn orders(loaded: &mut Loaded, name: &str) -> Result<Vec<Order>, DbErr> {
    loaded
        .take::<OrderRow>(name)?
        .into_iter()
        .map(Order::try_from)
        .collect()
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

/// A saga step as it is written: the new state and what the timeout worker needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub to: SagaState,
    pub deadline_at: Option<DateTime<Utc>>,
    pub resends: i32,
    pub pending_message_id: Option<Uuid>,
}

/// One saga moved by [`advance_all`].
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    pub order_id: Uuid,
    /// The version the saga was read at.
    pub expected_version: i32,
    /// The version it gets (one more per step taken).
    pub version: i32,
    pub step: Step,
}

#[derive(Serialize)]
struct AdvanceRow<'a> {
    order_id: Uuid,
    expected_version: i32,
    version: i32,
    saga_state: &'a str,
    failure_reason: Option<&'a str>,
    deadline_at: Option<DateTime<Utc>>,
    resends: i32,
    pending_message_id: Option<Uuid>,
}

/// Moves every saga of `advances` from its expected version, as a part of a [`Writes`](saga_common::db::Writes)
/// returning one row per saga moved. Fewer rows than advances means another writer got to one
/// of them first (its version moved): nothing may be kept, the caller rolls back.
pub fn advance_part(advances: &[Advance]) -> Result<Option<Part>, DbErr> {
    if advances.is_empty() {
        return Ok(None);
    }
    let rows: Vec<AdvanceRow> = advances
        .iter()
        .map(|a| AdvanceRow {
            order_id: a.order_id,
            expected_version: a.expected_version,
            version: a.version,
            saga_state: a.step.to.name(),
            failure_reason: a.step.to.failure_reason().map(|r| r.as_str()),
            deadline_at: a.step.deadline_at,
            resends: a.step.resends,
            pending_message_id: a.step.pending_message_id,
        })
        .collect();
    Ok(Some(Part::new(
        "UPDATE orders o SET saga_state = a.saga_state, failure_reason = a.failure_reason, \
         version = a.version, deadline_at = a.deadline_at, resends = a.resends, \
         pending_message_id = a.pending_message_id, updated_at = now() \
         FROM jsonb_to_recordset($1::jsonb) AS a(order_id uuid, expected_version int, version int, \
           saga_state text, failure_reason text, deadline_at timestamptz, resends int, \
           pending_message_id uuid) \
         WHERE o.order_id = a.order_id AND o.version = a.expected_version RETURNING 1",
        vec![db::rows(&rows)?],
    )))
}

/// Claims up to `limit` of the most overdue sagas that no other worker holds (`FOR NO KEY UPDATE
/// SKIP LOCKED`): several orchestrator instances sweep at once without ever handling one saga
/// twice concurrently.
pub async fn claim_overdue(db: &impl ConnectionTrait, limit: usize) -> Result<Vec<Order>, DbErr> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE deadline_at <= now() \
         ORDER BY deadline_at LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED"
    );
    query(
        db,
        &sql,
        vec![i64::try_from(limit).unwrap_or(i64::MAX).into()],
    )
    .await
}

/// Sagas still in progress, the most overdue first; with `overdue_only`, just those past their
/// deadline.
pub async fn in_progress(
    db: &impl ConnectionTrait,
    overdue_only: bool,
    limit: u64,
) -> Result<Vec<Order>, DbErr> {
    // Two statements rather than an optional filter, each with a plan of its own (`db::connect`).
    let overdue = if overdue_only {
        "AND deadline_at <= now() "
    } else {
        ""
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE deadline_at IS NOT NULL \
         {overdue}ORDER BY deadline_at LIMIT $1"
    );
    query(
        db,
        &sql,
        vec![i64::try_from(limit).unwrap_or(i64::MAX).into()],
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

/// One timeline entry as [`record_transitions`] writes it.
#[derive(Debug, Serialize)]
pub struct TransitionRow<'a> {
    pub order_id: Uuid,
    /// `None` for the first entry (the order was placed).
    pub from_state: Option<&'a str>,
    pub to_state: &'a str,
    pub trigger: &'a str,
    pub message_id: Uuid,
    /// Message types sent as a result.
    pub commands: Vec<String>,
}

/// Appends `rows` to the timeline, in this order, as a part of a [`Writes`](saga_common::db::Writes); with `sagas` (a
/// query of order ids, such as another part's `RETURNING`), only the rows of those orders.
pub fn transitions_part(
    rows: &[TransitionRow<'_>],
    sagas: Option<&str>,
) -> Result<Option<Part>, DbErr> {
    if rows.is_empty() {
        return Ok(None);
    }
    let filter = sagas
        .map(|sagas| format!("WHERE t.order_id IN ({sagas}) "))
        .unwrap_or_default();
    Ok(Some(Part::new(
        format!(
            "INSERT INTO saga_transitions (order_id, from_state, to_state, trigger, message_id, commands) \
             SELECT t.order_id, t.from_state, t.to_state, t.trigger, t.message_id, t.commands \
             FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (order_id uuid, from_state text, \
               to_state text, trigger text, message_id uuid, commands text[])) WITH ORDINALITY \
               AS t(order_id, from_state, to_state, trigger, message_id, commands, ordinality) \
             {filter}ORDER BY t.ordinality RETURNING 1"
        ),
        vec![db::rows(rows)?],
    )))
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
