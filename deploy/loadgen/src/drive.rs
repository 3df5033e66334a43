//! Seeding, the load drivers and order tracking, all over the services' public HTTP APIs
//! (and, for tracking with `--amqp`, the orchestrator's lifecycle events).
//!
//! Tracking with `--amqp` (what `loadgen bench` does): before the first order is sent, the
//! [`tap`](crate::tap) binds a private queue to the `saga.events` exchange (`order.#`). Each
//! accepted order registers its id as soon as the POST answers and waits for its
//! `order.completed` or `order.failed` event, which gives the status and, for FAILED, the
//! payload's `reason`. An event that arrives before the registration (the saga can finish while
//! the POST's answer is still on its way) is kept and claimed by it. If no event comes within
//! `--track-timeout`, one `GET /api/orders/{id}` records the final status, so a lost event never
//! makes a finished saga look unfinished; such orders are counted (`tracked_by` =
//! `fallback_get`, "by one GET" in the summary). If the tap itself stops (the connection
//! drops), orders in flight and later ones fall back to polling. The fleet then serves no
//! tracking reads at all: the events are published by the outbox anyway, and the only added
//! broker work is one more queue bound to them, consumed without acks.
//!
//! End-to-end latency is the terminal time minus the moment the POST was due. With events, the
//! terminal time is the envelope's `occurred_at`: the orchestrator stamps it while it builds the
//! terminal transition, which it commits together with the event in its outbox (the arrival at
//! the tap stands in only for an envelope without one). It is therefore comparable with the
//! polled measure below, and leaves out the outbox relay's delay in publishing the event. Both
//! clocks are this machine's, as for polling.
//!
//! Tracking without `--amqp` (polling): each accepted order is polled with `GET /api/orders/{id}`
//! after 20 ms, then with a doubling delay capped at 320 ms, until it is terminal or
//! `--track-timeout` passes. The cap also grows with the number of orders in flight so that the
//! polls of all of them together stay under `--poll-budget` per second: without that, a fleet
//! that falls behind gets more polls the further behind it is (a first run at 99 orders/s collapsed that way: 4,000 orders in flight,
//! about 12,000 polls/s, 3 log lines each, and completions fell to a few per second). The
//! listing (`GET /api/orders?status=...`) was rejected: it is ordered by creation time, so
//! finding newly finished sagas means re-reading every page back to the oldest order still in
//! flight, a cost that grows exactly when the fleet falls behind. Per-order polling costs a
//! bounded number of cheap primary-key reads per order (reported as `polls per order`), and its
//! cadence does not blur the measurement: the end-to-end latency is taken from the order's own
//! `updated_at` (the commit of its terminal transition, same machine clock) minus the moment
//! the POST was due, not from when a poll happened to notice.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::auth::Credentials;
use crate::cli::{Load, Settings};
use crate::mix::{self, Kind, OrderRequest, Population, Rng};
use crate::progress;
use crate::refusal::Refusal;
use crate::report;
use crate::seeding;
use crate::tally::Tally;
use crate::tap::{Tap, Tracker};

/// Requests at once while seeding and checking: enough to be quick, few enough not to queue
/// behind the services' database pools (8 connections each).
pub(crate) const SIDE_CONCURRENCY: usize = 32;
/// Longest wait for one HTTP answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One order as the load generator saw it; the raw rows of the JSON output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Record {
    pub seq: u64,
    pub kind: Kind,
    pub customer_id: String,
    pub total_cents: i64,
    pub lines: Vec<(String, i64)>,
    /// Seconds since the load started at which the POST was due.
    pub sent_s: f64,
    pub accept_ms: Option<f64>,
    pub http_status: Option<u16>,
    /// A 503 or 429: refused, not an error (`error` stays `None`).
    pub refusal: Option<Refusal>,
    pub error: Option<String>,
    pub order_id: Option<Uuid>,
    pub status: Option<String>,
    pub failure_reason: Option<String>,
    pub e2e_ms: Option<f64>,
    /// Status reads of this order: polls, or the one GET after a missing event.
    pub polls: u32,
    /// How the final status was learnt; `None` for an order that was not accepted.
    pub tracked_by: Option<Tracking>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tracking {
    /// Its `order.completed` / `order.failed` event reached the tap (`--amqp`).
    Event,
    /// No event within `--track-timeout`: one `GET /api/orders/{id}` after it.
    FallbackGet,
    /// `GET /api/orders/{id}` polls: no `--amqp`, or the tap had stopped.
    Polled,
}

impl Record {
    pub fn terminal(&self) -> bool {
        matches!(self.status.as_deref(), Some("COMPLETED" | "FAILED"))
    }
}

/// Live counters for the progress line.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// 503 answers (admission control) and 429 answers (rate limits).
    pub(crate) shed: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) in_flight: AtomicUsize,
}

