//! What every scenario shares: a slot (scenarios run one at a time by default: each starts its
//! own PostgreSQL, RabbitMQ and three to six services, which is all two cores can run without the
//! faults' timing turning into the machine's), a fleet, a stream, and a record of how long each
//! phase took (printed with `--nocapture`).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::harness::Watchdog;
use crate::harness::fleet::{Fleet, FleetOptions};
use crate::invariants::{self, Expectations, Report};
use crate::stream::{Catalog, Ledger, OrderStream, StreamPlan};

/// Waits for a turn to run: what a test that does not use [`Scenario`] must hold meanwhile.
pub async fn slot() -> SemaphorePermit<'static> {
    slots()
        .acquire()
        .await
        .expect("the slot semaphore is never closed")
}

fn slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let parallel = std::env::var("FAULTS_PARALLEL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1usize)
            .max(1);
        Semaphore::new(parallel)
    })
}

/// How long one scenario may run before its [`Watchdog`] steps in: several times what the
/// slowest takes on a loaded 2-core machine (about 40 s).
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);

/// A running scenario. Fields drop in order: the fleet (every process, then the directory) is
/// gone before the watchdog is disarmed and the slot handed to the next scenario.
pub struct Scenario {
    pub fleet: Fleet,
    name: &'static str,
    started: Instant,
    phases: Vec<(String, Instant)>,
    _watchdog: Watchdog,
    _slot: SemaphorePermit<'static>,
}

impl Scenario {
    /// Waits for a slot, starts the fleet and installs the standard catalog.
    pub async fn begin(name: &'static str, options: FleetOptions) -> Self {
        let slot = slot().await;
        let started = Instant::now();
        let fleet = Fleet::start(options).await;
        let watchdog = Watchdog::arm(name, SCENARIO_LIMIT, fleet.scratch());
        Catalog::standard().install(&fleet.api).await;
        let mut scenario = Self {
            fleet,
            name,
            started,
            phases: Vec::new(),
            _watchdog: watchdog,
            _slot: slot,
        };
        scenario.mark("fleet ready");
        scenario
    }

    /// Starts the order stream on the standard catalog.
    pub fn stream(&mut self, plan: StreamPlan) -> OrderStream {
        self.mark("stream started");
        OrderStream::start(self.fleet.api.clone(), Catalog::standard(), plan)
    }

    /// Notes that a phase ended now.
    pub fn mark(&mut self, phase: &str) {
        self.phases.push((phase.to_owned(), Instant::now()));
    }

    /// Runs the invariant checker, prints the timings and outcomes, and fails on any violation.
    pub async fn check(&mut self, ledger: &Ledger, expect: &Expectations) -> Report {
        self.mark("stream finished");
        let report = invariants::check(&self.fleet, ledger, expect).await;
        self.mark("checked");
        let mut last = self.started;
        let timings: Vec<String> = self
            .phases
            .iter()
            .map(|(phase, at)| {
                let took = at.duration_since(last);
                last = *at;
                format!("{phase} +{:.1}s", took.as_secs_f64())
            })
            .collect();
        println!(
            "{}: {} orders accepted, {:?}; {:.1}s in all ({})",
            self.name,
            ledger.accepted.len(),
            report.outcomes,
            self.started.elapsed().as_secs_f64(),
            timings.join(", ")
        );
        report.assert_clean();
        report
    }
}
