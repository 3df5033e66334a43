//! Customer accounts: the balance a charge draws from, and the owner's e-mail address, which
//! the notification service learns from the `account.updated` event every write publishes.
//!
//! - [`email`]: the address rule ([`Email::parse`]).
//! - `PUT/GET /api/accounts/{customer_id}`; the queries a batch of charges and refunds uses
//!   ([`lock_read`], [`adjust_part`]).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router, extract::State};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use sea_orm::{DatabaseConnection, DbErr, FromQueryResult, TransactionTrait, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use saga_common::contracts::{AccountUpdated, MAX_AMOUNT_CENTS};
use saga_common::db::Part;
use saga_common::http::keyed::Keyed;
use saga_common::http::{ApiError, CorrelationId, ErrorBody, JsonBody};
use saga_common::messaging::outbox::{self, RelayWakeup};
use saga_common::messaging::{Envelope, OutgoingMessage};

pub mod email;

pub use email::Email;

#[derive(Debug, Clone, Serialize, FromQueryResult, ToSchema)]
pub struct Account {
    #[schema(example = "c-1")]
    pub customer_id: String,
    #[schema(example = 50000)]
    pub balance_cents: i64,
    /// Where the notification service writes to; `null` when the account has none.
    #[schema(example = "ada@example.com")]
    pub email: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"balance_cents": 50000, "email": "ada@example.com"}))]
pub struct SetAccount {
    /// New balance in cents, 0 to 10^15 (`MAX_AMOUNT_CENTS`).
    #[schema(example = 50000, minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    pub balance_cents: i64,
    /// The owner's e-mail address (ASCII, at most 254 characters, `name@domain.tld`). A `PUT`
    /// sets the whole account: absent or `null` leaves it without one.
    #[serde(default)]
    #[schema(example = "ada@example.com", max_length = 254)]
    pub email: Option<String>,
}

/// What the account routes share.
#[derive(Clone)]
pub struct Accounts {
    pub db: DatabaseConnection,
    /// Hands the `account.updated` outbox row to the relay once its write commits.
    pub wakeup: RelayWakeup,
}

pub fn router(db: DatabaseConnection, wakeup: RelayWakeup) -> Router {
    // Operator only: a customer reads their business through the orchestrator's orders.
    saga_common::http::auth::protect(
        Router::new()
            .route(
                "/api/accounts/{customer_id}",
                get(get_account).put(put_account),
            )
            .with_state(Accounts { db, wakeup }),
    )
}

/// Creates the account or sets its balance and e-mail address, and publishes
/// `account.updated` with the address as it now stands.
#[utoipa::path(put, path = "/api/accounts/{customer_id}", tag = "accounts",
    security(("operator_token" = [])),
    params(("customer_id" = String, Path, description = "1 to 64 characters")),
    request_body = SetAccount,
    responses(
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 201, description = "Account created", body = Account),
        (status = 200, description = "Balance and e-mail address set", body = Account),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid fields (`balance_cents`, `email`); nothing changed, nothing published", body = ErrorBody),
    ))]
pub async fn put_account(
    State(accounts): State<Accounts>,
    Extension(correlation): Extension<CorrelationId>,
    Path(customer_id): Path<String>,
    JsonBody(body): JsonBody<SetAccount>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let balance = body.balance_cents;
    let email = body.email.as_deref().map(Email::parse).transpose();
    ACCOUNTS.check(&customer_id, |violations| {
        violations.check(
            (0..=MAX_AMOUNT_CENTS).contains(&balance),
            "balance_cents",
            format!("must be between 0 and {MAX_AMOUNT_CENTS}"),
        );
        if let Err(rule) = &email {
            violations.add("email", *rule);
        }
    })?;
    let email = email.ok().flatten().map(Email::into_string);
    // The account and its event commit together (the transactional outbox), so the
    // notification service's copy of the address never misses a change nor sees one that
    // rolled back.
    let txn = accounts.db.begin().await?;
    let (status, Json(account)) = ACCOUNTS
        .upsert::<Account>(
            &txn,
            &customer_id,
            vec![Value::from(balance), Value::from(email)],
        )
        .await?;
    let enqueued = outbox::enqueue_all(&txn, &[updated(&account, &correlation)?]).await?;
    accounts.wakeup.commit(txn, enqueued).await?;
    Ok((status, Json(account)))
}

