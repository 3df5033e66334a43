//! What a run keeps of its orders. By default every [`Record`] (the raw JSON lists them); with
//! `--window S` (the benchmark's soak, 30 minutes and more) only aggregates, so the load
//! generator's memory stays flat however long it runs:
//! - [`Counts`]: the outcome counters of the summary (shared with the default report);
//! - per second: accepted, completed, failed and a latency histogram (the chart);
//! - per window of S seconds: orders sent, unfinished, completed (by end) and a histogram;
//! - the whole run's accept and end-to-end histograms;
//! - the invariants' [`Ledger`] and an evenly spread sample of terminal orders for the payment
//!   checks (reservoir sampling: every terminal order has the same chance to be in it).

use crate::drive::{Record, Tracking};
use crate::invariants::Ledger;
use crate::mix::Rng;
use crate::seeding::{self, PaymentCheck};
use crate::stats::{Histogram, Second, Window};

/// The outcome counters of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub sent: usize,
    pub accepted: usize,
    pub errors: usize,
    /// Refusals as the contract has them (see [`crate::refusal`]): 503 `overloaded` (admission
    /// control) and 429 `rate_limited`, each with `Retry-After`. A 503 or 429 without either
    /// is an error, counted in `errors` and also in `refusals_malformed`.
    pub shed: usize,
    pub rate_limited: usize,
    pub refusals_malformed: usize,
    pub completed: usize,
    pub failed_payment_declined: usize,
    pub failed_out_of_stock: usize,
    pub failed_other: usize,
    pub unfinished: usize,
    pub polls: u64,
    pub tracked_by_event: usize,
    pub tracked_by_fallback_get: usize,
    pub tracked_by_polling: usize,
}

impl Counts {
    pub fn add(&mut self, r: &Record) {
        self.sent += 1;
        self.errors += usize::from(r.error.is_some());
        match &r.refusal {
            Some(refusal) if !refusal.well_formed() => self.refusals_malformed += 1,
            Some(refusal) => match refusal.kind {
                crate::refusal::Kind::Shed => self.shed += 1,
                crate::refusal::Kind::RateLimited => self.rate_limited += 1,
            },
            None => {}
        }
        match (r.status.as_deref(), r.failure_reason.as_deref()) {
            (Some("COMPLETED"), _) => self.completed += 1,
            (Some("FAILED"), Some("payment_declined")) => self.failed_payment_declined += 1,
            (Some("FAILED"), Some("out_of_stock")) => self.failed_out_of_stock += 1,
            (Some("FAILED"), _) => self.failed_other += 1,
            _ => {}
        }
        if r.order_id.is_none() {
            return;
        }
        self.accepted += 1;
        self.unfinished += usize::from(!r.terminal());
        self.polls += u64::from(r.polls);
        match r.tracked_by {
            Some(Tracking::Event) => self.tracked_by_event += 1,
            Some(Tracking::FallbackGet) => self.tracked_by_fallback_get += 1,
            Some(Tracking::Polled) => self.tracked_by_polling += 1,
            None => {}
        }
    }
}

#[derive(Debug, Default)]
struct SecondTally {
    accepted: usize,
    completed: usize,
    failed: usize,
    e2e: Histogram,
}

#[derive(Debug, Default)]
struct WindowTally {
    sent: usize,
    unfinished: usize,
    completed: usize,
    e2e: Histogram,
}

/// The aggregates of a run that keeps no orders.
#[derive(Debug)]
pub struct Tally {
    pub counts: Counts,
    pub accept: Histogram,
    pub e2e: Histogram,
    duration_s: usize,
    window_s: usize,
    seconds: Vec<SecondTally>,
    windows: Vec<WindowTally>,
    ledger: Ledger,
    /// At most `sample_size` terminal orders that ended in window `sample_window` (the latest
    /// one, the drain counted in the last); `terminal` of them seen so far. Only the latest
    /// window's: the fleet prunes older payments (`retention.history`), so an earlier order's
    /// payment may be gone by design.
    sample: Vec<PaymentCheck>,
    sample_size: usize,
    sample_window: usize,
    terminal: u64,
    rng: Rng,
}

impl Tally {
    /// `duration_s`: the load's length (orders sent after it belong to no window).
    pub fn new(duration_s: usize, window_s: usize, ledger: Ledger, sample_size: usize) -> Self {
        let window_s = window_s.max(1);
        Self {
            counts: Counts::default(),
            accept: Histogram::default(),
            e2e: Histogram::default(),
            duration_s,
            window_s,
            seconds: Vec::new(),
            windows: (0..duration_s.div_ceil(window_s))
                .map(|_| WindowTally::default())
                .collect(),
            ledger,
            sample: Vec::new(),
            sample_size: sample_size.max(1),
            sample_window: 0,
            terminal: 0,
            rng: Rng::new(0x5eed_0f0d),
        }
    }

