//! `loadgen bench`: the standard benchmark against a fleet that deploy/bench.sh started.
//!
//! Module map:
//! - [`cli`]: its arguments; [`plan`]: the phases and their loadgen arguments.
//! - this file: runs each phase as a child loadgen (so that the load generator's CPU and memory
//!   are its own, apart from the samplers'), accounts CPU between the markers it writes when
//!   its load starts and ends (seeding and checks left out), and writes the summary.
//! - [`samplers`]: memory, pressure, flush probe, rollovers and backlog while a phase runs.
//! - [`soak`]: the soak's table sizes, and the bytes kept per saga.
//! - [`procfs`], [`db`], [`broker`]: where the figures are read.
//! - [`analysis`], [`summary`]: the figures derived from the samples, and the report.
//! - [`overload`]: the overload phase's targets and the drain after it.
//! - [`extras`]: CPU probe, pgbench calibration, stall, perf profile.

pub mod analysis;
pub mod broker;
pub mod cli;
pub mod db;
pub mod extras;
pub mod overload;
pub mod plan;
pub mod procfs;
pub mod samplers;
pub mod soak;
pub mod summary;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::PgConnection;

use crate::drive::Error;
use crate::report::Brief;
use cli::BenchSettings;
use samplers::{Context, append, epoch_now};
use summary::{Header, PhaseOutcome};

struct Bench {
    s: BenchSettings,
    cx: Context,
    api: Arc<broker::Api>,
    admin: Option<PgConnection>,
    statements: bool,
    clk_tck: f64,
}

