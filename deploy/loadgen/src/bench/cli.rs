//! `loadgen bench` arguments: where the fleet and its processes are, the phase plan and the
//! diagnostic extras. Everything after `--` goes to every phase's loadgen but complete's.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::plan::{PlanSettings, REPORTED};
use super::soak::Retention;
use crate::cli::{amqp_url, fraction, number, url};

pub const USAGE: &str = "\
usage: loadgen bench --amqp URL --pids NAME=PID,... [options] [-- LOADGEN-ARGS]

Runs the standard benchmark against a fleet that is up (deploy/bench.sh starts it), each
phase a loadgen run with its own seeded population and the invariants checked at its end:
  warmup    closed loop, 32 clients (not reported)
  peak      closed loop, --clients: the most the fleet finishes when it always has work
  complete  the same, every order meant to complete: the most COMPLETED sagas/s
  open80    open loop at --open-fraction of peak's finished sagas/s: the latencies at a
            sustainable load, and whether queues, outbox or memory grow
  overload  open loop at --overload-factor (2) times peak's finished sagas/s for 60 s:
            admission control's targets, checked in the summary: accepted orders'
            end-to-end p99 <= 2 s, COMPLETED/s >= 90 % of peak's, every refusal a 503 (or
            429) with Retry-After and no other error, every accepted order ended, and every
            saga ended after the phase (waited for, at most 120 s)
  soak      the same rate for --soak-duration, aggregated per --soak-window: whether
            throughput, latency and the tables' sizes level off under retention
While each load runs it samples the CPU time and memory of the given processes, the queues,
the outbox backlog, disk flushes and pressure stalls (in the soak also every table's size, each
minute); it writes the summary (summary.txt), samples and charts into --out, and exits 1 when
a phase's invariants do not hold.

Fleet:
  --orchestrator URL, --payment URL, --inventory URL   as for loadgen (defaults 3000-3002)
  --amqp URL             the fleet's broker and vhost (credentials also for --rabbitmq-api)
  --rabbitmq-api URL     its management API (default http://127.0.0.1:15672)
  --pg URL               the database server (default postgres://postgres:postgres@127.0.0.1:5432/postgres)
  --db-prefix P          the fleet's databases are P<service> (default saga_bench_)
  --pids LIST            orchestrator=PID,payment=PID,inventory=PID,notification=PID,
                         rabbitmq=PID,postgres=PID
  --broker-dir DIR       the broker's data directory: its write-ahead-log rollovers are marked
Phases (seconds; 0 leaves the warm-up or the complete phase out):
  --warmup S (10)  --duration S (60)  --complete-duration S (60)  --steady-duration S (600)
  --clients N (128)  --open-fraction F (0.8)  --open-rate R (instead of the fraction)
  --overload-duration S (60; 0 leaves it out)  --overload-factor F (2)
  --overload-rate R      orders/s of the overload phase (instead of the factor)
  --soak-duration S (1800; 0 leaves it out)  --soak-window S (300)
  --phases LIST          only these of peak,complete,open80,overload,soak (the warm-up still
                         runs, and the peak when an open or the overload phase needs its rate)
  --customers N (5000)  --broke-customers N (200)   each phase's population: spread over
                         thousands of customers, per-customer rate limits never bite
Credentials (passed to each phase's loadgen in its environment, never on its command line):
  --operator-token T     default $APP__AUTH__OPERATOR_TOKEN, else $APP__ADMIN__TOKEN
  --jwt-secret S         default $APP__AUTH__JWT_SECRET
Retention the fleet runs with (for the soak's bytes per saga; the fleet's defaults if not
given; humantime, e.g. 5m, 7d):
  --inbox-window D (7d)  --published-outbox D (10m)  --history D (30d)
Extras:
  --calibrate            15 s of pgbench (3-insert transactions, 16 connections) first
  --profile              perf record, 20 s of peak and of open80, 10 s after each starts
  --stall SVC:AT:FOR     freeze SVC (SIGSTOP) AT s into open80 for FOR s; time the recovery
  --note TEXT            a line for machine.txt and the summary (repeatable)
Output:
  --out DIR  --run-id ID
";

/// The processes whose CPU and memory are accounted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pids {
    /// orchestrator, payment, inventory, notification, in that order.
    pub services: Vec<(String, u32)>,
    pub rabbitmq: u32,
    /// The postmaster: its children are the backends.
    pub postgres: u32,
}

pub const SERVICES: [&str; 4] = ["orchestrator", "payment", "inventory", "notification"];

/// The services with a message outbox (the notification service publishes nothing).
pub const WITH_OUTBOX: [&str; 3] = ["orchestrator", "payment", "inventory"];

#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    pub service: String,
    pub at_s: u64,
    pub for_s: u64,
}

#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub orchestrator: String,
    pub payment: String,
    pub inventory: String,
    pub amqp: String,
    pub rabbitmq_api: String,
    pub pg: String,
    pub db_prefix: String,
    pub pids: Pids,
    pub broker_dir: Option<PathBuf>,
    pub plan: PlanSettings,
    pub retention: Retention,
    pub calibrate: bool,
    pub profile: bool,
    pub stall: Option<Stall>,
    pub notes: Vec<String>,
    pub out: PathBuf,
    pub run_id: String,
    pub extra: Vec<String>,
    /// Given to each phase's loadgen in its environment (a command line is world-readable).
    pub operator_token: Option<SecretString>,
    pub jwt_secret: Option<SecretString>,
}