    fn second(&mut self, at_s: f64) -> &mut SecondTally {
        let i = at_s.max(0.0).floor() as usize;
        if i >= self.seconds.len() {
            self.seconds.resize_with(i + 1, SecondTally::default);
        }
        &mut self.seconds[i]
    }

    /// Takes in one order once its outcome is known; the record is dropped afterwards.
    pub fn add(&mut self, r: &Record) {
        self.counts.add(r);
        self.ledger.settle(&seeding::settled(r));
        let accepted = r.order_id.is_some();
        if accepted {
            self.second(r.sent_s).accepted += 1;
            if let Some(ms) = r.accept_ms {
                self.accept.add(ms);
            }
        }
        if let (Some(ms), true) = (r.e2e_ms, r.terminal()) {
            self.e2e.add(ms);
            let ended_s = r.sent_s + ms / 1000.0;
            let completed = r.status.as_deref() == Some("COMPLETED");
            let second = self.second(ended_s);
            second.e2e.add(ms);
            if completed {
                second.completed += 1;
            } else {
                second.failed += 1;
            }
            if completed && ended_s < self.duration_s as f64 {
                self.windows[ended_s as usize / self.window_s].completed += 1;
            }
        }
        if r.sent_s < self.duration_s as f64 {
            let w = &mut self.windows[r.sent_s.max(0.0) as usize / self.window_s];
            w.sent += 1;
            match r.e2e_ms {
                Some(ms) => w.e2e.add(ms),
                None if accepted => w.unfinished += 1,
                None => {}
            }
        }
        if let Some(check) = PaymentCheck::of(r) {
            let ended_s = r.sent_s + r.e2e_ms.unwrap_or(0.0) / 1000.0;
            let last = self.windows.len().saturating_sub(1);
            let window = (ended_s.max(0.0) as usize / self.window_s).min(last);
            self.keep_for_payments(check, window);
        }
    }

    /// Reservoir sampling (Algorithm R) over the orders that ended in the latest window.
    fn keep_for_payments(&mut self, check: PaymentCheck, window: usize) {
        if window < self.sample_window {
            return;
        }
        if window > self.sample_window {
            self.sample.clear();
            self.terminal = 0;
            self.sample_window = window;
        }
        self.terminal += 1;
        if self.sample.len() < self.sample_size {
            self.sample.push(check);
            return;
        }
        let slot = self.rng.next_u64() % self.terminal;
        if let Some(kept) = self.sample.get_mut(slot as usize) {
            *kept = check;
        }
    }

