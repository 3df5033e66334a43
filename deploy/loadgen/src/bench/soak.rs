//! The soak's own figures: every table's size over time, and what it means per saga.
//! - [`Retention`]: the windows the fleet keeps rows for (bench.sh passes the ones it sets);
//! - [`sample_sizes`]: a sampler, each minute of the soak (and at its start and end), of each
//!   service database's tables: total size (heap, indexes, TOAST; partitions summed), live and
//!   dead rows (`sizes-soak.tsv`);
//! - [`render`]: the sizes at each window's end, whether they levelled off, and the bytes kept
//!   per saga (size / the sagas its retention window holds).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use super::db;
use super::samplers::{append, tick};

/// The retention windows the fleet runs with (`retention.*`); defaults are the fleet's.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    pub inbox_window: Duration,
    pub published_outbox: Duration,
    pub history: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            inbox_window: Duration::from_secs(7 * 24 * 3600),
            published_outbox: Duration::from_secs(10 * 60),
            history: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// What the fleet's pruner adds to `inbox_window` before an entry goes, for the clock skew
/// between sender and database (`saga_common::retention::CLOCK_SKEW_MARGIN`, which loadgen does
/// not depend on).
pub const INBOX_SKEW_MARGIN: Duration = Duration::from_secs(5 * 60);

impl Retention {
    /// How long a table keeps a saga's rows; `None` for tables that are not per saga
    /// (accounts, products) or hold only what is in flight (outbox_pending).
    pub fn window_of(&self, table: &str) -> Option<Duration> {
        match table {
            "inbox" => Some(self.inbox_window + INBOX_SKEW_MARGIN),
            "outbox" => Some(self.published_outbox),
            "orders" | "saga_transitions" | "payments" | "reservations" | "reservation_lines" => {
                Some(self.history)
            }
            _ => None,
        }
    }
}

/// How often the soak samples the tables' sizes: every minute, or twice a window if shorter
/// (a short trial run).
pub fn sizes_every(window_s: u64) -> Duration {
    Duration::from_secs((window_s / 2).clamp(5, 60))
}

/// One table's size at one moment of the soak.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSize {
    /// Seconds since the soak's load started.
    pub t_s: u64,
    pub service: String,
    pub table: String,
    pub bytes: i64,
    pub live_rows: i64,
    pub dead_rows: i64,
}

/// Each table of the public schema (partitioned ones as the sum of their partitions), with
/// the statistics collector's live and dead rows (estimates, as autovacuum sees them).
/// (pg_partition_tree gives no rows for a plain table, hence the union.)
const SIZES_SQL: &str = "SELECT c.relname::text, sum(pg_total_relation_size(r.oid))::bigint, \
    coalesce(sum(s.n_live_tup), 0)::bigint, coalesce(sum(s.n_dead_tup), 0)::bigint \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    CROSS JOIN LATERAL (SELECT c.oid WHERE c.relkind = 'r' UNION ALL \
        SELECT relid FROM pg_partition_tree(c.oid::regclass) WHERE c.relkind = 'p') r(oid) \
    LEFT JOIN pg_stat_user_tables s ON s.relid = r.oid \
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
    AND c.relname <> 'seaql_migrations' GROUP BY c.relname ORDER BY 1";

