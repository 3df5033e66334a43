//! PostgreSQL pool and the error helpers every repository uses.
//!
//! - [`reads`]: everything a batch reads (and locks) before it decides, as one statement.
//! - [`writes`]: several set-based writes sent as one statement.

pub mod reads;
pub mod writes;

pub use reads::{Loaded, Reads};
pub use writes::{Part, PartName, Writes};

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, FromQueryResult,
    SqlxError, Statement, Value,
};
use serde::Serialize;

use crate::configuration::DatabaseSettings;

pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(settings.url.expose());
    options
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .connect_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        // sqlx otherwise pings every connection before handing it out, a round trip per
        // transaction; a dead one used sooner fails its statement as `is_unavailable`.
        .test_before_acquire_if_idle_for(Duration::from_millis(settings.check_idle_after_ms))
        // sqlx logs every statement at info; that is noise in JSON logs.
        .sqlx_logging(false)
        // Each statement is planned once per connection: planning afresh cost about as much as
        // running the hot statements. A generic plan is often made on a nearly empty table and
        // kept, so scans and joins that only suit small tables are off; every statement selects
        // by indexed keys and has no optional filter (`$1 IS NULL OR ...`). JIT never pays for
        // statements this short.
        .map_sqlx_postgres_opts(|options| {
            options.options([
                ("plan_cache_mode", "force_generic_plan"),
                ("enable_seqscan", "off"),
                ("enable_bitmapscan", "off"),
                ("enable_hashjoin", "off"),
                ("enable_mergejoin", "off"),
                ("jit", "off"),
            ])
        });
    Database::connect(options).await
}

/// `SELECT 1` with a deadline: used by readiness.
pub async fn ping(db: &DatabaseConnection, timeout: Duration) -> bool {
    let query = db.execute_raw(Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT 1",
    ));
    matches!(tokio::time::timeout(timeout, query).await, Ok(Ok(_)))
}

/// The distinct keys of `keys`, sorted: the order in which every batch locks its rows, so
/// batches running side by side never wait on each other in a circle.
pub fn lock_order<T: Ord>(keys: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut keys: Vec<T> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// True when `error` says the database is out of reach (no connection, or the one used was
/// lost: SQLSTATE class 08 but 08P01, 57P01–57P03, a failed socket) rather than that the
/// statement was wrong: the caller may try again later; the HTTP API answers 503.
pub fn is_unavailable(error: &DbErr) -> bool {
    if matches!(error, DbErr::Conn(_) | DbErr::ConnectionAcquire(_)) {
        return true;
    }
    // Class 08 but a protocol violation (08P01): a bug, not an outage.
    if let Some(code) = sql_error_code(error) {
        return (code.starts_with("08") && code != "08P01")
            || matches!(code.as_str(), "57P01" | "57P02" | "57P03");
    }
    matches!(
        driver_error(error),
        Some(
            SqlxError::Io(_)
                | SqlxError::PoolTimedOut
                | SqlxError::PoolClosed
                | SqlxError::WorkerCrashed
        )
    )
}

/// True when `error` is a unique violation of the named constraint (or any, when `None`).
pub fn is_unique_violation(error: &DbErr, constraint: Option<&str>) -> bool {
    sql_error_code(error).as_deref() == Some("23505")
        && constraint.is_none_or(|name| error.to_string().contains(name))
}

/// True for a check-constraint violation (a balance or stock that would go negative).
pub fn is_check_violation(error: &DbErr) -> bool {
    sql_error_code(error).as_deref() == Some("23514")
}

fn sql_error_code(error: &DbErr) -> Option<String> {
    driver_error(error)?
        .as_database_error()?
        .code()
        .map(|code| code.into_owned())
}

/// The driver's error behind a failed statement.
fn driver_error(error: &DbErr) -> Option<&SqlxError> {
    match error {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => Some(e.as_ref()),
        _ => None,
    }
}

/// Shorthand for a Postgres statement with bound values.
pub fn stmt<I>(sql: &str, values: I) -> Statement
where
    I: IntoIterator<Item = sea_orm::Value>,
{
    Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
}

/// Runs `sql` and turns each row, read as an `R`, into a `T`; the first that does not turn
/// fails the whole read.
pub async fn query_as<R, T>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<T>, DbErr>
where
    R: FromQueryResult,
    T: TryFrom<R, Error = DbErr>,
{
    R::find_by_statement(stmt(sql, values))
        .all(db)
        .await?
        .into_iter()
        .map(T::try_from)
        .collect()
}

/// Rows as one JSON text parameter, read in SQL with
/// `jsonb_to_recordset($n::jsonb) AS r(column type, ...)` (the cast is required: the parameter
/// is text).
///
/// One statement and one prepared plan for any number of rows, where a `VALUES` list would be
/// a new plan per batch size. Not `unnest` of typed arrays: sea-query panics on an array holding
/// a NULL, and many of these columns are nullable (id lists, never NULL, go as `= ANY($n)`).
pub fn rows<T: Serialize>(rows: &[T]) -> Result<Value, DbErr> {
    serde_json::to_string(rows)
        .map(Value::from)
        .map_err(|e| DbErr::Custom(format!("cannot serialise rows: {e}")))
}
