//! The benchmark's reads of PostgreSQL, through one sqlx connection each: the server's WAL
//! position and flushes, the fleet's transactions, a service's unpublished outbox rows, and
//! per-statement time where pg_stat_statements is loaded. A figure that cannot be read is
//! `None` (shown as "?"), never a failed run: the load was measured either way.

// AssertSqlSafe: the benchmark's own statements, built from its settings (a database prefix,
// a database name), never from what the fleet returns.
use std::collections::HashMap;
use std::fmt::Write as _;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// `postgres://user:pass@host:port/DB` for another database of the same server.
pub fn database_url(server_url: &str, db: &str) -> String {
    let base = server_url
        .rsplit_once('/')
        .map_or(server_url, |(base, _)| base);
    format!("{base}/{db}")
}

pub async fn connect(url: &str) -> Option<PgConnection> {
    PgConnection::connect(url).await.ok()
}

/// One text value of a query; `None` on any failure.
pub async fn text(conn: &mut PgConnection, sql: &str) -> Option<String> {
    sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .ok()
}

/// One number of a query (cast to bigint in the SQL); `None` on any failure.
pub async fn number(conn: &mut PgConnection, sql: &str) -> Option<i64> {
    sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .ok()
        .flatten()
}

/// The counters read at both ends of a phase's load window.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub wal_lsn: Option<String>,
    /// WAL flushes (fdatasync), all processes; backends report them within a second.
    pub wal_syncs: Option<i64>,
    /// Transactions the fleet's databases ended; a statement outside BEGIN/COMMIT is one.
    pub xacts: Option<i64>,
}

pub async fn counters(conn: &mut PgConnection, prefix: &str) -> Counters {
    Counters {
        wal_lsn: text(conn, "SELECT pg_current_wal_lsn()::text").await,
        wal_syncs: number(conn, "SELECT wal_sync::bigint FROM pg_stat_wal").await,
        xacts: number(
            conn,
            &format!(
                "SELECT sum(xact_commit + xact_rollback)::bigint FROM pg_stat_database \
                 WHERE datname LIKE '{}%'",
                prefix.replace('\'', "''")
            ),
        )
        .await,
    }
}

/// Bytes of WAL between two positions.
pub async fn wal_bytes(conn: &mut PgConnection, from: &str, to: &str) -> Option<i64> {
    sqlx::query_scalar::<_, Option<i64>>("SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn)::bigint")
        .bind(from)
        .bind(to)
        .fetch_one(conn)
        .await
        .ok()
        .flatten()
}

/// The server settings a result depends on most, as one line for the summary.
pub async fn settings(conn: &mut PgConnection) -> String {
    let mut line = String::from("postgres settings (read from the server):");
    for name in [
        "autovacuum",
        "shared_buffers",
        "fsync",
        "synchronous_commit",
        "max_connections",
        "max_wal_size",
    ] {
        let value = text(conn, &format!("SELECT current_setting('{name}')")).await;
        let _ = write!(line, " {name}={}", value.as_deref().unwrap_or("?"));
    }
    line
}

pub async fn unpublished(conn: &mut PgConnection) -> Option<i64> {
    number(conn, "SELECT count(*) FROM outbox_pending").await
}

/// Whether the server has pg_stat_statements loaded (it needs a restart to load, so the
/// benchmark never loads it itself); creates the extension's views if so.
pub async fn statements_available(conn: &mut PgConnection) -> bool {
    let loaded = text(conn, "SELECT current_setting('shared_preload_libraries')")
        .await
        .is_some_and(|libs| libs.contains("pg_stat_statements"));
    loaded
        && sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(conn)
            .await
            .is_ok()
}

/// One statement's counters: calls, execution ms, planning ms, rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statement {
    pub query: String,
    pub calls: i64,
    pub exec_ms: f64,
    pub plan_ms: f64,
    pub rows: i64,
}