pub(crate) struct Shared {
    pub(crate) http: reqwest::Client,
    pub(crate) settings: Settings,
    pub(crate) population: Population,
    /// The operator's and each customer's `Authorization` header.
    pub(crate) credentials: Credentials,
    pub(crate) start: Instant,
    pub(crate) start_wall: DateTime<Utc>,
    pub(crate) counters: Counters,
    pub(crate) seq: AtomicU64,
    /// With `--amqp`: where each order waits for its lifecycle event.
    pub(crate) tracker: Option<Arc<Tracker>>,
    /// Where each order goes once its outcome is known.
    collector: Mutex<Collector>,
}

/// What the run keeps of its orders: all of them, or aggregates (`--window`, see [`crate::tally`]).
enum Collector {
    Every(Vec<Record>),
    Windows(Box<Tally>),
}

impl Shared {
    fn keep(&self, record: Record) {
        // Only a panic while holding the lock poisons it; the collector is consistent then.
        match &mut *self
            .collector
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Collector::Every(all) => all.push(record),
            Collector::Windows(tally) => tally.add(&record),
        }
    }

    fn take(&self) -> Collector {
        let mut collector = self
            .collector
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *collector, Collector::Every(Vec::new()))
    }
}

pub struct RunOutcome {
    pub invariants_hold: bool,
}

pub async fn run(settings: Settings) -> Result<RunOutcome, Error> {
    let http = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .tcp_nodelay(true)
        // Keep every connection a closed-loop client or the pollers opened; reconnecting per
        // request would measure the kernel, not the fleet.
        .pool_max_idle_per_host(4096)
        .build()?;
    // The tap first: a wrong URL should fail the run before seeding, and it must listen before
    // the first order is sent. Early arrivals are kept as long as a POST answer can take plus
    // the longest tracking, far beyond when their order could still register.
    let tap = match &settings.amqp {
        Some(url) => Some(
            Tap::open(
                url,
                &format!("loadgen-{}", settings.run_id),
                settings.track_timeout + HTTP_TIMEOUT,
            )
            .await?,
        ),
        None => None,
    };
    let population = Population::new(&settings);
    eprintln!(
        "loadgen: run {} seeding {} accounts and {} products",
        settings.run_id,
        population.rich.len() + population.broke.len(),
        population.plentiful.len() + population.scarce.len()
    );
    let customers = population.rich.iter().chain(&population.broke);
    let credentials = Credentials::new(
        settings.operator_token.as_ref(),
        settings.jwt_secret.as_ref(),
        customers.map(String::as_str),
    )?;
    eprintln!("loadgen: credentials: {}", credentials.describe());
    seeding::seed(&http, &settings, &population, &credentials).await?;
    let collector = match settings.window_s {
        None => Collector::Every(Vec::new()),
        Some(window_s) => {
            let ledger =
                crate::invariants::Ledger::new(population.accounts(), population.products());
            let duration_s = settings.duration.as_secs_f64().round() as usize;
            let tally = Tally::new(duration_s, window_s, ledger, settings.payment_checks);
            Collector::Windows(Box::new(tally))
        }
    };

    let shared = Arc::new(Shared {
        http,
        settings: settings.clone(),
        population,
        credentials,
        start: Instant::now(),
        start_wall: Utc::now(),
        counters: Counters::default(),
        seq: AtomicU64::new(0),
        tracker: tap.as_ref().map(|tap| tap.tracker.clone()),
        collector: Mutex::new(collector),
    });
    // Markers for `loadgen bench`, which accounts CPU between them (seeding and checks excluded).
    mark(&settings, "started");
    let progress = (!settings.quiet).then(|| tokio::spawn(progress::progress(shared.clone())));
    match settings.load {
        Load::Closed { clients } => closed_loop(&shared, clients).await,
        Load::Open { rate } => open_loop(&shared, rate).await,
    }
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    mark(&settings, "ended");
    if let Some(tap) = tap {
        let unreadable = tap.unreadable.load(Relaxed);
        if unreadable > 0 {
            eprintln!(
                "loadgen: {unreadable} events on {} could not be read",
                crate::tap::EVENTS_EXCHANGE
            );
        }
        tap.close().await;
    }
    let load_s = shared.start.elapsed().as_secs_f64();
    let dropped = shared.counters.dropped.load(Relaxed);
    let run = |checks| report::Run::new(&settings, shared.start_wall, load_s, dropped, checks);
    let report = match shared.take() {
        Collector::Every(mut records) => {
            records.sort_by_key(|r| r.seq);
            let settled: Vec<_> = records.iter().map(seeding::settled).collect();
            let p = &shared.population;
            let e = crate::invariants::expected(p.accounts(), p.products(), &settled);
            let since_s = settings
                .payment_checks_within_s
                .map_or(0.0, |within| load_s - within);
            let sample = seeding::payment_sample(&records, settings.payment_checks, since_s);
            let checks = check(&shared, e, sample).await?;
            // A mark file that cannot be read costs its profile, not the run that was measured.
            let marks_s = settings.marks.as_ref().and_then(|path| {
                std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| marks_since(&text, shared.start_wall))
                    .map_err(|e| eprintln!("loadgen: --marks {}: {e}; no profile", path.display()))
                    .ok()
            });
            report::build(run(checks), records, marks_s.as_deref())
        }
        Collector::Windows(tally) => {
            let aggregates = report::Aggregates::of(&tally);
            let (ledger, sample) = tally.into_checks();
            let checks = check(&shared, ledger.expected(), sample).await?;
            report::build_from(run(checks), aggregates)
        }
    };
    report::print(&report);
    report::write(&settings, &report)?;
    Ok(RunOutcome {
        invariants_hold: report.invariants_hold,
    })
}

