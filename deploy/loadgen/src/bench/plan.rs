//! The standard benchmark's phases, in order, and the loadgen arguments of each:
//!   1. warmup:   closed loop, 32 clients (not reported, invariants not checked);
//!   2. peak:     closed loop, `clients`: the most the fleet finishes per second when it always
//!      has work;
//!   3. complete: closed loop, `clients`, every order meant to complete (no declines, nothing
//!      out of stock): the most COMPLETED sagas per second;
//!   4. open80:   open loop at `open_fraction` of the peak's finished sagas/s (or `open_rate`):
//!      the latencies at a sustainable load, and whether queues, outbox or memory grow;
//!   5. overload: open loop at `overload_factor` (2) times the peak's finished sagas/s (or
//!      `overload_rate`) for `overload_s` (60 s): whether admission control keeps the accepted
//!      orders' latency bounded and the completions near the peak (see [`super::overload`]);
//!   6. soak:     the same rate as open80 for `soak_s` (30 minutes by default), its loadgen keeping
//!      aggregates per `soak_window_s` instead of every order: whether throughput, latency and
//!      the tables' sizes stay flat once retention prunes as fast as the load writes.
//!
//! `only` runs a subset (the warm-up still runs, and the peak when an open phase needs its rate).
//!
//! Every phase seeds `customers` (5,000) and `broke_customers` (200): spread over that many,
//! even the overload phase's orders stay far below a customer's rate limit (10/s by default),
//! so what refuses them is admission control, not the limiter.

/// The durations and loads of the phases; a duration of 0 leaves the warm-up or the complete
/// phase out.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSettings {
    pub warmup_s: u64,
    pub peak_s: u64,
    pub complete_s: u64,
    pub steady_s: u64,
    pub clients: usize,
    pub open_fraction: f64,
    /// A fixed open-loop rate instead of a share of the peak: to compare two settings at the
    /// same load, where their peaks (and so their 80 %) differ.
    pub open_rate: Option<u64>,
    /// 0 leaves the overload phase out.
    pub overload_s: u64,
    pub overload_factor: f64,
    /// A fixed overload rate instead of a multiple of the peak.
    pub overload_rate: Option<u64>,
    /// The population of every phase (`--customers`, `--broke-customers` of loadgen).
    pub customers: usize,
    pub broke_customers: usize,
    /// 0 leaves the soak out.
    pub soak_s: u64,
    pub soak_window_s: u64,
    /// The reported phases to run (`--phases`); `None`: all.
    pub only: Option<Vec<String>>,
}

/// The reported phases, in the order they run.
pub const REPORTED: [&str; 5] = ["peak", "complete", "open80", "overload", "soak"];