/// The counters of the fleet's databases by query id. Nothing is reset, so other users of the
/// server keep their statistics; a phase's figures are the difference of two snapshots.
pub async fn statements(conn: &mut PgConnection, prefix: &str) -> HashMap<i64, Statement> {
    let sql = "SELECT s.queryid, s.calls, s.total_exec_time, s.total_plan_time, s.rows, \
               d.datname || ': ' || regexp_replace(left(s.query, 90), '\\s+', ' ', 'g') \
               FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
               WHERE d.datname LIKE $1 AND s.queryid IS NOT NULL";
    let rows: Vec<(i64, i64, f64, f64, i64, String)> = sqlx::query_as(sql)
        .bind(format!("{prefix}%"))
        .fetch_all(conn)
        .await
        .unwrap_or_default();
    rows.into_iter()
        .map(|(id, calls, exec_ms, plan_ms, rows, query)| {
            let s = Statement {
                query,
                calls,
                exec_ms,
                plan_ms,
                rows,
            };
            (id, s)
        })
        .collect()
}

/// Runs each statement of `sql` (separated by `;`) on a new connection to `url`.
pub async fn execute(url: &str, sql: &[&str]) -> Result<(), String> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    for statement in sql {
        sqlx::query(AssertSqlSafe(statement.to_string()))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("{statement}: {e}"))?;
    }
    Ok(())
}

/// A phase's statements by database time per saga, the 12 costliest and the total: ms per
/// saga, statements per saga, rows per statement, planning share.
pub fn statements_table(
    before: &HashMap<i64, Statement>,
    after: &HashMap<i64, Statement>,
    sagas: f64,
) -> String {
    let mut rows: Vec<(f64, String)> = Vec::new();
    let (mut total, mut planning, mut count) = (0.0, 0.0, 0);
    for (id, a) in after {
        let b = before.get(id).cloned().unwrap_or_default();
        let calls = a.calls - b.calls;
        if calls <= 0 {
            continue;
        }
        let (exec, plan) = (a.exec_ms - b.exec_ms, a.plan_ms - b.plan_ms);
        let ms = exec + plan;
        (total, planning, count) = (total + ms, planning + plan, count + calls);
        let share = if ms > 0.0 { 100.0 * plan / ms } else { 0.0 };
        let line = format!(
            "{:.4}\t{:.2}\t{:.1}\t{share:.0}%\t{}",
            ms / sagas,
            calls as f64 / sagas,
            (a.rows - b.rows) as f64 / calls as f64,
            a.query
        );
        rows.push((ms, line));
    }
    rows.sort_by(|x, y| y.0.total_cmp(&x.0));
    let mut t: String = rows.into_iter().take(12).map(|(_, l)| l + "\n").collect();
    let share = if total > 0.0 {
        100.0 * planning / total
    } else {
        0.0
    };
    let _ = writeln!(
        t,
        "{:.4}\t{:.2}\t-\t{share:.0}%\tall statements",
        total / sagas,
        count as f64 / sagas
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_of_the_same_server() {
        assert_eq!(
            database_url(
                "postgres://postgres:pw@127.0.0.1:5432/postgres",
                "saga_bench_payment"
            ),
            "postgres://postgres:pw@127.0.0.1:5432/saga_bench_payment"
        );
    }

    #[test]
    fn statements_are_ranked_by_time_per_saga_with_a_total() {
        let st = |calls, exec_ms, rows, query: &str| Statement {
            query: query.into(),
            calls,
            exec_ms,
            plan_ms: 0.0,
            rows,
        };
        let before = [(1, st(10, 5.0, 10, "a")), (2, st(0, 0.0, 0, "b"))].into();
        let after = [(1, st(110, 105.0, 110, "a")), (2, st(200, 400.0, 400, "b"))].into();
        let t = statements_table(&before, &after, 100.0);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "4.0000\t2.00\t2.0\t0%\tb");
        assert_eq!(lines[1], "1.0000\t1.00\t1.0\t0%\ta");
        assert_eq!(lines[2], "5.0000\t3.00\t-\t0%\tall statements");
    }
}