/// Runs the plan; true when every reported phase kept the invariants.
pub async fn run(s: BenchSettings) -> Result<bool, Error> {
    std::fs::create_dir_all(&s.out)?;
    let api = Arc::new(broker::Api::new(&s.rabbitmq_api, &s.amqp)?);
    let mut admin = db::connect(&s.pg).await;
    let statements = match admin.as_mut() {
        Some(conn) => db::statements_available(conn).await,
        None => false,
    };
    let outboxes = s
        .pids
        .services
        .iter()
        .filter(|(name, _)| cli::WITH_OUTBOX.contains(&name.as_str()))
        .map(|(name, _)| {
            let url = db::database_url(&s.pg, &format!("{}{name}", s.db_prefix));
            (name.clone(), url)
        });
    let cx = Context {
        out: s.out.clone(),
        processes: samplers::Processes {
            named: Vec::new(),
            postmaster: s.pids.postgres,
            page_kb: procfs::getconf("PAGESIZE", 4096) / 1024,
        },
        api: api.clone(),
        outboxes: outboxes.collect(),
        broker_dir: s.broker_dir.clone(),
    };
    let mut b = Bench {
        clk_tck: procfs::getconf("CLK_TCK", 100) as f64,
        s,
        cx,
        api,
        admin,
        statements,
    };
    let mut header = b.machine().await;
    let mut reported: Vec<PhaseOutcome> = Vec::new();
    let mut rate = b.s.plan.open_rate.unwrap_or(0);
    let mut overload_rate = b.s.plan.overload_rate.unwrap_or(0);
    let mut peak_brief = None;
    let mut verdict = None;
    let mut spans = Vec::new();
    let mut durations = Vec::new();
    for phase in plan::phases(&b.s.plan) {
        let phase_rate = match phase.load {
            plan::PhaseLoad::Overload => overload_rate,
            _ => rate,
        };
        let outcome = b.phase(&phase, phase_rate).await?;
        if phase.name == "peak" {
            let peak = outcome
                .finished_per_s()
                .ok_or("no result from the peak phase")?;
            rate = plan::open_rate(&b.s.plan, peak);
            overload_rate = plan::overload_rate(&b.s.plan, peak);
            peak_brief = outcome.brief.clone();
        }
        if phase.load == plan::PhaseLoad::Overload {
            let peak = peak_brief.as_ref();
            verdict = overload::judge(&b.cx.outboxes, &outcome, phase_rate, peak).await;
        }
        spans.push(soak::Span {
            from: outcome.window.0,
            to: outcome.window.1,
            finished_per_s: outcome.finished_per_s().unwrap_or(0.0),
        });
        if phase.reported {
            let mut d = format!("{} {}s", phase.name, phase.seconds);
            if matches!(
                phase.load,
                plan::PhaseLoad::Open | plan::PhaseLoad::Overload
            ) {
                let _ = write!(d, " at {phase_rate}/s");
            }
            durations.push(d);
            reported.push(outcome);
        }
    }
    let mut durations = durations.join(", ");
    if let Some(stall) = &b.s.stall {
        let _ = write!(
            durations,
            " with {} frozen for {}s at {}s of open80",
            stall.service, stall.for_s, stall.at_s
        );
    }
    header.title = format!(
        "bench {} on {} cores: {durations} (load average after: {})",
        b.s.run_id,
        cores(),
        procfs::load_average()
    );
    let outbox_names: Vec<String> = b.cx.outboxes.iter().map(|(n, _)| n.clone()).collect();
    let mut text = summary::render(&header, &reported, &outbox_names);
    if let Some(soak) = reported.iter().find(|p| !p.table_sizes.is_empty()) {
        let p = &b.s.plan;
        let window_s = p.soak_window_s;
        text.push_str(&soak::render(
            &soak.table_sizes,
            p.soak_s,
            window_s,
            &b.s.retention,
            &spans,
            soak.window.1,
        ));
        if let Some(b) = &soak.brief {
            let s = &b.summary;
            let _ = writeln!(
                text,
                "soak: {} orders accepted, {} of them unfinished when tracking gave up; {} \
                 requests failed",
                s.accepted, s.unfinished, s.errors
            );
        }
    }
    if let Some(verdict) = &verdict {
        let rendered = verdict.render();
        std::fs::write(b.s.out.join("overload.txt"), &rendered)?;
        text.push_str(&rendered);
    }
    let out = b.s.out.display();
    for extra in ["stall.txt"] {
        if let Ok(lines) = std::fs::read_to_string(b.s.out.join(extra)) {
            text.push_str(&lines);
        }
    }
    let charts: Vec<String> = reported
        .iter()
        .map(|p| format!("{out}/{}.svg", p.name))
        .collect();
    let _ = writeln!(
        text,
        "charts: {}; raw results: {out}/*.json; samples: {out}/{{rss,backlog,flush,pressure,sizes}}-*.tsv",
        charts.join(" ")
    );
    std::fs::write(b.s.out.join("summary.txt"), &text)?;
    print!("{text}");
    Ok(reported
        .iter()
        .all(|p| p.brief.as_ref().is_some_and(|b| b.invariants_hold)))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "?".into(), |t| t.trim().to_string())
}

