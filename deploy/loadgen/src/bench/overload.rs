//! The overload phase's verdict (issue 24, "Admission control"): offered twice the peak for a
//! minute, does the fleet refuse what it cannot do in time rather than accept it and finish it
//! late?
//! - [`verdict`]: the targets, a pure function of the phase's and the peak's results and of
//!   the drain after it (tested below);
//! - [`wait_for_drain`]: after the load, the orchestrator's orders still `PENDING`, read until
//!   none is left or [`DRAIN_LIMIT`] passes.
//!
//! A benchmark, not a test: a miss is reported in the summary (`overload.txt` too); the bench's
//! exit status stays the invariants'.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::db;
use super::summary::PhaseOutcome;
use crate::report::Brief;

/// The accepted orders' end-to-end p99 that admission control must keep.
pub const P99_TARGET_MS: f64 = 2000.0;
/// COMPLETED/s during the overload, as a share of the peak phase's.
pub const COMPLETED_SHARE: f64 = 0.9;
/// The longest wait for the sagas in flight to end after the phase: with a backlog bounded
/// to seconds of work, a healthy fleet needs a few seconds; 2 minutes separates a slow drain
/// from sagas that never end.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// What was left in flight after the phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drain {
    /// Orders still `PENDING` at the end of the wait; `None` when they could not be counted.
    pub pending: Option<i64>,
    pub waited_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub what: &'static str,
    /// `None`: not checked (a figure was missing).
    pub ok: Option<bool>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub offered_per_s: u64,
    pub checks: Vec<Check>,
}

impl Verdict {
    /// No check failed (an unchecked one does not fail the verdict, but shows as such).
    pub fn met(&self) -> bool {
        self.checks.iter().all(|c| c.ok != Some(false))
    }

    pub fn render(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\noverload at {}/s offered: targets {}",
            self.offered_per_s,
            if self.met() { "MET" } else { "MISSED" }
        );
        for c in &self.checks {
            let mark = match c.ok {
                Some(true) => "ok  ",
                Some(false) => "MISS",
                None => "?   ",
            };
            let _ = writeln!(t, "  {mark} {}: {}", c.what, c.detail);
        }
        t
    }
}

/// The overload targets, from the overload phase's result, the peak phase's (for its
/// COMPLETED/s; `None` when it did not run) and the drain after the phase.
pub fn verdict(
    offered_per_s: u64,
    overload: &Brief,
    peak: Option<&Brief>,
    drain: Drain,
) -> Verdict {
    let s = &overload.summary;
    let mut checks = Vec::new();
    let p99 = s.e2e_ms.p99;
    checks.push(Check {
        what: "accepted orders' end-to-end p99 <= 2 s",
        ok: Some(s.accepted > 0 && s.e2e_ms.count > 0 && p99 <= P99_TARGET_MS),
        detail: format!(
            "{p99:.0} ms over {} accepted orders ({} refused)",
            s.accepted,
            s.shed + s.rate_limited
        ),
    });
    let (ok, detail) = match peak {
        Some(peak) => {
            let floor = peak.summary.completed_per_s * COMPLETED_SHARE;
            (
                Some(s.completed_per_s >= floor),
                format!(
                    "{:.1}/s against the peak's {:.1}/s (90 %: {floor:.1}/s)",
                    s.completed_per_s, peak.summary.completed_per_s
                ),
            )
        }
        None => (
            None,
            format!("{:.1}/s; no peak phase to compare", s.completed_per_s),
        ),
    };
    checks.push(Check {
        what: "COMPLETED/s >= 90 % of the peak's",
        ok,
        detail,
    });
    checks.push(Check {
        what: "every refusal a 503 or 429 with Retry-After, no other error",
        ok: Some(s.refusals_malformed == 0 && s.errors == 0),
        detail: format!(
            "{} shed (503), {} rate-limited (429); {} errors, of them {} 503/429 without \
             Retry-After or their error code",
            s.shed, s.rate_limited, s.errors, s.refusals_malformed
        ),
    });
    checks.push(Check {
        what: "the offered load was sent in full",
        ok: Some(s.dropped == 0),
        detail: format!(
            "{} sent, {} skipped at loadgen's --max-in-flight",
            s.sent, s.dropped
        ),
    });
    checks.push(Check {
        what: "no accepted order lost",
        ok: Some(s.unfinished == 0 && overload.invariants_hold),
        detail: format!(
            "{} accepted, {} unfinished when tracking gave up; invariants {}",
            s.accepted,
            s.unfinished,
            if overload.invariants_hold {
                "hold"
            } else {
                "VIOLATED"
            }
        ),
    });
    let (ok, detail) = match drain.pending {
        Some(0) => (
            Some(true),
            format!("none in flight {:.1} s after the phase", drain.waited_s),
        ),
        Some(n) => (
            Some(false),
            format!("{n} still PENDING after {:.0} s", drain.waited_s),
        ),
        None => (None, "the orchestrator's orders could not be read".into()),
    };
    checks.push(Check {
        what: "every saga ended after the phase",
        ok,
        detail,
    });
    Verdict {
        offered_per_s,
        checks,
    }
}