/// The `--marks` file's moments (Unix epoch seconds, one per line, blank lines skipped) as
/// seconds since `start`, the load's start. The orders' times are on the monotonic clock from
/// that start, the marks on the wall clock: they agree unless the wall clock is stepped during
/// the run, which would shift the marks by the step (a profile off by it, nothing else).
fn marks_since(text: &str, start: DateTime<Utc>) -> Result<Vec<f64>, String> {
    let start_s = start.timestamp_micros() as f64 / 1e6;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            line.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .map(|s| s - start_s)
                .ok_or_else(|| format!("line {}: {line:?} is not epoch seconds", i + 1))
        })
        .collect()
}

/// The invariants against what the participants report now (nothing with `--skip-checks`).
async fn check(
    shared: &Shared,
    e: crate::invariants::Expected,
    sample: Vec<seeding::PaymentCheck>,
) -> Result<seeding::Checks, Error> {
    if shared.settings.skip_checks {
        return Ok(seeding::Checks::default());
    }
    eprintln!("loadgen: checking balances, stock and payments");
    seeding::check(
        &shared.http,
        &shared.settings,
        &shared.population,
        &shared.credentials,
        e,
        sample,
    )
    .await
}

/// Writes `<out>/<label>.<what>` (empty). Best effort: a run without an output directory still
/// measures; the JSON write at the end reports the directory problem.
fn mark(settings: &Settings, what: &str) {
    let path = settings.out.join(format!("{}.{what}", settings.label));
    if let Err(e) = std::fs::create_dir_all(&settings.out).and_then(|()| std::fs::write(&path, b""))
    {
        eprintln!("loadgen: cannot write {}: {e}", path.display());
    }
}

async fn closed_loop(shared: &Arc<Shared>, clients: usize) {
    let end = shared.start + shared.settings.duration;
    let mut set = JoinSet::new();
    for client in 0..clients {
        let shared = shared.clone();
        set.spawn(async move {
            let mut rng =
                Rng::new(seed_of(&shared.settings.run_id) ^ (client as u64).wrapping_mul(0x9E37));
            while Instant::now() < end {
                let (kind, order) = draw(&shared, &mut rng);
                let record = crate::order::place(&shared, kind, order, Instant::now()).await;
                // Refused: come back when the fleet said to (bounded, and not past the end).
                let pause = record.refusal.as_ref().map(Refusal::pause);
                shared.keep(record);
                if let Some(pause) = pause {
                    let wake = (Instant::now() + pause).min(end);
                    tokio::time::sleep_until(wake.into()).await;
                }
            }
        });
    }
    while let Some(done) = set.join_next().await {
        reaped(done);
    }
}

async fn open_loop(shared: &Arc<Shared>, rate: f64) {
    let end = shared.start + shared.settings.duration;
    let mut ticks =
        tokio::time::interval_at(shared.start.into(), Duration::from_secs_f64(1.0 / rate));
    // Burst: a late tick is sent at once, so the offered rate stays the one asked for; its
    // latency still counts from the tick's due time.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut rng = Rng::new(seed_of(&shared.settings.run_id));
    let mut set = JoinSet::new();
    loop {
        let due = ticks.tick().await.into_std();
        if due >= end {
            break;
        }
        if shared.counters.in_flight.load(Relaxed) >= shared.settings.max_in_flight {
            shared.counters.dropped.fetch_add(1, Relaxed);
            continue;
        }
        let (kind, order) = draw(shared, &mut rng);
        let shared = shared.clone();
        set.spawn(async move {
            let record = crate::order::place(&shared, kind, order, due).await;
            shared.keep(record);
        });
        // Reap finished tasks as we go so the set does not hold every task until the end.
        while let Some(done) = set.try_join_next() {
            reaped(done);
        }
    }
    while let Some(done) = set.join_next().await {
        reaped(done);
    }
}

/// A panicking order or client task is a bug in this tool; its orders are lost, say so.
fn reaped(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        eprintln!("loadgen: an order task failed: {e}");
    }
}

fn draw(shared: &Shared, rng: &mut Rng) -> (Kind, OrderRequest) {
    let s = &shared.settings;
    mix::next_order(rng, &shared.population, s.declined, s.out_of_stock)
}

fn seed_of(run_id: &str) -> u64 {
    run_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn marks_are_read_as_seconds_since_the_load_started() {
        let start = DateTime::<Utc>::from_timestamp(1_796_487_917, 500_000_000).unwrap();
        let marks = marks_since("1796487930.000\n\n1796487942.5\n", start).unwrap();
        assert_eq!(marks, [12.5, 25.0]);
        let err = marks_since("1796487930\n17964879x\n", start).unwrap_err();
        assert!(err.contains("line 2") && err.contains("17964879x"), "{err}");
    }
}