    /// The per-second series, as the default report builds it from every order.
    pub fn series(&self) -> Vec<Second> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(t, s)| Second {
                t,
                accepted: s.accepted,
                completed: s.completed,
                failed: s.failed,
                p99_e2e_ms: s.e2e.percentile(99.0),
            })
            .collect()
    }

    pub fn windows(&self) -> Vec<Window> {
        self.windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let from_s = i * self.window_s;
                let seconds = self.window_s.min(self.duration_s - from_s);
                Window {
                    from_s,
                    seconds,
                    sent_per_s: w.sent as f64 / seconds as f64,
                    e2e_ms: w.e2e.latency(),
                    unfinished: w.unfinished,
                    completed_per_s: w.completed as f64 / seconds as f64,
                }
            })
            .collect()
    }

    /// The invariants' expected values and the payments to read back.
    pub fn into_checks(self) -> (Ledger, Vec<PaymentCheck>) {
        (self.ledger, self.sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::Kind;
    use crate::stats;

    fn record(seq: u64, sent_s: f64, e2e_ms: Option<f64>, status: Option<&str>) -> Record {
        Record {
            seq,
            kind: Kind::Complete,
            customer_id: "c".into(),
            total_cents: 100,
            lines: vec![("p".into(), 1)],
            sent_s,
            accept_ms: Some(5.0),
            http_status: Some(202),
            refusal: None,
            error: None,
            order_id: Some(uuid::Uuid::now_v7()),
            status: status.map(String::from),
            failure_reason: (status == Some("FAILED")).then(|| "out_of_stock".into()),
            e2e_ms,
            polls: 0,
            tracked_by: Some(Tracking::Event),
        }
    }

    #[test]
    fn refusals_are_counted_apart_from_errors_unless_malformed() {
        let refused = |status: u16, retry_after: Option<&str>, body: &str| {
            let now = chrono::Utc::now();
            let refusal = crate::refusal::Refusal::of(status, retry_after, body, now);
            let well_formed = refusal.as_ref().is_some_and(|r| r.well_formed());
            Record {
                http_status: Some(status),
                order_id: None,
                refusal,
                error: (!well_formed).then(|| format!("HTTP {status}")),
                ..record(0, 0.0, None, None)
            }
        };
        let mut counts = Counts::default();
        counts.add(&refused(503, Some("1"), r#"{"error":"overloaded"}"#));
        counts.add(&refused(429, Some("2"), r#"{"error":"rate_limited"}"#));
        counts.add(&refused(503, None, r#"{"error":"overloaded"}"#));
        counts.add(&refused(
            503,
            Some("1"),
            r#"{"error":"service_unavailable"}"#,
        ));
        assert_eq!((counts.shed, counts.rate_limited, counts.errors), (1, 1, 2));
        assert_eq!((counts.refusals_malformed, counts.accepted), (2, 0));
        // A refusal moved nothing; an error of unknown effect is unverifiable.
        let shed = refused(503, Some("1"), r#"{"error":"overloaded"}"#);
        assert_eq!(seeding::settled(&shed).completed, Some(false));
        let down = refused(503, Some("1"), r#"{"error":"service_unavailable"}"#);
        assert_eq!(seeding::settled(&down).completed, None);
    }

    fn ledger() -> Ledger {
        Ledger::new([("c", 1_000)], [("p", 10)])
    }

    #[test]
    fn windows_match_the_ones_built_from_every_order() {
        let records: Vec<Record> = (0..600_u32)
            .map(|i| {
                let sent = f64::from(i) * 0.25;
                match i % 10 {
                    0 => record(i.into(), sent, Some(120.0), Some("FAILED")),
                    7 => record(i.into(), sent, None, None),
                    _ => record(
                        i.into(),
                        sent,
                        Some(40.0 + f64::from(i % 50)),
                        Some("COMPLETED"),
                    ),
                }
            })
            .collect();
        let mut tally = Tally::new(150, 60, ledger(), 100);
        for r in &records {
            tally.add(r);
        }
        let points: Vec<stats::Point> = records
            .iter()
            .map(|r| stats::Point {
                sent_s: r.sent_s,
                accepted: true,
                ended_s: r.e2e_ms.map(|ms| r.sent_s + ms / 1000.0),
                completed: r.status.as_deref() == Some("COMPLETED"),
                e2e_ms: r.e2e_ms,
            })
            .collect();
        let exact = stats::windows(&points, 150, 60);
        let streamed = tally.windows();
        assert_eq!(streamed.len(), 3);
        for (e, s) in exact.iter().zip(&streamed) {
            assert_eq!(
                (e.from_s, e.seconds, e.unfinished),
                (s.from_s, s.seconds, s.unfinished)
            );
            assert_eq!(
                (e.sent_per_s, e.completed_per_s),
                (s.sent_per_s, s.completed_per_s)
            );
            assert_eq!(e.e2e_ms.count, s.e2e_ms.count);
            assert!(s.e2e_ms.p99 >= e.e2e_ms.p99 && s.e2e_ms.p99 <= e.e2e_ms.p99 * 1.01);
        }
        let series = tally.series();
        let exact_series = stats::series(&points);
        assert_eq!(series.len(), exact_series.len());
        for (e, s) in exact_series.iter().zip(&series) {
            assert_eq!(
                (e.accepted, e.completed, e.failed),
                (s.accepted, s.completed, s.failed)
            );
        }
        assert_eq!(tally.counts.sent, 600);
        assert_eq!(
            (tally.counts.completed, tally.counts.failed_out_of_stock),
            (480, 60)
        );
        assert_eq!(tally.counts.unfinished, 60);
    }

    #[test]
    fn the_ledger_sees_every_order_and_the_payment_sample_stays_bounded() {
        let mut tally = Tally::new(100, 10, ledger(), 5);
        let mut last_window = Vec::new();
        for i in 0..50 {
            let r = record(i, i as f64, Some(10.0), Some("COMPLETED"));
            if i >= 40 {
                last_window.extend(r.order_id);
            }
            tally.add(&r);
        }
        let (ledger, sample) = tally.into_checks();
        let e = ledger.expected();
        assert_eq!(e.balance["c"], 1_000 - 50 * 100);
        assert_eq!((e.available["p"], e.reserved["p"]), (10 - 50, 50));
        assert_eq!(sample.len(), 5);
        let mut ids: Vec<_> = sample.iter().map(|c| c.order_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 5);
        assert!(
            ids.iter().all(|id| last_window.contains(id)),
            "only orders that ended in the last window, whose payments the fleet still keeps"
        );
    }
}