impl Default for PlanSettings {
    fn default() -> Self {
        Self {
            warmup_s: 10,
            peak_s: 60,
            complete_s: 60,
            steady_s: 600,
            clients: 128,
            open_fraction: 0.8,
            open_rate: None,
            overload_s: 60,
            overload_factor: 2.0,
            overload_rate: None,
            customers: 5000,
            broke_customers: 200,
            soak_s: 1800,
            soak_window_s: 300,
            only: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PhaseLoad {
    Closed(usize),
    /// Open loop at the rate [`open_rate`] gives once the peak is known.
    Open,
    /// Open loop at the rate [`overload_rate`] gives.
    Overload,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: &'static str,
    pub load: PhaseLoad,
    pub seconds: u64,
    /// Only orders meant to complete; the phase sets the mix itself, so the extra loadgen
    /// arguments (which may set it too: loadgen takes each option once) are not given.
    pub all_complete: bool,
    /// In the summary (the warm-up is not).
    pub reported: bool,
    /// Aggregates per window of this many seconds instead of every order (the soak).
    pub window_s: Option<u64>,
}

pub fn phases(p: &PlanSettings) -> Vec<Phase> {
    let phase = |name, load, seconds, all_complete, reported| Phase {
        name,
        load,
        seconds,
        all_complete,
        reported,
        window_s: None,
    };
    let chosen = |name: &str| {
        p.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == name))
    };
    let open = (chosen("open80") || (chosen("soak") && p.soak_s > 0)) && p.open_rate.is_none();
    let overload = p.overload_s > 0 && chosen("overload");
    let open = open || (overload && p.overload_rate.is_none());
    let mut plan = Vec::new();
    if p.warmup_s > 0 {
        plan.push(phase(
            "warmup",
            PhaseLoad::Closed(32),
            p.warmup_s,
            false,
            false,
        ));
    }
    if chosen("peak") || open {
        plan.push(phase(
            "peak",
            PhaseLoad::Closed(p.clients),
            p.peak_s,
            false,
            true,
        ));
    }
    if p.complete_s > 0 && chosen("complete") {
        let load = PhaseLoad::Closed(p.clients);
        plan.push(phase("complete", load, p.complete_s, true, true));
    }
    if chosen("open80") {
        plan.push(phase("open80", PhaseLoad::Open, p.steady_s, false, true));
    }
    if overload {
        let load = PhaseLoad::Overload;
        plan.push(phase("overload", load, p.overload_s, false, true));
    }
    if p.soak_s > 0 && chosen("soak") {
        plan.push(Phase {
            window_s: Some(p.soak_window_s),
            ..phase("soak", PhaseLoad::Open, p.soak_s, false, true)
        });
    }
    plan
}

/// The overload phase's orders per second: the fixed rate, or the factor times the peak's
/// finished sagas per second, at least 1.
pub fn overload_rate(p: &PlanSettings, peak_finished_per_s: f64) -> u64 {
    p.overload_rate
        .unwrap_or_else(|| (peak_finished_per_s * p.overload_factor).round().max(1.0) as u64)
}

/// The open80 phase's orders per second: the fixed rate, or the share of the peak's finished
/// sagas per second, at least 1.
pub fn open_rate(p: &PlanSettings, peak_finished_per_s: f64) -> u64 {
    p.open_rate
        .unwrap_or_else(|| (peak_finished_per_s * p.open_fraction).round().max(1.0) as u64)
}

impl Phase {
    /// The phase's own loadgen arguments; `rate` is used by the open-loop phases only;
    /// `population` is (customers, broke customers), given before `extra`, which may change it.
    pub fn args(&self, rate: u64, population: (usize, usize), extra: &[String]) -> Vec<String> {
        let mut args: Vec<String> = match self.load {
            PhaseLoad::Closed(clients) => vec!["--closed".into(), clients.to_string()],
            PhaseLoad::Open | PhaseLoad::Overload => vec!["--rate".into(), rate.to_string()],
        };
        args.extend(["--duration".into(), self.seconds.to_string()]);
        args.extend([
            "--customers".into(),
            population.0.to_string(),
            "--broke-customers".into(),
            population.1.to_string(),
        ]);
        if !self.reported {
            args.push("--skip-checks".into());
        }
        if let Some(window) = self.window_s {
            args.extend(["--window".into(), window.to_string()]);
        }
        if self.all_complete {
            args.extend(["--declined", "0", "--out-of-stock", "0"].map(String::from));
        } else {
            args.extend(extra.iter().cloned());
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_plan_is_warmup_peak_complete_open80_overload_soak() {
        let plan = phases(&PlanSettings::default());
        let names: Vec<_> = plan.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            ["warmup", "peak", "complete", "open80", "overload", "soak"]
        );
        assert!(!plan[0].reported && plan[1..].iter().all(|p| p.reported));
        assert_eq!(plan[3].seconds, 600);
        assert_eq!((plan[4].load, plan[4].seconds), (PhaseLoad::Overload, 60));
        assert_eq!((plan[5].seconds, plan[5].window_s), (1800, Some(300)));
    }

    #[test]
    fn a_zero_duration_leaves_the_complete_phase_out() {
        let settings = PlanSettings {
            complete_s: 0,
            overload_s: 0,
            soak_s: 0,
            ..PlanSettings::default()
        };
        let names: Vec<_> = phases(&settings).iter().map(|p| p.name).collect();
        assert_eq!(names, ["warmup", "peak", "open80"]);
    }

    #[test]
    fn a_subset_of_phases_runs_with_the_peak_only_when_an_open_phase_needs_it() {
        let names = |only: &[&str], open_rate| {
            let settings = PlanSettings {
                only: Some(only.iter().map(|s| s.to_string()).collect()),
                open_rate,
                ..PlanSettings::default()
            };
            phases(&settings).iter().map(|p| p.name).collect::<Vec<_>>()
        };
        assert_eq!(names(&["complete"], None), ["warmup", "complete"]);
        assert_eq!(names(&["soak"], None), ["warmup", "peak", "soak"]);
        assert_eq!(names(&["soak"], Some(800)), ["warmup", "soak"]);
        assert_eq!(names(&["overload"], None), ["warmup", "peak", "overload"]);
    }

    #[test]
    fn overload_runs_at_twice_the_peak_or_the_fixed_rate() {
        let mut settings = PlanSettings::default();
        assert_eq!(overload_rate(&settings, 1180.4), 2361);
        assert_eq!(overload_rate(&settings, 0.1), 1);
        settings.overload_rate = Some(3000);
        assert_eq!(overload_rate(&settings, 1180.4), 3000);
        let only = PlanSettings {
            only: Some(vec!["overload".into()]),
            overload_rate: Some(3000),
            ..PlanSettings::default()
        };
        let names: Vec<_> = phases(&only).iter().map(|p| p.name).collect();
        assert_eq!(names, ["warmup", "overload"]);
    }

    #[test]
    fn open80_runs_at_the_share_of_the_peak_or_the_fixed_rate() {
        let mut settings = PlanSettings::default();
        assert_eq!(open_rate(&settings, 1459.4), 1168);
        assert_eq!(open_rate(&settings, 0.2), 1);
        settings.open_rate = Some(900);
        assert_eq!(open_rate(&settings, 1459.4), 900);
    }

    #[test]
    fn each_phase_gets_its_loadgen_arguments() {
        let plan = phases(&PlanSettings::default());
        let extra = vec!["--declined".to_string(), "0.2".to_string()];
        let joined = |p: &Phase| p.args(1168, (5000, 200), &extra).join(" ");
        let pop = "--customers 5000 --broke-customers 200";
        assert_eq!(
            joined(&plan[0]),
            format!("--closed 32 --duration 10 {pop} --skip-checks --declined 0.2")
        );
        assert_eq!(
            joined(&plan[2]),
            format!("--closed 128 --duration 60 {pop} --declined 0 --out-of-stock 0")
        );
        assert_eq!(
            joined(&plan[3]),
            format!("--rate 1168 --duration 600 {pop} --declined 0.2")
        );
        assert_eq!(
            joined(&plan[4]),
            format!("--rate 1168 --duration 60 {pop} --declined 0.2")
        );
        assert_eq!(
            joined(&plan[5]),
            format!("--rate 1168 --duration 1800 {pop} --window 300 --declined 0.2")
        );
    }
}
