//! The summary table on stdout, the raw JSON and the SVG chart on disk.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::cli::{Load, Settings};
use crate::drive::{Error, Record};
use crate::invariants::Mismatch;
use crate::seeding::Checks;
use crate::stats::{self, AroundMarks, Latency, MarkBin, Point, Second, Window};
use crate::tally::{Counts, Tally};

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub sent: usize,
    pub accepted: usize,
    /// Failed requests; refusals (below) are not errors.
    pub errors: usize,
    /// 503 (shed by admission control) and 429 (rate-limited) answers; `default` reads the
    /// results of runs from before they were counted.
    #[serde(default)]
    pub shed: usize,
    #[serde(default)]
    pub rate_limited: usize,
    /// 503s and 429s without a `Retry-After` or their error code: counted in `errors`, not in
    /// `shed` or `rate_limited`.
    #[serde(default)]
    pub refusals_malformed: usize,
    /// Open loop: ticks skipped because `--max-in-flight` orders were unfinished.
    pub dropped: u64,
    pub completed: usize,
    pub failed_payment_declined: usize,
    pub failed_out_of_stock: usize,
    pub failed_other: usize,
    /// Accepted but not terminal when tracking gave up.
    pub unfinished: usize,
    pub load_seconds: f64,
    /// Per second over the load window, first and last (partial) seconds left out.
    pub completed_per_s: f64,
    pub finished_per_s: f64,
    pub accepted_per_s: f64,
    pub accept_ms: Latency,
    pub e2e_ms: Latency,
    pub polls_per_order: f64,
    /// Accepted orders by how their final status was learnt (see `drive`).
    pub tracked_by_event: usize,
    /// With `--amqp`: no event within `--track-timeout`, so one GET read the status.
    pub tracked_by_fallback_get: usize,
    pub tracked_by_polling: usize,
    pub balance_and_stock_mismatches: usize,
    pub payments_checked: usize,
    pub payment_errors: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub settings: Settings,
    pub started_at: DateTime<Utc>,
    pub summary: Summary,
    pub invariants_hold: bool,
    pub mismatches: Vec<Mismatch>,
    pub payment_errors: Vec<String>,
    pub series: Vec<Second>,
    /// Seconds per window: a minute, or `--window`.
    pub window_s: usize,
    /// The load window by `window_s`, orders placed by when they were sent.
    pub windows: Vec<Window>,
    /// With `--marks`: the orders' end-to-end latency by when they were sent against the
    /// nearest mark.
    pub around_marks: Option<AroundMarks>,
    pub records: Vec<Record>,
}

/// The figures of a run without its orders, written beside the raw JSON as
/// `<label>.result.json`: what `loadgen bench` reads back from each phase.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Brief {
    pub label: String,
    pub summary: Summary,
    pub invariants_hold: bool,
    pub window_s: usize,
    pub windows: Vec<Window>,
    pub around_marks: Option<AroundMarks>,
}

impl Brief {
    pub fn of(r: &Report) -> Self {
        Self {
            label: r.settings.label.clone(),
            summary: r.summary.clone(),
            invariants_hold: r.invariants_hold,
            window_s: r.window_s,
            windows: r.windows.clone(),
            around_marks: r.around_marks.clone(),
        }
    }
}

/// The run's facts besides its orders: its settings, times and what the checks found.
pub struct Run<'a> {
    settings: &'a Settings,
    started_at: DateTime<Utc>,
    load_seconds: f64,
    dropped: u64,
    checks: Checks,
}

impl<'a> Run<'a> {
    pub fn new(
        settings: &'a Settings,
        started_at: DateTime<Utc>,
        load_seconds: f64,
        dropped: u64,
        checks: Checks,
    ) -> Self {
        Self {
            settings,
            started_at,
            load_seconds,
            dropped,
            checks,
        }
    }
}

/// What the report is made of, from every order ([`build`]) or from a [`Tally`] (`--window`).
pub struct Aggregates {
    counts: Counts,
    series: Vec<Second>,
    windows: Vec<Window>,
    accept_ms: Latency,
    e2e_ms: Latency,
    around_marks: Option<AroundMarks>,
}

