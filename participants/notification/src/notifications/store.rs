//! The queries of the `notifications` table. Each takes `&impl ConnectionTrait`; none holds a
//! transaction open across an SMTP conversation: a row is claimed by pushing its
//! `next_attempt_at` out (a lease), so the claim commits at once and two instances never send
//! one row at the same time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use saga_common::db::stmt;

use super::{Kind, Status};

/// One notification, as the operator API shows it.
#[derive(Debug, Clone, Serialize, FromQueryResult, ToSchema)]
#[schema(example = json!({
    "id": "0193a3c4-5d6e-7f80-9a0b-1c2d3e4f5a6b",
    "kind": "order_confirmed",
    "subject": "0193a3c4-5d6e-7f80-9a0b-1c2d3e4f5a6c",
    "order_id": "0193a3c4-5d6e-7f80-9a0b-1c2d3e4f5a6c",
    "product_id": null,
    "customer_id": "c-1",
    "recipient": "ada@example.com",
    "status": "SENT",
    "attempts": 1,
    "last_error": null,
    "correlation_id": "req-42",
    "next_attempt_at": "2026-12-07T20:00:00Z",
    "created_at": "2026-12-07T20:00:00Z",
    "updated_at": "2026-12-07T20:00:01Z",
    "sent_at": "2026-12-07T20:00:01Z"
}))]
pub struct NotificationView {
    pub id: Uuid,
    pub kind: Kind,
    /// The order id, or for a low-stock alert `product_id/event id` (one alert per crossing).
    pub subject: String,
    pub order_id: Option<Uuid>,
    pub product_id: Option<String>,
    pub customer_id: Option<String>,
    /// `null` when there was nobody to write to (`SKIPPED`).
    pub recipient: Option<String>,
    pub status: Status,
    /// SMTP conversations tried so far.
    pub attempts: i32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub correlation_id: String,
    /// When a `PENDING` row is (re)tried next.
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

const VIEW_COLUMNS: &str = "id, kind, subject, order_id, product_id, customer_id, recipient, \
     status, attempts, last_error, correlation_id, next_attempt_at, created_at, updated_at, sent_at";

/// What `GET /api/notifications` asks for.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub order_id: Option<Uuid>,
    pub product_id: Option<String>,
    pub kind: Option<Kind>,
    pub status: Option<Status>,
    /// Rows older than this one (the last of the previous page): ids are UUIDv7, so id order
    /// is creation order.
    pub before: Option<Uuid>,
    pub limit: u64,
}

/// Newest first; at most `filter.limit` rows.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &ListFilter,
) -> Result<Vec<NotificationView>, DbErr> {
    let (sql, values) = list_statement(filter);
    NotificationView::find_by_statement(stmt(&sql, values))
        .all(db)
        .await
}

/// Only the filters given go into the statement, each combination its own prepared statement
/// whose plan walks the index that serves it (`notifications_by_order`, `_by_product`,
/// `_by_status`, or the primary key).
fn list_statement(filter: &ListFilter) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(order_id) = filter.order_id {
        values.push(order_id.into());
        conditions.push(format!("order_id = ${}", values.len()));
    }
    if let Some(product_id) = &filter.product_id {
        values.push(product_id.clone().into());
        conditions.push(format!("product_id = ${}", values.len()));
    }
    // Literals, not parameters: a few fixed names, never input (parsed into enums first), and a
    // generic plan for `status = $1` would suit the rare FAILED as badly as the common SKIPPED.
    if let Some(kind) = filter.kind {
        conditions.push(format!("kind = '{}'", kind.as_str()));
    }
    if let Some(status) = filter.status {
        conditions.push(format!("status = '{}'", status.as_str()));
    }
    if let Some(before) = filter.before {
        values.push(before.into());
        conditions.push(format!("id < ${}", values.len()));
    }
    let mut sql = format!("SELECT {VIEW_COLUMNS} FROM notifications");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    values.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", values.len()));
    (sql, values)
}

/// What a resend found.
#[derive(Debug)]
pub enum Resent {
    /// `PENDING` again, attempts reset, due now.
    Queued(Box<NotificationView>),
    /// No such notification.
    Unknown,
    /// Still nobody to write to: the customer has no address yet.
    NoAddress,
}