/// After the overload phase: waits for the sagas in flight to end (in the orchestrator's
/// database, among the fleet's `databases`), then judges the phase; `None` without its result.
pub async fn judge(
    databases: &[(String, String)],
    outcome: &PhaseOutcome,
    offered_per_s: u64,
    peak: Option<&Brief>,
) -> Option<Verdict> {
    let Some(brief) = &outcome.brief else {
        eprintln!("bench: the overload phase wrote no result; no verdict");
        return None;
    };
    eprintln!("bench: waiting for every saga to end after the overload phase");
    let drain = match databases.iter().find(|(name, _)| name == "orchestrator") {
        Some((_, url)) => wait_for_drain(url, DRAIN_LIMIT).await,
        None => Drain {
            pending: None,
            waited_s: 0.0,
        },
    };
    let verdict = verdict(offered_per_s, brief, peak, drain);
    eprint!("{}", verdict.render());
    Some(verdict)
}

/// Reads the orchestrator's `PENDING` orders (all runs': a drain is of the fleet, not of one
/// phase) every half second until there are none or `limit` passes.
pub async fn wait_for_drain(orchestrator_db: &str, limit: Duration) -> Drain {
    let start = Instant::now();
    let mut pending = None;
    while let Some(mut conn) = db::connect(orchestrator_db).await {
        pending = db::number(
            &mut conn,
            "SELECT count(*)::bigint FROM orders WHERE status = 'PENDING'",
        )
        .await;
        if pending.is_none_or(|n| n == 0) || start.elapsed() >= limit {
            break;
        }
        drop(conn);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Drain {
        pending,
        waited_s: start.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Summary;
    use crate::stats::Latency;

    fn brief(summary: Summary) -> Brief {
        Brief {
            label: "overload".into(),
            summary,
            invariants_hold: true,
            window_s: 60,
            windows: Vec::new(),
            around_marks: None,
        }
    }

    /// A phase that met every target: 2,400/s offered, 1,150/s completed, the rest shed.
    fn good() -> Summary {
        Summary {
            sent: 144_000,
            accepted: 70_000,
            shed: 74_000,
            completed: 63_000,
            completed_per_s: 1_100.0,
            e2e_ms: Latency {
                count: 70_000,
                p99: 1_400.0,
                ..Latency::default()
            },
            ..Summary::default()
        }
    }

    fn peak() -> Brief {
        brief(Summary {
            completed_per_s: 1_180.0,
            ..Summary::default()
        })
    }

    const DRAINED: Drain = Drain {
        pending: Some(0),
        waited_s: 1.5,
    };

    fn failed(v: &Verdict) -> Vec<&'static str> {
        v.checks
            .iter()
            .filter(|c| c.ok == Some(false))
            .map(|c| c.what)
            .collect()
    }

    #[test]
    fn a_phase_that_sheds_in_time_meets_every_target() {
        let v = verdict(2360, &brief(good()), Some(&peak()), DRAINED);
        assert!(v.met(), "{}", v.render());
        assert!(v.render().contains("targets MET"));
    }

    #[test]
    fn a_slow_tail_or_a_completion_rate_below_90_percent_misses() {
        let mut slow = good();
        slow.e2e_ms.p99 = 2_001.0;
        let v = verdict(2360, &brief(slow), Some(&peak()), DRAINED);
        assert_eq!(failed(&v), ["accepted orders' end-to-end p99 <= 2 s"]);
        let mut few = good();
        few.completed_per_s = 1_000.0; // < 0.9 * 1180 = 1062
        let v = verdict(2360, &brief(few), Some(&peak()), DRAINED);
        assert_eq!(failed(&v), ["COMPLETED/s >= 90 % of the peak's"]);
        assert!(v.render().contains("MISSED"));
    }

    #[test]
    fn a_refusal_without_retry_after_or_any_other_error_misses() {
        let mut bare = good();
        bare.refusals_malformed = 1;
        bare.errors = 1;
        let v = verdict(2360, &brief(bare), Some(&peak()), DRAINED);
        assert_eq!(
            failed(&v),
            ["every refusal a 503 or 429 with Retry-After, no other error"]
        );
        let mut errors = good();
        errors.errors = 3;
        assert!(!verdict(2360, &brief(errors), Some(&peak()), DRAINED).met());
    }

    #[test]
    fn a_lost_order_or_a_saga_left_in_flight_misses() {
        let mut lost = good();
        lost.unfinished = 1;
        let v = verdict(2360, &brief(lost), Some(&peak()), DRAINED);
        assert_eq!(failed(&v), ["no accepted order lost"]);
        let stuck = Drain {
            pending: Some(12),
            waited_s: 120.0,
        };
        let v = verdict(2360, &brief(good()), Some(&peak()), stuck);
        assert_eq!(failed(&v), ["every saga ended after the phase"]);
        let mut violated = brief(good());
        violated.invariants_hold = false;
        assert!(!verdict(2360, &violated, Some(&peak()), DRAINED).met());
    }

    #[test]
    fn nothing_accepted_is_a_miss_and_a_missing_peak_is_unchecked() {
        let none = Summary {
            sent: 1000,
            shed: 1000,
            ..Summary::default()
        };
        let v = verdict(2360, &brief(none), Some(&peak()), DRAINED);
        assert!(failed(&v).contains(&"accepted orders' end-to-end p99 <= 2 s"));
        let v = verdict(2360, &brief(good()), None, DRAINED);
        assert!(v.met());
        assert_eq!(v.checks[1].ok, None);
    }

    #[test]
    fn dropped_ticks_mean_the_load_was_not_offered() {
        let mut dropped = good();
        dropped.dropped = 10;
        let v = verdict(2360, &brief(dropped), Some(&peak()), DRAINED);
        assert_eq!(failed(&v), ["the offered load was sent in full"]);
    }
}