impl Aggregates {
    pub fn of(t: &Tally) -> Self {
        Self {
            counts: t.counts.clone(),
            series: t.series(),
            windows: t.windows(),
            accept_ms: t.accept.latency(),
            e2e_ms: t.e2e.latency(),
            around_marks: None,
        }
    }
}

/// The report from every order: exact percentiles, windows of a minute, the marks' profile.
pub fn build(run: Run<'_>, records: Vec<Record>, marks_s: Option<&[f64]>) -> Report {
    let points: Vec<Point> = records
        .iter()
        .map(|r| Point {
            sent_s: r.sent_s,
            accepted: r.order_id.is_some(),
            ended_s: r.e2e_ms.map(|ms| r.sent_s + ms / 1000.0),
            completed: r.status.as_deref() == Some("COMPLETED"),
            e2e_ms: r.e2e_ms,
        })
        .collect();
    let window = run.settings.duration.as_secs_f64().round() as usize;
    let mut counts = Counts::default();
    for r in &records {
        counts.add(r);
    }
    let accept: Vec<f64> = records
        .iter()
        .filter(|r| r.order_id.is_some())
        .filter_map(|r| r.accept_ms)
        .collect();
    let e2e: Vec<f64> = records.iter().filter_map(|r| r.e2e_ms).collect();
    let aggregates = Aggregates {
        counts,
        series: stats::series(&points),
        windows: stats::windows(&points, window, 60),
        accept_ms: stats::latency(&accept),
        e2e_ms: stats::latency(&e2e),
        around_marks: marks_s.map(|marks| stats::around_marks(&points, marks, run.load_seconds)),
    };
    let mut report = build_from(run, aggregates);
    report.records = records;
    report
}

pub fn build_from(run: Run<'_>, a: Aggregates) -> Report {
    let window = run.settings.duration.as_secs_f64().round() as usize;
    let c = &a.counts;
    let checks = run.checks;
    let summary = Summary {
        sent: c.sent,
        accepted: c.accepted,
        errors: c.errors,
        shed: c.shed,
        rate_limited: c.rate_limited,
        refusals_malformed: c.refusals_malformed,
        dropped: run.dropped,
        completed: c.completed,
        failed_payment_declined: c.failed_payment_declined,
        failed_out_of_stock: c.failed_out_of_stock,
        failed_other: c.failed_other,
        unfinished: c.unfinished,
        load_seconds: run.load_seconds,
        completed_per_s: stats::sustained(&a.series, window, |s| s.completed),
        finished_per_s: stats::sustained(&a.series, window, |s| s.completed + s.failed),
        accepted_per_s: stats::sustained(&a.series, window, |s| s.accepted),
        accept_ms: a.accept_ms,
        e2e_ms: a.e2e_ms,
        polls_per_order: c.polls as f64 / c.accepted.max(1) as f64,
        tracked_by_event: c.tracked_by_event,
        tracked_by_fallback_get: c.tracked_by_fallback_get,
        tracked_by_polling: c.tracked_by_polling,
        balance_and_stock_mismatches: checks.mismatches.len(),
        payments_checked: checks.payments_checked,
        payment_errors: checks.payment_errors.len(),
    };
    let invariants_hold = run.settings.skip_checks
        || (checks.mismatches.is_empty() && checks.payment_errors.is_empty());
    Report {
        settings: run.settings.clone(),
        started_at: run.started_at,
        summary,
        invariants_hold,
        mismatches: checks.mismatches,
        payment_errors: checks.payment_errors,
        series: a.series,
        window_s: run.settings.window_s.unwrap_or(60),
        windows: a.windows,
        around_marks: a.around_marks,
        records: Vec::new(),
    }
}

pub fn load_label(load: Load) -> String {
    match load {
        Load::Closed { clients } => format!("closed loop, {clients} clients"),
        Load::Open { rate } => format!("open loop, {rate:.0} orders/s"),
    }
}