impl Bench {
    /// machine.txt: what the results depend on besides the fleet. Returns the summary's header.
    async fn machine(&mut self) -> Header {
        let mut lines = Vec::new();
        if self.s.calibrate {
            eprintln!("bench: calibrating: pgbench, 3-insert transactions, 16 connections, 15 s");
            lines.push(extras::calibrate(&self.s.pg, &self.s.db_prefix, &self.s.out).await);
        }
        let mut idle = format!(
            "cpuidle: {}",
            first_line("/sys/devices/system/cpu/cpuidle/current_driver")
        );
        let halt_poll = "/sys/module/haltpoll/parameters/guest_halt_poll_ns";
        if Path::new(halt_poll).exists() {
            let _ = write!(idle, ", guest_halt_poll_ns {}", first_line(halt_poll));
        }
        lines.push(idle);
        lines.extend(self.s.notes.iter().cloned());
        let probe_before = extras::cpu_probe();
        let (mut pg_version, mut sync_commit) = (None, None);
        if let Some(conn) = self.admin.as_mut() {
            pg_version = db::text(conn, "SELECT current_setting('server_version')").await;
            sync_commit = db::text(conn, "SELECT current_setting('synchronous_commit')").await;
            lines.push(db::settings(conn).await);
        }
        let rustc = std::process::Command::new("rustc")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .map_or_else(|| "?".into(), |kb| format!("{} MiB", kb / 1024));
        let unknown = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        let mut machine = vec![
            format!("run id: {}", self.s.run_id),
            format!("date: {}", chrono::Utc::now().format("%FT%TZ")),
            format!("nproc: {}", cores()),
            format!("memory: {memory}"),
            format!("kernel: {}", first_line("/proc/sys/kernel/osrelease")),
            format!("rustc: {rustc}"),
            format!("postgres: {}", unknown(pg_version)),
            format!("synchronous_commit: {}", unknown(sync_commit)),
            format!("rabbitmq: {}", unknown(self.api.version().await)),
        ];
        machine.extend(lines.iter().cloned());
        machine.push(format!(
            "cpu probe before the phases (fleet idle): {} million loop iterations per CPU second",
            probe_before.map_or_else(|| "?".into(), |v| format!("{v:.0}"))
        ));
        machine.push(format!("load average before: {}", procfs::load_average()));
        let text = machine.join("\n") + "\n";
        eprint!("{text}");
        append(&self.s.out.join("machine.txt"), &text);
        Header {
            title: String::new(),
            lines,
            probe_before,
        }
    }

    /// CPU ticks per process group now (`postgres_bench`: the backends of the fleet's
    /// databases; `postgres_all` and `machine_busy` include other users of the machine).
    fn cpu_ticks(&self, loadgen: u32) -> Vec<(String, u64)> {
        let mut ticks: Vec<(String, u64)> = self
            .s
            .pids
            .services
            .iter()
            .map(|(name, pid)| (name.clone(), procfs::cpu_ticks(*pid)))
            .collect();
        ticks.push(("rabbitmq".into(), procfs::cpu_ticks(self.s.pids.rabbitmq)));
        ticks.push(("loadgen".into(), procfs::cpu_ticks(loadgen)));
        ticks.push(("samplers".into(), procfs::cpu_ticks(std::process::id())));
        let pm = self.s.pids.postgres;
        let (mut all, mut bench) = (0, 0);
        if let Some(s) = procfs::stat(pm) {
            all = s.utime + s.stime + s.cutime + s.cstime;
        }
        let title = format!(" {}", self.s.db_prefix);
        for child in procfs::children(pm) {
            let Some(s) = procfs::stat(child) else {
                continue;
            };
            all += s.utime + s.stime;
            if procfs::cmdline(child).contains(&title) {
                bench += s.utime + s.stime;
            }
        }
        ticks.push(("postgres_all".into(), all));
        ticks.push(("postgres_bench".into(), bench));
        let machine = procfs::machine().unwrap_or_default();
        ticks.push(("machine_busy".into(), machine.busy));
        ticks
    }