/// Makes `id` `PENDING` again, with its attempts reset and due at once; a `SKIPPED` one takes
/// the customer's address as now known. Changes nothing when there is still no address.
pub async fn resend(db: &impl ConnectionTrait, id: Uuid) -> Result<Resent, DbErr> {
    let sql = format!(
        "UPDATE notifications n SET status = 'PENDING', attempts = 0, last_error = NULL, \
         next_attempt_at = now(), updated_at = now(), \
         recipient = coalesce(n.recipient, (SELECT r.email FROM recipients r WHERE r.customer_id = n.customer_id)) \
         WHERE n.id = $1 AND coalesce(n.recipient, (SELECT r.email FROM recipients r WHERE r.customer_id = n.customer_id)) IS NOT NULL \
         RETURNING {VIEW_COLUMNS}"
    );
    if let Some(row) = NotificationView::find_by_statement(stmt(&sql, [id.into()]))
        .one(db)
        .await?
    {
        return Ok(Resent::Queued(Box::new(row)));
    }
    let exists = db
        .query_one_raw(stmt(
            "SELECT 1 AS found FROM notifications WHERE id = $1",
            [id.into()],
        ))
        .await?
        .is_some();
    Ok(if exists {
        Resent::NoAddress
    } else {
        Resent::Unknown
    })
}

/// A row claimed for sending.
#[derive(Debug, Clone, FromQueryResult)]
pub struct Due {
    pub id: Uuid,
    pub kind: Kind,
    pub recipient: Option<String>,
    pub content: serde_json::Value,
    pub order_id: Option<Uuid>,
    pub product_id: Option<String>,
    pub correlation_id: String,
    /// This attempt's number (1 for the first).
    pub attempts: i32,
}

/// Claims up to `limit` due `PENDING` rows: counts the attempt and pushes `next_attempt_at`
/// out by `lease`, so neither another instance nor this one's next sweep takes them while they
/// are being sent. Rows another transaction is claiming are skipped, not waited for.
pub async fn claim(
    db: &impl ConnectionTrait,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Due>, DbErr> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    Due::find_by_statement(stmt(
        "UPDATE notifications n SET attempts = n.attempts + 1, updated_at = now(), \
         next_attempt_at = now() + $2::bigint * interval '1 millisecond' \
         FROM (SELECT id FROM notifications WHERE status = 'PENDING' AND next_attempt_at <= now() \
               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due \
         WHERE n.id = due.id \
         RETURNING n.id, n.kind, n.recipient, n.content, n.order_id, n.product_id, \
         n.correlation_id, n.attempts",
        [limit.into(), lease_ms.into()],
    ))
    .all(db)
    .await
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    /// Tried again after `retry_in`.
    Retry {
        error: String,
        retry_in: Duration,
    },
    /// No more attempts (the last failed, or it can never succeed).
    Failed {
        error: String,
    },
}

/// Records how the claimed attempt of `id` ended. Only a row still `PENDING` changes: an
/// operator's resend meanwhile is not undone.
pub async fn mark(db: &impl ConnectionTrait, id: Uuid, attempt: &Attempt) -> Result<(), DbErr> {
    let statement = match attempt {
        Attempt::Sent => stmt(
            "UPDATE notifications SET status = 'SENT', sent_at = now(), updated_at = now(), \
             last_error = NULL WHERE id = $1 AND status = 'PENDING'",
            [id.into()],
        ),
        Attempt::Retry { error, retry_in } => stmt(
            "UPDATE notifications SET last_error = $2, updated_at = now(), \
             next_attempt_at = now() + $3::bigint * interval '1 millisecond' \
             WHERE id = $1 AND status = 'PENDING'",
            [
                id.into(),
                error.clone().into(),
                i64::try_from(retry_in.as_millis())
                    .unwrap_or(i64::MAX)
                    .into(),
            ],
        ),
        Attempt::Failed { error } => stmt(
            "UPDATE notifications SET status = 'FAILED', last_error = $2, updated_at = now() \
             WHERE id = $1 AND status = 'PENDING'",
            [id.into(), error.clone().into()],
        ),
    };
    db.execute_raw(statement).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_filters_given_are_in_the_statement() {
        let (sql, values) = list_statement(&ListFilter {
            limit: 21,
            ..ListFilter::default()
        });
        assert!(
            sql.ends_with("FROM notifications ORDER BY id DESC LIMIT $1"),
            "{sql}"
        );
        assert_eq!(values.len(), 1);
        let (sql, values) = list_statement(&ListFilter {
            product_id: Some("p-1".into()),
            status: Some(Status::Failed),
            before: Some(Uuid::now_v7()),
            limit: 2,
            ..ListFilter::default()
        });
        assert!(
            sql.contains("WHERE product_id = $1 AND status = 'FAILED' AND id < $2"),
            "{sql}"
        );
        assert_eq!(values.len(), 3);
    }
}