pub fn table(r: &Report) -> String {
    let s = &r.summary;
    let mut t = String::new();
    let lat = |l: &Latency| {
        format!(
            "{:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            l.p50, l.p95, l.p99, l.max
        )
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        t,
        "\n== loadgen {} ({}, {:.1} s) ==",
        r.settings.label,
        load_label(r.settings.load),
        s.load_seconds
    );
    let _ = writeln!(
        t,
        "orders sent {}  accepted {}  errors {}  dropped {}",
        s.sent, s.accepted, s.errors, s.dropped
    );
    let _ = writeln!(
        t,
        "refused    shed (503) {}  rate-limited (429) {}  (503/429 without Retry-After or \
         their error code, counted as errors: {})",
        s.shed, s.rate_limited, s.refusals_malformed
    );
    let _ = writeln!(
        t,
        "outcomes   COMPLETED {}  FAILED payment_declined {}  out_of_stock {}  other {}  unfinished {}",
        s.completed, s.failed_payment_declined, s.failed_out_of_stock, s.failed_other, s.unfinished
    );
    let _ = writeln!(
        t,
        "sustained  {:.1} COMPLETED/s   {:.1} finished sagas/s   {:.1} accepted/s",
        s.completed_per_s, s.finished_per_s, s.accepted_per_s
    );
    let _ = writeln!(t, "latency (ms)       p50      p95      p99      max");
    let _ = writeln!(t, "  accept      {}", lat(&s.accept_ms));
    let _ = writeln!(t, "  end-to-end  {}", lat(&s.e2e_ms));
    t.push_str(&windows_table(&r.windows, r.window_s));
    if let Some(a) = &r.around_marks {
        t.push_str(&marks_table(a));
    }
    if r.settings.amqp.is_some() {
        let _ = writeln!(
            t,
            "tracking   by event {}  by one GET after --track-timeout {}  polled (tap stopped) {}",
            s.tracked_by_event, s.tracked_by_fallback_get, s.tracked_by_polling
        );
    }
    let _ = writeln!(t, "polls per order {:.2}", s.polls_per_order);
    let verdict = if r.settings.skip_checks {
        "not checked".to_string()
    } else if r.invariants_hold {
        format!(
            "HOLD (balances and stock of every seeded id; {} payments checked)",
            s.payments_checked
        )
    } else {
        format!(
            "VIOLATED: {} balance/stock mismatches, {} payment errors of {} checked",
            s.balance_and_stock_mismatches, s.payment_errors, s.payments_checked
        )
    };
    let _ = writeln!(t, "invariants {verdict}");
    for m in r.mismatches.iter().take(10) {
        let _ = writeln!(
            t,
            "  {} of {}: expected {}, found {:?}",
            m.what, m.id, m.expected, m.actual
        );
    }
    for e in r.payment_errors.iter().take(10) {
        let _ = writeln!(t, "  {e}");
    }
    t
}

/// The lines of the table by window (a minute, or `--window`): orders by when they were sent,
/// completions by when they ended; nothing for a run of one window, whose line would repeat the
/// whole run's. `loadgen bench` repeats them in its summary.
pub fn windows_table(windows: &[Window], window_s: usize) -> String {
    let mut t = String::new();
    if windows.len() < 2 {
        return t;
    }
    let by = if window_s == 60 {
        "by minute".to_string()
    } else {
        format!("by {window_s} s")
    };
    let _ = writeln!(
        t,
        "{by:>14} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>11}",
        "sent/s", "COMPL/s", "e2e p50", "p95", "p99", "max", "unfinished"
    );
    for w in windows {
        let l = &w.e2e_ms;
        let _ = writeln!(
            t,
            "{:>14} {:>7.1} {:>8.1} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>11}",
            format!("{}-{} s", w.from_s, w.from_s + w.seconds),
            w.sent_per_s,
            w.completed_per_s,
            l.p50,
            l.p95,
            l.p99,
            l.max,
            w.unfinished
        );
    }
    t
}

