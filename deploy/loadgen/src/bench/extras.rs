//! The diagnostic extras around the phases:
//! - the CPU probe: how fast one core runs a fixed piece of work now, timed by the thread's own
//!   CPU time, best of three, before the fleet and after every phase; a slow hour of the host
//!   shows here, not in pgbench's figure, which the disk's flushes bound;
//! - the calibration: 15 s of pgbench, 3-insert transactions at 16 connections, so that results
//!   from machines of different speed compare;
//! - the stall (`--stall`): a service frozen for a while in the open80 phase, and how long the
//!   fleet takes to work off what it left;
//! - the profile (`--profile`): 20 s of `perf record` over the whole machine, summarised.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::broker::Api;
use super::db;
use super::procfs;

/// Iterations of the probe's loop per try; about a tenth of a second on this machine's cores.
const PROBE_ITERATIONS: u64 = 20_000_000;

/// Million iterations of a fixed integer loop per CPU second, best of three; `None` where the
/// thread's CPU time cannot be read. Another process on the other core does not count, as the
/// time is this thread's own; the best of three leaves out a try slowed by a sibling vCPU.
pub fn cpu_probe() -> Option<f64> {
    (0..3)
        .filter_map(|_| {
            let before = procfs::thread_cpu_ns()?;
            let mut x = std::hint::black_box(0x9E37_79B9_7F4A_7C15_u64);
            for i in 0..PROBE_ITERATIONS {
                x = std::hint::black_box(x.rotate_left(5) ^ i).wrapping_mul(0x100_0000_01B3);
            }
            std::hint::black_box(x);
            let ns = procfs::thread_cpu_ns()?.checked_sub(before)?;
            (ns > 0).then(|| PROBE_ITERATIONS as f64 / 1e6 / (ns as f64 / 1e9))
        })
        .reduce(f64::max)
}

