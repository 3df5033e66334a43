//! The saga's storage: a saga is the saga columns of its order's row, plus what its commands
//! carry. Reads (lock, claim the overdue, search) and the one write of a step
//! ([`advance_part`]; a first step goes into the order's insert as [`StepColumns`]). Every
//! function takes `&impl ConnectionTrait`, so it runs the same inside or outside a transaction.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use saga_common::db::{self, Loaded, Part, PartName};

use super::machine::SagaState;
use super::search::{self, Cursor, SagaFilter};

const COLUMNS: &str = "order_id, customer_id, items, total_cents, saga_state, failure_reason, \
                       version, deadline_at, resends, pending_message_id, correlation_id, \
                       created_at, updated_at, traceparent";

/// A stored saga.
#[derive(Debug, Clone, PartialEq)]
pub struct Saga {
    pub order_id: Uuid,
    pub customer_id: String,
    /// The order's lines, as the stock commands carry them.
    pub items: Vec<Line>,
    pub total_cents: i64,
    pub state: SagaState,
    /// Optimistic-concurrency version of the saga row.
    pub version: i32,
    /// When the timeout worker acts if nothing happened; `None` once final.
    pub deadline_at: Option<DateTime<Utc>>,
    /// Times the pending command was resent in the current state (held resends included):
    /// the exponent of the next deadline's backoff (`plan::backoff`).
    pub resends: i32,
    /// The command the saga waits on, resent with this same id.
    pub pending_message_id: Option<Uuid>,
    pub correlation_id: String,
    /// When the order was placed: a saga's duration counts from it.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The order's trace context (`orders.traceparent`), continued by deadline and operator
    /// steps; `None` for an order placed before tracing.
    pub traceparent: Option<String>,
}

/// One order line as the saga needs it: what to reserve, and the price `order.completed` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

#[derive(Debug, FromQueryResult, Deserialize)]
struct SagaRow {
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
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    traceparent: Option<String>,
}

/// The state its two columns hold, or an error naming the order.
pub fn state_of(order_id: Uuid, name: &str, reason: Option<&str>) -> Result<SagaState, DbErr> {
    SagaState::from_columns(name, reason).ok_or_else(|| {
        DbErr::Custom(format!(
            "order {order_id} has an unknown saga state {name} / {reason:?}"
        ))
    })
}

/// The order's `items` column as `T` (the saga's [`Line`]s, the order's items), or an error
/// naming the order.
pub fn items_of<T: serde::de::DeserializeOwned>(
    order_id: Uuid,
    items: serde_json::Value,
) -> Result<T, DbErr> {
    serde_json::from_value(items)
        .map_err(|e| DbErr::Custom(format!("order {order_id} has unreadable items: {e}")))
}

impl TryFrom<SagaRow> for Saga {
    type Error = DbErr;

    fn try_from(row: SagaRow) -> Result<Self, DbErr> {
        let state = state_of(row.order_id, &row.saga_state, row.failure_reason.as_deref())?;
        Ok(Saga {
            order_id: row.order_id,
            customer_id: row.customer_id,
            items: items_of(row.order_id, row.items)?,
            total_cents: row.total_cents,
            state,
            version: row.version,
            deadline_at: row.deadline_at,
            resends: row.resends,
            pending_message_id: row.pending_message_id,
            correlation_id: row.correlation_id,
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
) -> Result<Vec<Saga>, DbErr> {
    db::query_as::<SagaRow, _>(db, sql, values).await
}

fn limit_value(limit: u64) -> Value {
    i64::try_from(limit).unwrap_or(i64::MAX).into()
}

pub async fn find(db: &impl ConnectionTrait, order_id: Uuid) -> Result<Option<Saga>, DbErr> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE order_id = $1");
    Ok(query(db, &sql, vec![order_id.into()]).await?.pop())
}

/// Reads and locks the saga until the transaction ends.
pub async fn find_for_update(
    db: &impl ConnectionTrait,
    order_id: Uuid,
) -> Result<Option<Saga>, DbErr> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE order_id = $1 FOR NO KEY UPDATE");
    Ok(query(db, &sql, vec![order_id.into()]).await?.pop())
}

/// The query that locks the sagas among `order_ids` until the transaction ends (`FOR NO KEY
/// UPDATE`), in id order: two transactions locking overlapping sets wait on each other in one
/// direction only, never in a circle. For a [`Reads`](saga_common::db::Reads); read back with
/// [`sagas`].
pub fn lock_read(order_ids: &[Uuid]) -> Part {
    Part::new(
        format!(
            "SELECT {COLUMNS} FROM orders WHERE order_id = ANY($1) \
             ORDER BY order_id FOR NO KEY UPDATE"
        ),
        vec![Value::from(order_ids.to_vec())],
    )
}

/// The sagas a [`lock_read`] named `name` returned.
pub fn sagas(loaded: &mut Loaded, name: PartName) -> Result<Vec<Saga>, DbErr> {
    loaded
        .take::<SagaRow>(name)?
        .into_iter()
        .map(Saga::try_from)
        .collect()
}

/// Claims up to `limit` of the most overdue sagas that no other worker holds (`FOR NO KEY UPDATE
/// SKIP LOCKED`): several orchestrator instances sweep at once without ever handling one saga
/// twice concurrently.
pub async fn claim_overdue(db: &impl ConnectionTrait, limit: usize) -> Result<Vec<Saga>, DbErr> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE deadline_at <= now() \
         ORDER BY deadline_at LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED"
    );
    query(db, &sql, vec![limit_value(limit as u64)]).await
}