/// Samples every service database's tables until stopped (once more then); one connection
/// per database, kept for the phase. A database that cannot be read is left out.
pub async fn sample_sizes(
    databases: Vec<(String, String)>,
    every: Duration,
    file: PathBuf,
    mut stopped: watch::Receiver<bool>,
) -> Vec<TableSize> {
    let mut conns = Vec::new();
    for (service, url) in databases {
        if let Some(conn) = db::connect(&url).await {
            conns.push((service, conn));
        }
    }
    append(&file, "t_s\tservice\ttable\tbytes\tlive_rows\tdead_rows\n");
    let start = std::time::Instant::now();
    let mut sizes = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    loop {
        let t_s = start.elapsed().as_secs_f64().round() as u64;
        let mut text = String::new();
        for (service, conn) in &mut conns {
            let rows: Vec<(String, i64, i64, i64)> =
                match sqlx::query_as(SIZES_SQL).fetch_all(&mut *conn).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        // Said once per database: the next samples would only repeat it.
                        if !failed.contains(service) {
                            eprintln!("bench: table sizes of {service}: {e}");
                            failed.push(service.clone());
                        }
                        Vec::new()
                    }
                };
            for (table, bytes, live_rows, dead_rows) in rows {
                let _ = writeln!(
                    text,
                    "{t_s}\t{service}\t{table}\t{bytes}\t{live_rows}\t{dead_rows}"
                );
                sizes.push(TableSize {
                    t_s,
                    service: service.clone(),
                    table,
                    bytes,
                    live_rows,
                    dead_rows,
                });
            }
        }
        append(&file, &text);
        if *stopped.borrow() {
            return sizes;
        }
        // Once more after the stop: the size at the soak's end.
        let _ = tick(&mut stopped, every).await;
    }
}

/// A phase's load as the bytes per saga need it: its load window (epoch seconds) and rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub from: f64,
    pub to: f64,
    pub finished_per_s: f64,
}

/// Sagas that finished in the `window` before `end`: each phase's finished sagas/s times the
/// seconds of its load inside it.
pub fn sagas_within(spans: &[Span], end: f64, window: Duration) -> f64 {
    let from = end - window.as_secs_f64();
    spans
        .iter()
        .map(|s| (s.to.min(end) - s.from.max(from)).max(0.0) * s.finished_per_s)
        .sum()
}

/// A table levels off when it grew in the last window by no more than 5 % of its size plus
/// 1 MiB (autovacuum and the pruner's batches make a table breathe by about that much).
pub fn levelled(before: i64, end: i64) -> bool {
    (end - before) as f64 <= 0.05 * end as f64 + 1024.0 * 1024.0
}

/// The size nearest to `t_s` of one table.
fn size_at(rows: &[&TableSize], t_s: u64) -> Option<i64> {
    rows.iter()
        .min_by_key(|r| r.t_s.abs_diff(t_s))
        .map(|r| r.bytes)
}