pub fn parse(args: &[String]) -> Result<BenchSettings, String> {
    let run_id = format!("b{}", chrono::Utc::now().timestamp());
    let mut s = BenchSettings {
        orchestrator: "http://127.0.0.1:3000".into(),
        payment: "http://127.0.0.1:3001".into(),
        inventory: "http://127.0.0.1:3002".into(),
        amqp: String::new(),
        rabbitmq_api: "http://127.0.0.1:15672".into(),
        pg: "postgres://postgres:postgres@127.0.0.1:5432/postgres".into(),
        db_prefix: "saga_bench_".into(),
        pids: Pids::default(),
        broker_dir: None,
        plan: PlanSettings::default(),
        retention: Retention::default(),
        calibrate: false,
        profile: false,
        stall: None,
        notes: Vec::new(),
        out: PathBuf::new(),
        run_id,
        extra: Vec::new(),
        operator_token: None,
        jwt_secret: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--" => {
                s.extra = it.by_ref().cloned().collect();
                break;
            }
            "--orchestrator" => s.orchestrator = url(value()?),
            "--payment" => s.payment = url(value()?),
            "--inventory" => s.inventory = url(value()?),
            "--amqp" => s.amqp = amqp_url(value()?)?,
            "--rabbitmq-api" => s.rabbitmq_api = url(value()?),
            "--pg" => s.pg = value()?.to_string(),
            "--db-prefix" => s.db_prefix = value()?.to_string(),
            "--pids" => s.pids = pids(value()?)?,
            "--broker-dir" => s.broker_dir = Some(PathBuf::from(value()?)),
            "--warmup" => s.plan.warmup_s = number(flag, value()?)?,
            "--duration" => s.plan.peak_s = number(flag, value()?)?,
            "--complete-duration" => s.plan.complete_s = number(flag, value()?)?,
            "--steady-duration" => s.plan.steady_s = number(flag, value()?)?,
            "--clients" => s.plan.clients = number(flag, value()?)?,
            "--open-fraction" => s.plan.open_fraction = fraction(flag, value()?)?,
            "--open-rate" => s.plan.open_rate = Some(number(flag, value()?)?),
            "--soak-duration" => s.plan.soak_s = number(flag, value()?)?,
            "--overload-duration" => s.plan.overload_s = number(flag, value()?)?,
            "--overload-factor" => {
                let factor: f64 = number(flag, value()?)?;
                if !(factor > 0.0 && factor.is_finite()) {
                    return Err("--overload-factor must be a positive number".into());
                }
                s.plan.overload_factor = factor;
            }
            "--overload-rate" => s.plan.overload_rate = Some(number(flag, value()?)?),
            "--customers" => s.plan.customers = number(flag, value()?)?,
            "--broke-customers" => s.plan.broke_customers = number(flag, value()?)?,
            "--operator-token" => s.operator_token = Some(SecretString::from(value()?)),
            "--jwt-secret" => s.jwt_secret = Some(SecretString::from(value()?)),
            "--soak-window" => s.plan.soak_window_s = number(flag, value()?)?,
            "--phases" => s.plan.only = Some(phases(value()?)?),
            "--inbox-window" => s.retention.inbox_window = duration(flag, value()?)?,
            "--published-outbox" => s.retention.published_outbox = duration(flag, value()?)?,
            "--history" => s.retention.history = duration(flag, value()?)?,
            "--calibrate" => s.calibrate = true,
            "--profile" => s.profile = true,
            "--stall" => s.stall = Some(stall(value()?)?),
            "--note" => s.notes.push(value()?.to_string()),
            "--out" => s.out = PathBuf::from(value()?),
            "--run-id" => s.run_id = value()?.to_string(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if s.amqp.is_empty() || s.pids.services.is_empty() || s.out.as_os_str().is_empty() {
        return Err("--amqp, --pids and --out are required".into());
    }
    if s.plan.peak_s == 0 || s.plan.steady_s == 0 || s.plan.clients == 0 {
        return Err("--duration, --steady-duration and --clients must be at least 1".into());
    }
    if s.plan.soak_window_s == 0 {
        return Err("--soak-window must be at least 1".into());
    }
    if s.plan.open_rate == Some(0) || s.plan.overload_rate == Some(0) {
        return Err("--open-rate and --overload-rate must be at least 1".into());
    }
    if s.plan.customers == 0 {
        return Err("--customers must be at least 1".into());
    }
    if let Some(stall) = &s.stall
        && stall.at_s + stall.for_s >= s.plan.steady_s
    {
        return Err(format!(
            "--stall: AT + FOR ({} + {} s) must end inside the open80 phase ({} s)",
            stall.at_s, stall.for_s, s.plan.steady_s
        ));
    }
    Ok(s)
}

fn phases(list: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
    match names.iter().find(|n| !REPORTED.contains(&n.as_str())) {
        Some(bad) => Err(format!("--phases: {bad:?} is not one of {REPORTED:?}")),
        None => Ok(names),
    }
}

fn duration(flag: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{flag}: {value:?} is not a duration such as 5m or 7d: {e}"))
}

fn pids(list: &str) -> Result<Pids, String> {
    let mut pids = Pids::default();
    let mut services = std::collections::BTreeMap::new();
    for pair in list.split(',') {
        let (name, pid) = pair
            .split_once('=')
            .ok_or_else(|| format!("--pids: {pair:?} is not NAME=PID"))?;
        let pid: u32 = number("--pids", pid)?;
        match name {
            "rabbitmq" => pids.rabbitmq = pid,
            "postgres" => pids.postgres = pid,
            service if SERVICES.contains(&service) => {
                services.insert(service, pid);
            }
            other => return Err(format!("--pids: unknown process {other:?}")),
        }
    }
    for name in SERVICES {
        let pid = services
            .get(name)
            .ok_or_else(|| format!("--pids: {name} is missing"))?;
        pids.services.push((name.to_string(), *pid));
    }
    if pids.rabbitmq == 0 || pids.postgres == 0 {
        return Err("--pids: rabbitmq and postgres are needed".into());
    }
    Ok(pids)
}

fn stall(value: &str) -> Result<Stall, String> {
    let bad = || format!("--stall must be SERVICE:AT:FOR (whole seconds), not {value:?}");
    let mut parts = value.split(':');
    let (Some(service), Some(at), Some(for_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !SERVICES.contains(&service) {
        return Err(format!("--stall: {service:?} is not one of {SERVICES:?}"));
    }
    Ok(Stall {
        service: service.to_string(),
        at_s: at.parse().map_err(|_| bad())?,
        for_s: for_.parse().map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    const BASE: &str = "--amqp amqp://guest:guest@127.0.0.1:5673/saga-bench --out /tmp/b \
        --pids orchestrator=10,payment=11,inventory=12,notification=13,rabbitmq=20,postgres=30";

    #[test]
    fn the_fleet_and_the_plan_are_parsed_and_the_rest_goes_to_loadgen() {
        let s = parse(&args(&format!(
            "{BASE} --duration 20 --complete-duration 0 -- --declined 0.2"
        )))
        .unwrap();
        assert_eq!(s.pids.services[1], ("payment".to_string(), 11));
        assert_eq!((s.pids.rabbitmq, s.pids.postgres), (20, 30));
        assert_eq!((s.plan.peak_s, s.plan.complete_s), (20, 0));
        assert_eq!(s.extra, ["--declined", "0.2"]);
    }

    #[test]
    fn the_soak_its_phases_and_the_retention_are_parsed() {
        let s = parse(&args(&format!(
            "{BASE} --soak-duration 120 --soak-window 30 --phases open80,soak \
             --inbox-window 5m --history 10m"
        )))
        .unwrap();
        assert_eq!((s.plan.soak_s, s.plan.soak_window_s), (120, 30));
        assert_eq!(s.plan.only, Some(vec!["open80".into(), "soak".into()]));
        assert_eq!(s.retention.inbox_window, Duration::from_secs(300));
        assert_eq!(s.retention.published_outbox, Duration::from_secs(600));
        assert!(parse(&args(&format!("{BASE} --phases peak,warmup"))).is_err());
        assert!(parse(&args(&format!("{BASE} --history 10 minutes"))).is_err());
    }

    #[test]
    fn the_overload_phase_and_the_population_are_parsed() {
        let s = parse(&args(&format!(
            "{BASE} --phases overload --overload-duration 30 --overload-factor 1.5 \
             --customers 800 --broke-customers 20 --jwt-secret k3y-s3cret"
        )))
        .unwrap();
        assert_eq!(s.plan.only, Some(vec!["overload".into()]));
        assert_eq!((s.plan.overload_s, s.plan.overload_factor), (30, 1.5));
        assert_eq!((s.plan.customers, s.plan.broke_customers), (800, 20));
        assert!(s.jwt_secret.is_some() && s.operator_token.is_none());
        assert!(!format!("{s:?}").contains("k3y-s3cret"));
        assert!(parse(&args(&format!("{BASE} --overload-rate 0"))).is_err());
        assert!(parse(&args(&format!("{BASE} --overload-factor -1"))).is_err());
    }

    #[test]
    fn a_missing_service_pid_is_refused() {
        let e = parse(&args(
            "--amqp amqp://g:g@h:1/v --out x --pids orchestrator=1,payment=2,rabbitmq=3,postgres=4",
        ))
        .unwrap_err();
        assert!(e.contains("inventory"), "{e}");
    }

    #[test]
    fn a_stall_must_end_inside_the_open80_phase() {
        let s = parse(&args(&format!("{BASE} --stall payment:60:15"))).unwrap();
        assert_eq!(
            s.stall,
            Some(Stall {
                service: "payment".into(),
                at_s: 60,
                for_s: 15
            })
        );
        assert!(
            parse(&args(&format!(
                "{BASE} --steady-duration 60 --stall payment:50:15"
            )))
            .is_err()
        );
        assert!(parse(&args(&format!("{BASE} --stall broker:1:1"))).is_err());
        assert!(parse(&args(&format!("{BASE} --stall payment:1"))).is_err());
    }
}