/// The orders by when they were sent against their nearest `--marks` mark, the bins from the
/// first to the last that holds any (with marks a second apart, the outer ones cannot).
/// `loadgen bench` repeats them in its summary.
pub fn marks_table(a: &AroundMarks) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "around marks: {} in the load window, every {:.1} s; end-to-end (ms) of the orders sent \
         this long after the nearest one",
        a.marks, a.every_s
    );
    let filled = |b: &MarkBin| b.e2e_ms.count > 0;
    let (Some(first), Some(last)) = (
        a.bins.iter().position(filled),
        a.bins.iter().rposition(filled),
    ) else {
        t.push_str("  no ended order was sent between two marks\n");
        return t;
    };
    let bins = &a.bins[first..=last];
    let mut row = |label: &str, cell: &dyn Fn(&MarkBin) -> String| {
        let _ = write!(t, "  {label:<9}");
        for b in bins {
            let _ = write!(t, "{:>7}", cell(b));
        }
        t.push('\n');
    };
    // An empty bin has no latency to show.
    let ms = |b: &MarkBin, pick: fn(&Latency) -> f64| match b.e2e_ms.count {
        0 => "-".to_string(),
        _ => format!("{:.1}", pick(&b.e2e_ms)),
    };
    row("from (s)", &|b| format!("{:.2}", b.from_s));
    row("orders", &|b| b.e2e_ms.count.to_string());
    row("mean", &|b| ms(b, |l| l.mean));
    row("p99", &|b| ms(b, |l| l.p99));
    t
}

pub fn print(r: &Report) {
    print!("{}", table(r));
    // One machine-readable line for scripts (`loadgen bench` reads `<label>.result.json`).
    let s = &r.summary;
    println!(
        "RESULT label={} completed_per_s={:.1} finished_per_s={:.1} accept_p50_ms={:.1} accept_p99_ms={:.1} e2e_p50_ms={:.1} e2e_p99_ms={:.1} invariants={}",
        r.settings.label,
        s.completed_per_s,
        s.finished_per_s,
        s.accept_ms.p50,
        s.accept_ms.p99,
        s.e2e_ms.p50,
        s.e2e_ms.p99,
        if r.invariants_hold {
            "hold"
        } else {
            "violated"
        }
    );
}