/// pgbench's "tps = N" line.
pub fn parse_tps(output: &str) -> Option<f64> {
    let line = output.lines().find(|l| l.starts_with("tps = "))?;
    line["tps = ".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The calibration line for machine.txt and the summary.
pub async fn calibrate(server_url: &str, prefix: &str, out: &Path) -> String {
    let db = format!("{prefix}calibration");
    let drop = format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)");
    let create = format!("CREATE DATABASE \"{db}\"");
    let url = db::database_url(server_url, &db);
    let made = match db::execute(server_url, &[&drop, &create]).await {
        Ok(()) => {
            let table = "CREATE TABLE t (id bigserial PRIMARY KEY, a int, b text)";
            db::execute(&url, &[table]).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = made {
        return format!("calibration: could not create its database ({e}), skipped");
    }
    let script = out.join("calibration.sql");
    let sql = "BEGIN;\nINSERT INTO t (a, b) VALUES (1, 'x');\nINSERT INTO t (a, b) VALUES (2, 'y');\n\
               INSERT INTO t (a, b) VALUES (3, 'z');\nCOMMIT;\n";
    let tps = match std::fs::write(&script, sql) {
        Ok(()) => {
            let mut pgbench = Command::new("pgbench");
            pgbench
                .args([
                    "-n", "-c", "16", "-j", "2", "-T", "15", "-M", "prepared", "-f",
                ])
                .arg(&script)
                .arg(&url);
            output(pgbench).await.and_then(|o| parse_tps(&o))
        }
        Err(_) => None,
    };
    let _ = db::execute(server_url, &[&drop]).await;
    match tps {
        Some(tps) => format!(
            "calibration: {tps:.0} PostgreSQL transactions/s (pgbench, 3 inserts each, 16 \
             connections; the issue's reference machine: about 6,000)"
        ),
        None => "calibration: pgbench failed or is missing, skipped".into(),
    }
}

/// A command's stdout when it succeeds; on a blocking thread, so the samplers go on meanwhile.
async fn output(mut command: Command) -> Option<String> {
    let run = tokio::task::spawn_blocking(move || command.stderr(Stdio::null()).output());
    match run.await {
        Ok(Ok(o)) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        _ => None,
    }
}

fn signal(signal: &str, pid: u32) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

pub struct StallPlan<'a> {
    pub service: &'a str,
    pub pid: u32,
    pub at: Duration,
    pub hold: Duration,
}

/// Freezes the service `at` into the load for `hold`, then polls the queues every second
/// until they are back under twice what they held when it froze (plus 100), or `alive` turns
/// false; the lines for stall.txt. A stopped process neither reads nor acks: its queue fills
/// while the rest of the fleet goes on.
pub async fn stall(plan: StallPlan<'_>, api: &Api, alive: impl Fn() -> bool) -> String {
    let StallPlan {
        service,
        pid,
        at,
        hold,
    } = plan;
    let started = Instant::now();
    while started.elapsed() < at {
        if !alive() {
            return format!(
                "stall: the phase ended before {}s; no stall\n",
                at.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut before = None;
    for _ in 0..3 {
        before = api.queued().await;
        if before.is_some() {
            break;
        }
    }
    if !signal("-STOP", pid) {
        return format!("stall: {service} (pid {pid}) is gone; no stall\n");
    }
    tokio::time::sleep(hold).await;
    // deploy/bench.sh also sends SIGCONT when it stops, should this process end meanwhile.
    let resumed = signal("-CONT", pid);
    let went_on = Instant::now();
    // Without a count from before the freeze, "drained" is taken as 500 messages or fewer.
    let bound = before.map_or(500, |b| 2 * b + 100);
    let (mut most, mut unanswered, mut recovered) = (before.unwrap_or(0), 0, None);
    while alive() {
        match api.queued().await {
            None => unanswered += 1,
            Some(q) => {
                most = most.max(q);
                // The API's counts lag by up to 5 s: the first samples may predate the restart.
                if q <= bound && went_on.elapsed() > Duration::from_secs(5) {
                    recovered = Some(went_on.elapsed().as_secs());
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let before = before.map_or_else(|| "?".into(), |b| b.to_string());
    let mut t = format!(
        "stall: {service} frozen {}s into the phase for {}s; {before} messages queued when it froze, at most {most} after\n",
        at.as_secs(),
        hold.as_secs()
    );
    let _ = match recovered {
        Some(s) => writeln!(
            t,
            "stall: the queues were back under {bound} messages {s}s after it went on (the \
             management API's counts lag by up to 5 s; 6 s is the least this reports)"
        ),
        None => writeln!(
            t,
            "stall: the queues were not back under {bound} messages when the phase ended, {}s after it went on",
            went_on.elapsed().as_secs()
        ),
    };
    if !resumed {
        t.push_str("stall: the service could not be resumed (SIGCONT failed)\n");
    }
    if unanswered > 0 {
        let _ = writeln!(
            t,
            "stall: the management API did not answer {unanswered} of the samples"
        );
    }
    t
}

/// What each section of the profile's summary reports: a title and `perf report` arguments,
/// with an optional filter of the lines kept and how many.
const PROFILE_SECTIONS: [(&str, &str, usize); 4] = [
    (
        "share of all samples by process (comm)",
        "--no-children --sort comm",
        25,
    ),
    (
        "share of all samples by binary (kernel, postgres, beam.smp, the services)",
        "--no-children --sort dso",
        15,
    ),
    (
        "the 60 functions with the most samples of their own, whole machine",
        "--no-children --sort dso,sym",
        60,
    ),
    (
        "PostgreSQL: where its time goes (inclusive, by function)",
        "--children --comm postgres --sort sym",
        25,
    ),
];
const POSTGRES_FUNCTIONS: &str = "exec_simple PortalRun pg_plan_queries GetCachedPlan ExecutorRun \
    XLogInsert XLogFlush CommitTransaction __x64_sys_sendto __x64_sys_recvfrom __x64_sys_fdatasync \
    __x64_sys_epoll_wait do_syscall_64 ExecInsert ExecUpdate ExecIndexScan heap_insert btinsert";

/// 20 s of `perf record` over the whole machine, summarised by process and by code into
/// `perf-summary-PHASE.txt`; a line saying why when perf is missing or fails.
pub async fn profile(out: &Path, phase: &str) -> String {
    let data = out.join(format!("perf-{phase}.data"));
    let mut record = Command::new("perf");
    record
        .args(["record", "-F", "499", "-a", "-g", "-o"])
        .arg(&data)
        .args(["--", "sleep", "20"]);
    if output(record).await.is_none() {
        return format!("profile of {phase}: perf is missing or failed; no profile");
    }
    let mut summary = String::new();
    for (title, args, keep) in PROFILE_SECTIONS {
        let mut report = Command::new("perf");
        report
            .args(["report", "-i"])
            .arg(&data)
            .args(args.split_whitespace())
            .args(["-g", "none", "--stdio"]);
        let output = output(report).await.unwrap_or_default();
        let postgres = args.contains("--comm postgres");
        let lines = output
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter(|l| !postgres || POSTGRES_FUNCTIONS.split(' ').any(|f| l.contains(f)))
            .take(keep);
        let _ = writeln!(summary, "== {title} ==");
        for line in lines {
            let _ = writeln!(summary, "{line}");
        }
        summary.push('\n');
    }
    let file = out.join(format!("perf-summary-{phase}.txt"));
    match std::fs::write(&file, summary) {
        Ok(()) => format!("profile of {phase}: {}", file.display()),
        Err(e) => format!("profile of {phase}: {}: {e}", file.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_tps_is_read_off_its_report() {
        let out = "number of failed transactions: 0 (0.000%)\nlatency average = 2.6 ms\n\
                   initial connection time = 12.1 ms\ntps = 6123.456789 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(6123.456789));
        assert_eq!(parse_tps("pgbench: error"), None);
    }

    #[test]
    fn the_cpu_probe_measures_a_positive_rate() {
        assert!(cpu_probe().is_some_and(|rate| rate > 0.0));
    }
}
