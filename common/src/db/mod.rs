//! PostgreSQL pool and the error helpers every repository uses.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};

use crate::configuration::DatabaseSettings;

pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(settings.url.clone());
    options
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .connect_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        // sqlx logs every statement at info; that is noise in JSON logs.
        .sqlx_logging(false);
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
    match error {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|d| d.code().map(|c| c.into_owned())),
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