/// The `account.updated` event for `account` as just written. Made while the write holds the
/// account's row lock, so of two writes to one account the later commit has the later
/// `occurred_at`: a consumer keeping the newest copy orders them by it. Not about an order,
/// so its saga id is the nil UUID.
fn updated(account: &Account, correlation: &CorrelationId) -> Result<OutgoingMessage, ApiError> {
    let event = AccountUpdated {
        customer_id: account.customer_id.clone(),
        email: account.email.clone(),
    };
    Envelope::new(&event, Uuid::nil(), &correlation.0, None)
        .map(OutgoingMessage::event)
        .map_err(|e| ApiError::internal(&e))
}

/// Reads an account.
#[utoipa::path(get, path = "/api/accounts/{customer_id}", tag = "accounts",
    security(("operator_token" = [])),
    params(("customer_id" = String, Path, description = "1 to 64 characters")),
    responses(
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 200, description = "The account", body = Account),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 422, description = "Invalid customer id", body = ErrorBody),
    ))]
pub async fn get_account(
    State(accounts): State<Accounts>,
    Path(customer_id): Path<String>,
) -> Result<Json<Account>, ApiError> {
    ACCOUNTS.get(&accounts.db, &customer_id).await
}

const ACCOUNTS: Keyed = Keyed {
    key: "customer_id",
    missing: "no account for customer",
    find: "SELECT customer_id, balance_cents, email, updated_at FROM accounts WHERE customer_id = $1",
    upsert: "INSERT INTO accounts (customer_id, balance_cents, email) VALUES ($1, $2, $3) \
             ON CONFLICT (customer_id) DO UPDATE SET balance_cents = EXCLUDED.balance_cents, \
               email = EXCLUDED.email, updated_at = now() \
             RETURNING customer_id, balance_cents, email, updated_at, (xmax = 0) AS created",
};

/// The query that locks (`FOR NO KEY UPDATE`, in customer order) the accounts of `customers`:
/// every account a batch of charges and refunds may change (a refund must name the customer
/// who paid). Its rows ([`Balance`]) are read back through a
/// [`Reads`](saga_common::db::Reads).
pub fn lock_read(customers: &[String]) -> Part {
    Part::new(
        "SELECT customer_id, balance_cents FROM accounts WHERE customer_id = ANY($1) \
         ORDER BY customer_id FOR NO KEY UPDATE",
        vec![Value::from(customers.to_vec())],
    )
}

/// An account's balance as [`lock_read`] returns it.
#[derive(Debug, Deserialize)]
pub struct Balance {
    pub customer_id: String,
    pub balance_cents: i64,
}

/// Balances by customer; a customer missing has no account.
pub fn balances(rows: Vec<Balance>) -> HashMap<String, i64> {
    rows.into_iter()
        .map(|b| (b.customer_id, b.balance_cents))
        .collect()
}

#[derive(Serialize)]
struct Delta<'a> {
    customer_id: &'a str,
    delta: i64,
}

/// Adds each delta to its account's balance, as a part of a
/// [`Writes`](saga_common::db::Writes). The check constraint
/// still refuses a balance below zero.
pub fn adjust_part(deltas: &[(String, i64)]) -> Result<Option<Part>, DbErr> {
    if deltas.is_empty() {
        return Ok(None);
    }
    let rows: Vec<Delta> = deltas
        .iter()
        .map(|(customer_id, delta)| Delta {
            customer_id,
            delta: *delta,
        })
        .collect();
    Ok(Some(Part::new(
        "UPDATE accounts a SET balance_cents = a.balance_cents + d.delta, updated_at = now() \
         FROM jsonb_to_recordset($1::jsonb) AS d(customer_id text, delta bigint) \
         WHERE a.customer_id = d.customer_id RETURNING 1",
        vec![saga_common::db::rows(&rows)?],
    )))
}
