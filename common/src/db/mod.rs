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
        // sqlx pings a connection before handing it out unless told otherwise: a round trip per
        // transaction (and per relay mark), on top of the one it always makes when the
        // connection comes back. Only connections idle for a while are checked now; a dead one
        // used sooner fails its statement as `is_unavailable`.
        .test_before_acquire_if_idle_for(Duration::from_millis(settings.check_idle_after_ms))
        // sqlx logs every statement at info; that is noise in JSON logs.
        .sqlx_logging(false)
        // Every statement is prepared once per connection and planned once: its generic plan
        // serves every later execution. Planning afresh each time (`force_custom_plan`) cost
        // about as much as executing the hot statements, a quarter of the database's CPU per
        // saga (docs/benchmarks.md). A generic plan is made the first time a connection runs
        // the statement, often on a nearly empty table, and kept until the table's statistics
        // change (for good where autovacuum is off), so the planner may not pick what only
        // suits a small table: sequential and bitmap scans, hash and merge joins are off (used
        // only where no index serves at all). Every statement of the fleet selects by indexed
        // keys and none has an optional filter (`$1 IS NULL OR ...`, which a generic plan can
        // only serve by scanning a whole index): queries with optional filters are written out
        // per filter present. JIT compilation is off: it never pays for statements this short,
        // and a plan that had to keep a disabled scan looks expensive enough to trigger it.
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

/// True when `error` says the database is out of reach rather than that the statement was
/// wrong: no connection could be had, or the one used was lost (the server shut down or
/// restarted, SQLSTATE class 08 but 08P01, or 57P01–57P03, or the socket failed). The caller may
/// try again later; the HTTP API answers 503. A write whose connection failed may or may not
/// have committed, as with any lost connection: `POST /api/orders` takes an `Idempotency-Key`
/// so that a client can retry it safely.
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
/// This is how every batch is written: one statement, and one prepared plan, for any number of
/// rows, where a `VALUES` list would be a new statement (and a new plan) for every batch size.
/// Typed arrays with `unnest` were the alternative; sea-query panics on an array holding a NULL,
/// and many of the columns written this way are nullable. Id lists, which never hold NULL, go as
/// arrays (`= ANY($n)`). Text rather than a `jsonb` value: sea-orm's JSON value is a
/// `serde_json::Value` tree, which would be built from the rows and then written out as text
/// anyway; PostgreSQL parses the same text either way.
pub fn rows<T: Serialize>(rows: &[T]) -> Result<Value, DbErr> {
    serde_json::to_string(rows)
        .map(Value::from)
        .map_err(|e| DbErr::Custom(format!("cannot serialise rows: {e}")))
}