pub fn write(settings: &Settings, r: &Report) -> Result<(), Error> {
    std::fs::create_dir_all(&settings.out)?;
    let json = settings.out.join(format!("{}.json", settings.label));
    std::fs::write(&json, serde_json::to_vec(r)?)?;
    let brief = settings.out.join(format!("{}.result.json", settings.label));
    std::fs::write(&brief, serde_json::to_vec_pretty(&Brief::of(r))?)?;
    let svg = settings.out.join(format!("{}.svg", settings.label));
    let title = format!("{}: {}", settings.label, load_label(settings.load));
    std::fs::write(&svg, crate::chart::render(&title, &r.series))?;
    eprintln!("loadgen: wrote {} and {}", json.display(), svg.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(from_s: usize, p99: f64) -> Window {
        Window {
            from_s,
            seconds: 60,
            sent_per_s: 1000.0,
            e2e_ms: Latency {
                count: 60_000,
                p50: 90.0,
                p95: 150.0,
                p99,
                max: 400.0,
                mean: 95.0,
            },
            unfinished: 0,
            completed_per_s: 990.0,
        }
    }

    #[test]
    fn a_line_per_minute_shows_which_minute_was_slow() {
        let t = windows_table(&[minute(0, 210.0), minute(60, 3664.0)], 60);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[1].contains("0-60 s") && lines[1].contains("210.0"),
            "{t}"
        );
        assert!(
            lines[2].contains("60-120 s") && lines[2].contains("3664.0"),
            "{t}"
        );
    }

    #[test]
    fn the_lines_follow_their_header_column_for_column() {
        let t = windows_table(&[minute(0, 210.0), minute(60, 3664.0)], 60);
        let lines: Vec<&str> = t.lines().collect();
        // Each figure ends where its heading does.
        for (heading, figure) in [("sent/s", "1000.0"), ("p99", "3664.0"), ("max", "400.0")] {
            let end = lines[0].find(heading).map(|i| i + heading.len());
            assert_eq!(end, lines[2].find(figure).map(|i| i + figure.len()), "{t}");
        }
    }

    #[test]
    fn the_marks_profile_lines_up_under_its_offsets() {
        let bin = |from_s: f64, count: usize, p99: f64| MarkBin {
            from_s,
            e2e_ms: Latency {
                count,
                p50: 70.0,
                p95: 120.0,
                p99,
                max: 480.5,
                mean: 166.0,
            },
        };
        let t = marks_table(&AroundMarks {
            marks: 48,
            every_s: 12.49,
            bins: vec![
                bin(-0.25, 3170, 282.2),
                bin(0.0, 0, 0.0),
                bin(0.25, 3168, 286.7),
            ],
        });
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("around marks: 48 in the load window, every 12.5 s;"));
        // Each figure ends where its offset does; an empty bin shows a dash, not a zero.
        for (offset, row, figure) in [
            ("-0.25", 2, "3170"),
            ("0.25", 3, "166.0"),
            ("0.25", 4, "286.7"),
            ("0.00", 2, "0"),
            ("0.00", 4, "-"),
        ] {
            let end = lines[1].rfind(offset).map(|i| i + offset.len());
            assert_eq!(
                end,
                lines[row].rfind(figure).map(|i| i + figure.len()),
                "{t}"
            );
        }
        assert!(lines[4].starts_with("  p99"), "{t}");

        // Empty bins at either end are left out; with none filled, a line says so.
        let trimmed = marks_table(&AroundMarks {
            marks: 300,
            every_s: 1.5,
            bins: vec![bin(-1.0, 0, 0.0), bin(-0.75, 10, 150.0), bin(-0.5, 0, 0.0)],
        });
        assert_eq!(
            trimmed.lines().nth(1).map(str::trim),
            Some("from (s)   -0.75")
        );
        let empty = marks_table(&AroundMarks {
            marks: 1,
            every_s: 0.0,
            bins: vec![bin(0.0, 0, 0.0)],
        });
        assert_eq!(empty.lines().count(), 2, "{empty}");
        assert!(
            empty
                .lines()
                .all(|l| l.starts_with("around") || l.starts_with("  "))
        );
    }

    #[test]
    fn the_marks_reach_the_report_and_its_table() {
        let record = |seq: u64, sent_s: f64| Record {
            seq,
            kind: crate::mix::Kind::Complete,
            customer_id: "c".into(),
            total_cents: 100,
            lines: vec![("p".into(), 1)],
            sent_s,
            accept_ms: Some(5.0),
            http_status: Some(202),
            refusal: None,
            error: None,
            order_id: Some(uuid::Uuid::nil()),
            status: Some("COMPLETED".into()),
            failure_reason: None,
            e2e_ms: Some(70.0),
            polls: 0,
            tracked_by: Some(crate::drive::Tracking::Event),
        };
        let Ok(crate::cli::Command::Run(settings)) = crate::cli::parse(&[]) else {
            panic!("parse failed");
        };
        let records = vec![record(0, 1.0), record(1, 2.1), record(2, 3.0)];
        let build = |marks: Option<&[f64]>| {
            let run = Run::new(&settings, Utc::now(), 4.0, 0, Checks::default());
            build(run, records.clone(), marks)
        };
        let with = build(Some(&[0.5, 2.0, 3.5]));
        let profile = with.around_marks.as_ref().expect("a profile with --marks");
        assert_eq!(profile.marks, 3);
        assert_eq!(
            profile.bins.iter().map(|b| b.e2e_ms.count).sum::<usize>(),
            3
        );
        assert!(table(&with).contains("around marks: 3 in the load window"));
        let without = build(None);
        assert_eq!(without.around_marks, None);
        assert!(!table(&without).contains("around marks"));
    }

    #[test]
    fn a_run_of_one_minute_gets_no_minute_lines() {
        assert_eq!(windows_table(&[minute(0, 210.0)], 60), "");
    }
}