/// The sagas `filter` selects, newest first, after `after` (the last of the previous page), at
/// most `limit`. Which index serves which filter: [`search`](super::search).
pub async fn search(
    db: &impl ConnectionTrait,
    filter: &SagaFilter,
    after: Option<&Cursor>,
    limit: u64,
) -> Result<Vec<Saga>, DbErr> {
    let (sql, values) = search_statement(filter, after, limit);
    query(db, &sql, values).await
}

/// The statement [`search`] runs, and its values.
pub fn search_statement(
    filter: &SagaFilter,
    after: Option<&Cursor>,
    limit: u64,
) -> (String, Vec<Value>) {
    let mut values = Vec::new();
    let mut conditions = search::conditions(filter, Utc::now(), &mut values);
    if let Some(after) = after {
        values.push(after.created_at.into());
        values.push(after.order_id.into());
        conditions.push(format!(
            "(created_at, order_id) < (${}, ${})",
            values.len() - 1,
            values.len()
        ));
    }
    values.push(limit_value(limit));
    let filters = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM {} {filters}ORDER BY created_at DESC, order_id DESC LIMIT ${}",
        search::source(filter),
        values.len()
    );
    (sql, values)
}

/// How many sagas `filter` selects, counting no further than `cap`.
pub async fn count(db: &impl ConnectionTrait, filter: &SagaFilter, cap: u64) -> Result<u64, DbErr> {
    #[derive(FromQueryResult)]
    struct Count {
        n: i64,
    }
    let mut values = Vec::new();
    let conditions = search::conditions(filter, Utc::now(), &mut values);
    values.push(limit_value(cap));
    let filters = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT count(*) AS n FROM (SELECT 1 FROM {} {filters}LIMIT ${}) AS matched",
        search::source(filter),
        values.len()
    );
    let row = Count::find_by_statement(db::stmt(&sql, values))
        .one(db)
        .await?;
    Ok(row.map_or(0, |c| u64::try_from(c.n).unwrap_or(0)))
}

/// A saga step as it is written: the new state and what the timeout worker needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub to: SagaState,
    pub deadline_at: Option<DateTime<Utc>>,
    pub resends: i32,
    pub pending_message_id: Option<Uuid>,
}

/// One saga moved by [`advance_part`].
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    pub order_id: Uuid,
    /// The version the saga was read at.
    pub expected_version: i32,
    /// The version it gets (one more per step taken).
    pub version: i32,
    pub step: Step,
    /// Whether one of the steps takes the saga to a final state: the sales rollups count it
    /// (`saga::rollup::ended_part`).
    pub ends: bool,
}

/// The saga columns of a row as a step leaves them: flattened into the row of an `UPDATE` (a
/// later step) or of the order's `INSERT` (the first).
#[derive(Debug, Serialize)]
pub struct StepColumns {
    saga_state: &'static str,
    failure_reason: Option<&'static str>,
    version: i32,
    deadline_at: Option<DateTime<Utc>>,
    resends: i32,
    pending_message_id: Option<Uuid>,
}

impl StepColumns {
    /// The record types of these columns in a `jsonb_to_recordset`.
    pub const TYPES: &'static str = "saga_state text, failure_reason text, version int, \
                                     deadline_at timestamptz, resends int, pending_message_id uuid";

    pub fn new(step: &Step, version: i32) -> Self {
        Self {
            saga_state: step.to.name(),
            failure_reason: step.to.failure_reason().map(|r| r.as_str()),
            version,
            deadline_at: step.deadline_at,
            resends: step.resends,
            pending_message_id: step.pending_message_id,
        }
    }
}

#[derive(Serialize)]
struct AdvanceRow {
    order_id: Uuid,
    expected_version: i32,
    ends: bool,
    #[serde(flatten)]
    columns: StepColumns,
}

/// Moves every saga of `advances` from its expected version, as a part of a
/// [`Writes`](saga_common::db::Writes) returning one row per saga moved. Fewer rows than
/// advances means another writer got to one of them first (its version moved): nothing may be
/// kept, the caller rolls back. Each row returned says whether the saga ended (`ends`) and, for
/// those that did, what the sales rollups count: `saga_state`, `failure_reason`, `total_cents`,
/// `items`, `created_at`.
pub fn advance_part(advances: &[Advance]) -> Result<Option<Part>, DbErr> {
    if advances.is_empty() {
        return Ok(None);
    }
    let rows: Vec<AdvanceRow> = advances
        .iter()
        .map(|a| AdvanceRow {
            order_id: a.order_id,
            expected_version: a.expected_version,
            ends: a.ends,
            columns: StepColumns::new(&a.step, a.version),
        })
        .collect();
    Ok(Some(Part::new(
        format!(
            "UPDATE orders o SET saga_state = a.saga_state, failure_reason = a.failure_reason, \
             version = a.version, deadline_at = a.deadline_at, resends = a.resends, \
             pending_message_id = a.pending_message_id, updated_at = now() \
             FROM jsonb_to_recordset($1::jsonb) \
             AS a(order_id uuid, expected_version int, ends bool, {}) \
             WHERE o.order_id = a.order_id AND o.version = a.expected_version \
             RETURNING a.ends, o.saga_state, o.failure_reason, o.total_cents, \
             CASE WHEN a.ends THEN o.items END AS items, o.created_at",
            StepColumns::TYPES
        ),
        vec![db::rows(&rows)?],
    )))
}