    async fn phase(&mut self, phase: &plan::Phase, rate: u64) -> Result<PhaseOutcome, Error> {
        let s = self.s.clone();
        let name = phase.name;
        let marker = |what: &str| s.out.join(format!("{name}.{what}"));
        for what in ["started", "ended"] {
            let _ = std::fs::remove_file(marker(what));
        }
        let mut args: Vec<String> = vec![
            "--orchestrator".into(),
            s.orchestrator.clone(),
            "--payment".into(),
            s.payment.clone(),
            "--inventory".into(),
            s.inventory.clone(),
            "--amqp".into(),
            s.amqp.clone(),
            "--out".into(),
            s.out.display().to_string(),
            "--run-id".into(),
            format!("{}-{name}", s.run_id),
            "--label".into(),
            name.into(),
        ];
        let population = (s.plan.customers, s.plan.broke_customers);
        args.extend(phase.args(rate, population, &s.extra));
        // The fleet prunes finished payments after `history`: check those of orders well within
        // it (a 600 s phase under a 10-minute history would otherwise sample pruned ones).
        let within = s.retention.history.as_secs() / 2;
        args.extend(["--payment-checks-within".into(), within.to_string()]);
        // The soak keeps no orders to place around the rollovers (its loadgen refuses --marks).
        if s.broker_dir.is_some() && phase.window_s.is_none() {
            let marks = s.out.join(format!("rollovers-{name}.txt"));
            args.extend(["--marks".into(), marks.display().to_string()]);
        }
        eprintln!("bench: phase {name}: loadgen {}", args[14..].join(" "));
        append(
            &s.out.join("machine.txt"),
            &format!("load average before {name}: {}\n", procfs::load_average()),
        );
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command.args(&args).stdout(Stdio::piped());
        // In the environment, where loadgen looks by default: a command line is world-readable.
        if let Some(token) = &s.operator_token {
            command.env(crate::auth::OPERATOR_TOKEN_ENV, token.expose_secret());
        }
        if let Some(secret) = &s.jwt_secret {
            command.env(crate::auth::JWT_SECRET_ENV, secret.expose_secret());
        }
        let mut child = command.spawn()?;
        let loadgen = child.id();
        let tee = child.stdout.take().map(|out| {
            let file = s.out.join(format!("{name}.txt"));
            std::thread::spawn(move || tee(out, &file))
        });
        self.cx.processes.named = s.pids.services.clone();
        self.cx.processes.named.extend([
            ("rabbitmq".into(), s.pids.rabbitmq),
            ("loadgen".into(), loadgen),
        ]);
        let running = samplers::start(&self.cx, name);

        let started = wait_for(&marker("started"), &mut child).await;
        let (sizes_stop, sizes_stopped) = tokio::sync::watch::channel(false);
        let sizes = phase.window_s.filter(|_| started).map(|window_s| {
            let file = s.out.join(format!("sizes-{name}.tsv"));
            let every = soak::sizes_every(window_s);
            let databases = self.cx.outboxes.clone();
            tokio::spawn(soak::sample_sizes(databases, every, file, sizes_stopped))
        });
        let profile = (s.profile && matches!(name, "peak" | "open80") && started).then(|| {
            let out = s.out.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                extras::profile(&out, name).await
            })
        });
        let ended_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stall = match (&s.stall, name, started) {
            (Some(stall), "open80", true) => {
                let pid = s
                    .pids
                    .services
                    .iter()
                    .find(|(n, _)| *n == stall.service)
                    .map_or(0, |p| p.1);
                let (api, service, ended) =
                    (self.api.clone(), stall.service.clone(), ended_flag.clone());
                let (at, hold) = (
                    Duration::from_secs(stall.at_s),
                    Duration::from_secs(stall.for_s),
                );
                Some(tokio::spawn(async move {
                    let plan = extras::StallPlan {
                        service: &service,
                        pid,
                        at,
                        hold,
                    };
                    extras::stall(plan, &api, || {
                        !ended.load(std::sync::atomic::Ordering::Relaxed)
                    })
                    .await
                }))
            }
            _ => None,
        };
        let statements_before = self.statements_snapshot().await;
        let counters_before = self.counters().await;
        let ctxt_before = procfs::machine().map(|m| m.ctxt);
        let cpu_before = self.cpu_ticks(loadgen);
        let t0 = epoch_now();
        wait_for(&marker("ended"), &mut child).await;
        let cpu_after = self.cpu_ticks(loadgen);
        let t1 = epoch_now();
        ended_flag.store(true, std::sync::atomic::Ordering::Relaxed);
        let ctxt_after = procfs::machine().map(|m| m.ctxt);
        let counters_after = self.counters().await;
        let statements_after = self.statements_snapshot().await;
        let samples = running.stop().await;
        let _ = sizes_stop.send(true);
        let table_sizes = match sizes {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let mut notes = Vec::new();
        if let Some(stall) = stall {
            let text = stall.await.unwrap_or_default();
            eprint!("{text}");
            std::fs::write(self.s.out.join("stall.txt"), text)?;
        }
        if let Some(profile) = profile {
            notes.push(profile.await.unwrap_or_default());
        }
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        if let Some(tee) = tee {
            let _ = tokio::task::spawn_blocking(move || tee.join()).await;
        }
        if !status.success() {
            eprintln!("bench: phase {name}: loadgen reported a failure ({status})");
        }
        let probe_after = extras::cpu_probe();
        let brief: Option<Brief> = std::fs::read(self.s.out.join(format!("{name}.result.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let wall = (t1 - t0).max(1e-3);
        let cpu = cpu_before
            .iter()
            .zip(&cpu_after)
            .map(|((n, a), (_, b))| (n.clone(), b.saturating_sub(*a) as f64 / self.clk_tck / wall))
            .collect();
        let finished = brief.as_ref().map_or(0.0, |b| b.summary.finished_per_s) * wall;
        let per = |a: Option<i64>, b: Option<i64>| {
            a.zip(b)
                .filter(|_| finished > 0.0)
                .map(|(a, b)| (b - a) as f64 / finished)
        };
        let wal = match (
            &counters_before.wal_lsn,
            &counters_after.wal_lsn,
            self.admin.as_mut(),
        ) {
            (Some(a), Some(b), Some(conn)) => db::wal_bytes(conn, a, b).await,
            _ => None,
        };
        append(
            &self.s.out.join(format!("wal-{name}.lsn")),
            &format!(
                "{} {}\n",
                counters_before.wal_lsn.unwrap_or_default(),
                counters_after.wal_lsn.unwrap_or_default()
            ),
        );
        let per_saga = [
            per(Some(0), wal).map(|b| b / 1024.0),
            per(counters_before.wal_syncs, counters_after.wal_syncs),
            per(counters_before.xacts, counters_after.xacts),
            per(ctxt_before.map(|c| c as i64), ctxt_after.map(|c| c as i64)),
        ];
        let queues_end = self.api.queues().await;
        let mut outbox_end = Vec::new();
        for (service, url) in &self.cx.outboxes {
            let count = match db::connect(url).await {
                Some(mut conn) => db::unpublished(&mut conn).await,
                None => None,
            };
            outbox_end.push((service.clone(), count));
        }
        let statements = statements_before
            .zip(statements_after)
            .filter(|_| finished > 0.0)
            .map(|(before, after)| db::statements_table(&before, &after, finished));
        if let Some(table) = &statements {
            std::fs::write(self.s.out.join(format!("statements-{name}.tsv")), table)?;
        }
        append(
            &self.s.out.join("machine.txt"),
            &format!("load average after {name}: {}\n", procfs::load_average()),
        );
        let outcome = PhaseOutcome {
            name: name.into(),
            brief,
            window: (t0, t1),
            cpu,
            per_saga,
            probe_after,
            samples,
            outbox_end,
            queues_end,
            statements,
            open_loop: phase.load == plan::PhaseLoad::Open,
            keeps_orders: phase.window_s.is_none(),
            table_sizes,
            notes,
        };
        Ok(outcome)
    }

    async fn counters(&mut self) -> db::Counters {
        match self.admin.as_mut() {
            Some(conn) => db::counters(conn, &self.s.db_prefix).await,
            None => db::Counters::default(),
        }
    }

    async fn statements_snapshot(
        &mut self,
    ) -> Option<std::collections::HashMap<i64, db::Statement>> {
        match (self.statements, self.admin.as_mut()) {
            (true, Some(conn)) => Some(db::statements(conn, &self.s.db_prefix).await),
            _ => None,
        }
    }
}

/// Waits until `marker` exists or the child exits; whether the marker came.
async fn wait_for(marker: &Path, child: &mut std::process::Child) -> bool {
    loop {
        if marker.exists() {
            return true;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return marker.exists();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Copies the child's report to `file` and to this process's stdout, line by line.
fn tee(out: std::process::ChildStdout, file: &Path) {
    use std::io::{BufRead, Write};
    let mut text = String::new();
    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
        text.push_str(&line);
        text.push('\n');
    }
    append(file, &text);
}
