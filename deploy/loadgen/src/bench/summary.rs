//! The benchmark's summary (`summary.txt`): the phases' rates and latencies, which minutes the
//! tail came from, the rollovers, disk flushes, pressure stalls, CPU (cores and per saga),
//! PostgreSQL's work per saga, memory and backlog early / late / max, the growth check of the
//! open80 phase, and what was left at each phase's end.

use std::fmt::Write as _;

use super::analysis::{self, Allowance, BACKLOG, EarlyLate, MEMORY};
use super::samplers::Samples;
use crate::report::{self, Brief};

/// What one reported phase left behind.
#[derive(Debug, Clone, Default)]
pub struct PhaseOutcome {
    pub name: String,
    /// `None` when the phase's loadgen wrote no result.
    pub brief: Option<Brief>,
    /// The load window, epoch seconds.
    pub window: (f64, f64),
    /// Cores used on average per process group, over the load window.
    pub cpu: Vec<(String, f64)>,
    /// WAL KiB, WAL flushes, transactions and context switches per finished saga.
    pub per_saga: [Option<f64>; 4],
    pub probe_after: Option<f64>,
    pub samples: Samples,
    pub outbox_end: Vec<(String, Option<i64>)>,
    pub queues_end: Option<Vec<(String, u64)>>,
    pub statements: Option<String>,
    /// Open loop: the phase whose growth is checked.
    pub open_loop: bool,
    /// Its loadgen keeps every order, so its own memory grows by design (all but the soak).
    pub keeps_orders: bool,
    /// The soak: every table's size, every minute.
    pub table_sizes: Vec<super::soak::TableSize>,
    /// Lines of the extras (the profile's file).
    pub notes: Vec<String>,
}

impl PhaseOutcome {
    pub fn finished_per_s(&self) -> Option<f64> {
        self.brief.as_ref().map(|b| b.summary.finished_per_s)
    }
}

/// The lines above the table.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub title: String,
    pub lines: Vec<String>,
    pub probe_before: Option<f64>,
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "?".into(), |v| format!("{v:.decimals$}"))
}

/// Memory in MiB and each backlog column: (name, early/late/max, allowance).
fn levels(s: &Samples, outboxes: &[String]) -> Vec<(String, EarlyLate, Allowance)> {
    let mut levels: Vec<_> = s
        .rss_kb
        .iter()
        .map(|(name, kb)| {
            let mib: Vec<f64> = kb.iter().map(|v| v / 1024.0).collect();
            (name.clone(), analysis::early_late(&mib), MEMORY)
        })
        .collect();
    let queued: Vec<f64> = s
        .backlog
        .iter()
        .filter_map(|b| b.queued)
        .map(|v| v as f64)
        .collect();
    levels.push(("queued".into(), analysis::early_late(&queued), BACKLOG));
    for (i, name) in outboxes.iter().enumerate() {
        let rows: Vec<f64> = s
            .backlog
            .iter()
            .filter_map(|b| b.outbox.get(i).copied().flatten())
            .map(|v| v as f64)
            .collect();
        levels.push((
            format!("outbox_{name}"),
            analysis::early_late(&rows),
            BACKLOG,
        ));
    }
    levels
}

/// Backlog samples (every 5 s) below which early and late are a sample or two apart in a
/// phase still filling up: too few to tell growth from the start.
const MIN_BACKLOG_SAMPLES: usize = 10;

/// The growth verdict of a phase: what grew, or "none". A load generator that keeps every
/// order grows by design, so its own memory is left out then (`keeps_orders`).
pub fn growth(s: &Samples, outboxes: &[String], keeps_orders: bool) -> String {
    if s.backlog.len() < MIN_BACKLOG_SAMPLES {
        return format!("too short to tell ({} backlog samples)", s.backlog.len());
    }
    let grown: Vec<String> = levels(s, outboxes)
        .into_iter()
        .filter(|(name, e, allowance)| {
            !(keeps_orders && name == "loadgen") && analysis::grows(e, *allowance)
        })
        .map(|(name, e, _)| format!("{name} {:.1} -> {:.1}", e.early, e.late))
        .collect();
    if grown.is_empty() {
        "none".into()
    } else {
        format!("GROWS: {}", grown.join(", "))
    }
}

/// A line of figures for each window of each phase (the whole load window, then its minutes)
/// that `row` has figures for.
fn windowed(
    t: &mut String,
    phases: &[PhaseOutcome],
    slack: f64,
    row: impl Fn(&PhaseOutcome, f64, f64) -> Option<String>,
) {
    for p in phases {
        for (label, from, to) in analysis::by_minute(p.window.0, p.window.1, slack) {
            let Some(figures) = row(p, from, to) else {
                continue;
            };
            let _ = if label.is_empty() {
                writeln!(t, "{:<14} {figures}", p.name)
            } else {
                writeln!(t, "{label:>14} {figures}")
            };
        }
    }
}