fn mib(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// The soak's part of the summary. `end` is the soak's last moment (epoch seconds), `spans`
/// every phase's load, `window_s` the soak's window.
pub fn render(
    sizes: &[TableSize],
    soak_s: u64,
    window_s: u64,
    retention: &Retention,
    spans: &[Span],
    end: f64,
) -> String {
    let mut t = String::new();
    let mut tables: BTreeMap<(&str, &str), Vec<&TableSize>> = BTreeMap::new();
    for s in sizes {
        tables.entry((&s.service, &s.table)).or_default().push(s);
    }
    if tables.is_empty() {
        t.push_str("\nsoak: no table sizes (the databases could not be read)\n");
        return t;
    }
    let last = sizes.iter().map(|s| s.t_s).max().unwrap_or(soak_s);
    let mut marks: Vec<u64> = (0..soak_s).step_by(window_s.max(1) as usize).collect();
    marks.push(last);
    let _ = writeln!(
        t,
        "\nsoak: table sizes (MiB, pg_total_relation_size: heap, indexes, TOAST) at each window's \
         start and at the end; every minute in sizes-soak.tsv"
    );
    let _ = write!(t, "{:<32}", "table");
    for m in &marks {
        let _ = write!(t, " {:>8}", format!("{m} s"));
    }
    let _ = writeln!(t, "  rows (live/dead)  last window");
    let before_end = last.saturating_sub(window_s);
    for ((service, table), rows) in &tables {
        let _ = write!(t, "{:<32}", format!("{service}.{table}"));
        for m in &marks {
            let _ = write!(
                t,
                " {:>8}",
                size_at(rows, *m).map_or_else(|| "?".into(), mib)
            );
        }
        let (end_size, before) = (
            size_at(rows, last).unwrap_or(0),
            size_at(rows, before_end).unwrap_or(0),
        );
        let verdict = if levelled(before, end_size) {
            "levelled".to_string()
        } else {
            format!("GROWS +{} MiB", mib(end_size - before))
        };
        let rows_end = rows
            .iter()
            .max_by_key(|r| r.t_s)
            .map_or((0, 0), |r| (r.live_rows, r.dead_rows));
        let _ = writeln!(
            t,
            "  {:>16}  {verdict}",
            format!("{}/{}", rows_end.0, rows_end.1)
        );
    }
    let _ = writeln!(
        t,
        "\nsoak: bytes kept per saga at the end = the table's size / the sagas that finished within \
         its retention window before the end (sum over the phases of finished sagas/s x seconds \
         of load inside the window); tables without a window are not per saga"
    );
    let _ = writeln!(
        t,
        "{:<32} {:>10} {:>12} {:>10}",
        "table", "window", "sagas held", "bytes/saga"
    );
    let mut total = 0.0;
    for ((service, table), rows) in &tables {
        let Some(window) = retention.window_of(table) else {
            continue;
        };
        let held = sagas_within(spans, end, window);
        let size = size_at(rows, last).unwrap_or(0);
        let per = (held >= 1.0).then(|| size as f64 / held);
        total += per.unwrap_or(0.0);
        // A table still growing holds more than its window (nothing pruned it yet): its
        // figure is an upper bound, not the steady state.
        let still_growing = !levelled(size_at(rows, before_end).unwrap_or(0), size);
        let _ = writeln!(
            t,
            "{:<32} {:>10} {:>12.0} {:>10}{}",
            format!("{service}.{table}"),
            humantime::format_duration(window).to_string(),
            held,
            per.map_or_else(|| "?".into(), |b| format!("{b:.0}")),
            if still_growing {
                " (still growing)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        t,
        "{:<32} {:>10} {:>12} {:>10.0}   (disk for a rate R and these windows: sum of bytes/saga x R x window)",
        "all per-saga tables", "", "", total
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(t_s: u64, service: &str, table: &str, mib: i64) -> TableSize {
        TableSize {
            t_s,
            service: service.into(),
            table: table.into(),
            bytes: mib * 1024 * 1024,
            live_rows: 10,
            dead_rows: 1,
        }
    }

    #[test]
    fn each_table_keeps_the_rows_of_its_retention_window() {
        let r = Retention {
            inbox_window: Duration::from_secs(300),
            published_outbox: Duration::from_secs(60),
            history: Duration::from_secs(600),
        };
        assert_eq!(
            r.window_of("inbox"),
            Some(Duration::from_secs(600)),
            "window + margin"
        );
        assert_eq!(r.window_of("outbox"), Some(Duration::from_secs(60)));
        assert_eq!(
            r.window_of("reservation_lines"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(r.window_of("outbox_pending"), None);
        assert_eq!(r.window_of("accounts"), None);
    }

    #[test]
    fn the_sagas_a_window_holds_are_summed_over_the_phases_inside_it() {
        let spans = [
            Span {
                from: 0.0,
                to: 100.0,
                finished_per_s: 10.0,
            },
            Span {
                from: 200.0,
                to: 1000.0,
                finished_per_s: 5.0,
            },
        ];
        // The last 300 s: 300 s of the second phase.
        assert_eq!(
            sagas_within(&spans, 1000.0, Duration::from_secs(300)),
            1500.0
        );
        // The last 950 s: 50 s of the first and all 800 s of the second.
        assert_eq!(
            sagas_within(&spans, 1000.0, Duration::from_secs(950)),
            500.0 + 4000.0
        );
        assert_eq!(sagas_within(&[], 1000.0, Duration::from_secs(950)), 0.0);
    }

    #[test]
    fn sizes_are_sampled_every_minute_or_twice_a_short_window() {
        assert_eq!(sizes_every(300), Duration::from_secs(60));
        assert_eq!(sizes_every(30), Duration::from_secs(15));
        assert_eq!(sizes_every(1), Duration::from_secs(5));
    }

    /// Against the real server of the tests (postgres/postgres@127.0.0.1:5432), in a database
    /// of its own: a plain table and a partitioned one, with their indexes.
    #[tokio::test]
    async fn the_sampler_reads_every_table_with_its_indexes_and_partitions() {
        let server = "postgres://postgres:postgres@127.0.0.1:5432/postgres";
        let name = format!("sagatest_loadgen_sizes_{}", std::process::id());
        let url = db::database_url(server, &name);
        let drop_db = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        db::execute(server, &[&drop_db, &format!("CREATE DATABASE {name}")])
            .await
            .unwrap();
        db::execute(
            &url,
            &[
                "CREATE TABLE inbox (id bigint PRIMARY KEY, body text)",
                "INSERT INTO inbox SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g",
                "CREATE TABLE history (id bigint, at int) PARTITION BY RANGE (at)",
                "CREATE TABLE history_1 PARTITION OF history FOR VALUES FROM (0) TO (10)",
                "INSERT INTO history SELECT g, g % 10 FROM generate_series(1, 2000) g",
            ],
        )
        .await
        .unwrap();
        let dir = std::env::temp_dir().join(format!("loadgen-sizes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (stop, stopped) = watch::channel(true); // stopped at once: one sample
        let sizes = sample_sizes(
            vec![("payment".into(), url)],
            Duration::from_secs(1),
            dir.join("sizes.tsv"),
            stopped,
        )
        .await;
        drop(stop);
        let _ = db::execute(server, &[&drop_db]).await;
        let tsv = std::fs::read_to_string(dir.join("sizes.tsv")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let tables: Vec<&str> = sizes.iter().map(|s| s.table.as_str()).collect();
        assert_eq!(tables, ["history", "inbox"], "{sizes:?}");
        // 2,000 rows each (the partitioned table's in its partition): far over an empty table.
        assert!(sizes.iter().all(|s| s.bytes > 50_000), "{sizes:?}");
        assert!(
            tsv.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("0\tpayment\thistory\t")),
            "{tsv}"
        );
    }

    #[test]
    fn a_table_that_grows_in_the_last_window_is_named() {
        assert!(levelled(100 << 20, 104 << 20));
        assert!(!levelled(100 << 20, 120 << 20));
        assert!(levelled(0, 1 << 20));
    }

    #[test]
    fn the_report_gives_sizes_by_window_verdicts_and_bytes_per_saga() {
        let mut sizes = Vec::new();
        for t in [0, 60, 120, 180, 240] {
            // inbox levels off at 30 MiB; orders keep growing.
            sizes.push(size(t, "payment", "inbox", (t as i64 / 4).min(30)));
            sizes.push(size(t, "orchestrator", "orders", t as i64));
            sizes.push(size(t, "payment", "accounts", 1));
        }
        let r = Retention {
            inbox_window: Duration::from_secs(100),
            published_outbox: Duration::from_secs(60),
            history: Duration::from_secs(1000),
        };
        let spans = [Span {
            from: 0.0,
            to: 240.0,
            finished_per_s: 1024.0 * 1024.0 / 1000.0,
        }];
        let text = render(&sizes, 240, 120, &r, &spans, 240.0);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_string()
        };
        assert!(line("payment.inbox").ends_with("levelled"), "{text}");
        assert!(
            line("orchestrator.orders").contains("GROWS +120.0 MiB"),
            "{text}"
        );
        assert!(line("orchestrator.orders").contains("  120.0 "), "{text}");
        // The inbox keeps 100 s + the 300 s skew margin, longer than the 240 s of load: 30 MiB
        // for 240 s at 1,048.576 sagas/s, 125 bytes each.
        let per_saga: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("payment.inbox"))
            .collect();
        assert_eq!(per_saga.len(), 2, "{text}");
        assert!(per_saga[1].trim_end().ends_with(" 125"), "{text}");
        let orders: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("orchestrator.orders"))
            .collect();
        assert!(orders[1].ends_with("(still growing)"), "{text}");
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("payment.accounts") && l.contains("bytes"))
        );
        assert!(text.contains("all per-saga tables"), "{text}");
    }
}