pub fn render(h: &Header, phases: &[PhaseOutcome], outboxes: &[String]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "\n== {} ==", h.title);
    for line in &h.lines {
        let _ = writeln!(t, "{line}");
    }
    let _ = write!(
        t,
        "cpu probe, million loop iterations per CPU second (higher is faster): before the phases (fleet idle) {}",
        opt(h.probe_before, 0)
    );
    for p in phases {
        let _ = write!(t, ", after {} {}", p.name, opt(p.probe_after, 0));
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "{:<8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} invariants",
        "phase", "done/s", "COMPL/s", "acc p50", "acc p99", "e2e p50", "e2e p99", "refused"
    );
    for p in phases {
        let Some(b) = &p.brief else {
            let _ = writeln!(t, "{:<8} (no result)", p.name);
            continue;
        };
        let s = &b.summary;
        let verdict = if b.invariants_hold {
            "hold"
        } else {
            "VIOLATED"
        };
        let _ = writeln!(
            t,
            "{:<8} {:>10.1} {:>10.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8} {verdict}",
            p.name,
            s.finished_per_s,
            s.completed_per_s,
            s.accept_ms.p50,
            s.accept_ms.p99,
            s.e2e_ms.p50,
            s.e2e_ms.p99,
            s.shed + s.rate_limited
        );
    }
    // Which minutes a phase's p99 came from, and the orders around the broker's rollovers.
    for p in phases {
        let Some(b) = &p.brief else { continue };
        let minutes = report::windows_table(&b.windows, b.window_s);
        if !minutes.is_empty() {
            let _ = write!(t, "{}:\n{minutes}", p.name);
        }
        if let Some(a) = &b.around_marks {
            let _ = write!(
                t,
                "{}, rollovers of the broker's WAL: {}",
                p.name,
                report::marks_table(a)
            );
        }
    }
    let _ = writeln!(
        t,
        "\nDisk flushes (flush probe: a 4 KiB write and fsync every 100 ms), ms over the load window"
    );
    let _ = writeln!(
        t,
        "{:<14} {:>8} {:>8} {:>8} {:>6}",
        "phase", "p50", "p99", "max", "count"
    );
    windowed(&mut t, phases, 0.0, |p, from, to| {
        let [p50, p99, max, n] = analysis::flush_stats(&p.samples.flush, from, to)?;
        Some(format!("{p50:>8.1} {p99:>8.1} {max:>8.1} {n:>6}"))
    });
    let _ = writeln!(
        t,
        "\nPressure stalls (PSI, whole machine): % of the load window during which at least one \
         task waited for a core (cpu some), for I/O (io some), or every non-idle task waited \
         for I/O (io full)"
    );
    let _ = writeln!(
        t,
        "{:<14} {:>8} {:>8} {:>8}",
        "phase", "cpu some", "io some", "io full"
    );
    windowed(&mut t, phases, 1.0, |p, from, to| {
        let shares = analysis::pressure_stats(&p.samples.pressure, from, to)?;
        let [cpu, io, full] = shares.map(|v| opt(v, 1));
        Some(format!("{cpu:>8} {io:>8} {full:>8}"))
    });
    let _ = writeln!(
        t,
        "\nCPU (cores used on average; 'postgres_all' and 'machine_busy' include other users of this machine)"
    );
    if let Some(first) = phases.first() {
        let _ = write!(t, "{:<8}", "phase");
        for (name, _) in &first.cpu {
            let _ = write!(t, " {name:>14}");
        }
        let _ = writeln!(t);
    }
    for p in phases {
        let _ = write!(t, "{:<8}", p.name);
        for (_, cores) in &p.cpu {
            let _ = write!(t, " {cores:>14.2}");
        }
        let _ = writeln!(t);
    }
    let _ = writeln!(
        t,
        "\nCPU per finished saga, ms (cores / finished sagas per second)"
    );
    for p in phases {
        let _ = write!(t, "{:<8}", p.name);
        if let Some(rate) = p.finished_per_s().filter(|r| *r > 0.0) {
            for (name, cores) in p.cpu.iter().filter(|(n, _)| n != "postgres_all") {
                let _ = write!(t, " {name}={:.3}", cores / rate * 1000.0);
            }
        }
        let _ = writeln!(t);
    }
    let _ = writeln!(
        t,
        "\nPostgreSQL per finished saga: WAL KiB written and flushes (pg_stat_wal.wal_sync), all \
         databases; transactions of the fleet's databases; context switches of the whole machine"
    );
    for p in phases {
        let [wal, flushes, xacts, ctxt] = p.per_saga;
        let _ = writeln!(
            t,
            "{:<8} {} KiB, {} flushes, {} transactions, {} context switches",
            p.name,
            opt(wal, 2),
            opt(flushes, 2),
            opt(xacts, 2),
            opt(ctxt, 1)
        );
    }
    let _ = writeln!(
        t,
        "\nResident memory (MiB; PostgreSQL: anonymous memory of all its processes) and backlog \
         (messages queued, outbox rows unpublished; every 5 s): early / late / max, the second \
         and the last tenth of the phase"
    );
    for p in phases {
        let _ = write!(t, "{:<8}", p.name);
        for (name, e, allowance) in levels(&p.samples, outboxes) {
            let decimals = if allowance.plus == MEMORY.plus { 1 } else { 0 };
            let _ = write!(
                t,
                " {name}={:.decimals$}/{:.decimals$}/{:.decimals$}",
                e.early, e.late, e.max
            );
        }
        let _ = writeln!(t);
        // The closed loop bounds what is in flight by its clients: growth is open80's question.
        if p.open_loop {
            let verdict = growth(&p.samples, outboxes, p.keeps_orders);
            let _ = writeln!(t, "{:<8} growth: {verdict}", "");
        }
    }
    let _ = writeln!(t);
    for p in phases {
        let outbox: Vec<String> = p
            .outbox_end
            .iter()
            .map(|(s, n)| format!("{s}={}", n.map_or_else(|| "?".into(), |n| n.to_string())))
            .collect();
        let _ = writeln!(
            t,
            "{}: unpublished outbox rows at the end: {}",
            p.name,
            outbox.join(" ")
        );
        let queues = match &p.queues_end {
            Some(q) => {
                let full: Vec<String> = q
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(name, n)| format!("{name}={n}"))
                    .collect();
                full.join(" ")
            }
            None => "? (the management API did not answer)".into(),
        };
        let _ = writeln!(t, "{}: non-empty queues at the end: {queues}", p.name);
    }
    for p in phases {
        if let Some(statements) = &p.statements {
            let _ = writeln!(
                t,
                "\n{}: database time by statement (pg_stat_statements): ms per saga, statements \
                 per saga, rows per statement, planning share\n{statements}",
                p.name
            );
        }
    }
    for note in phases.iter().flat_map(|p| &p.notes) {
        let _ = writeln!(t, "{note}");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::samplers::Backlog;

    fn samples(rss_late_kb: f64, queued_late: u64) -> Samples {
        let mut rss = vec![30.0 * 1024.0; 90];
        rss.extend(vec![rss_late_kb; 10]);
        let mut backlog: Vec<Backlog> = (0..18)
            .map(|i| Backlog {
                t_s: i * 5,
                queued: Some(20),
                outbox: vec![Some(2), Some(1), Some(0)],
            })
            .collect();
        backlog.extend((18..20).map(|i| Backlog {
            t_s: i * 5,
            queued: Some(queued_late),
            outbox: vec![Some(2), Some(1), Some(0)],
        }));
        Samples {
            rss_kb: vec![("payment".into(), rss), ("loadgen".into(), vec![1.0; 100])],
            backlog,
            ..Samples::default()
        }
    }

    fn outboxes() -> Vec<String> {
        ["orchestrator", "payment", "inventory"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn a_steady_phase_shows_no_growth() {
        assert_eq!(
            growth(&samples(31.0 * 1024.0, 30), &outboxes(), true),
            "none"
        );
    }

    #[test]
    fn a_phase_of_a_few_backlog_samples_is_too_short_to_tell() {
        let mut short = samples(80.0 * 1024.0, 9000);
        short.backlog.truncate(4);
        assert!(growth(&short, &outboxes(), true).starts_with("too short"));
    }

    #[test]
    fn the_load_generators_memory_counts_only_where_it_keeps_no_orders() {
        let mut s = samples(31.0 * 1024.0, 30);
        let mut grown = vec![20.0 * 1024.0; 90];
        grown.extend(vec![900.0 * 1024.0; 10]);
        s.rss_kb[1].1 = grown;
        assert_eq!(growth(&s, &outboxes(), true), "none");
        assert!(growth(&s, &outboxes(), false).contains("loadgen 20.0 -> 900.0"));
    }

    #[test]
    fn growing_memory_and_queues_are_named() {
        let verdict = growth(&samples(80.0 * 1024.0, 9000), &outboxes(), true);
        assert!(verdict.starts_with("GROWS: "), "{verdict}");
        assert!(verdict.contains("payment 30.0 -> 80.0"), "{verdict}");
        assert!(verdict.contains("queued"), "{verdict}");
        assert!(!verdict.contains("outbox"), "{verdict}");
    }

    #[test]
    fn the_summary_has_a_row_per_phase_and_the_growth_verdict() {
        let phase = PhaseOutcome {
            name: "open80".into(),
            window: (1000.0, 1100.0),
            cpu: vec![("payment".into(), 0.25)],
            samples: samples(31.0 * 1024.0, 30),
            outbox_end: vec![("payment".into(), Some(0))],
            queues_end: Some(vec![("payment.commands".into(), 3), ("idle".into(), 0)]),
            ..PhaseOutcome::default()
        };
        let header = Header {
            title: "bench b1".into(),
            ..Header::default()
        };
        let text = render(&header, std::slice::from_ref(&phase), &outboxes());
        assert!(!text.contains("growth"), "{text}");
        let phase = PhaseOutcome {
            open_loop: true,
            ..phase
        };
        let text = render(&header, &[phase], &outboxes());
        assert!(text.contains("open80   (no result)"), "{text}");
        assert!(text.contains("growth: none"), "{text}");
        assert!(
            text.contains("non-empty queues at the end: payment.commands=3\n"),
            "{text}"
        );
        assert!(text.contains("payment=30.0/31.0/31.0"), "{text}");
    }
}
