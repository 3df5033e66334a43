//! The figures the summary derives from the samples: early / late / max of a series, the growth
//! check, and the flush probe's and the pressure sampler's figures over a window, whole phase
//! and minute by minute.

use super::procfs::Pressure;

/// Mean of the second tenth of the samples ("early"; the first tenth is skipped: pools, caches
/// and the broker warm up), of the last tenth ("late"), and the maximum. For a 10-minute phase
/// sampled every second, early and late are its second and its last minute.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EarlyLate {
    pub early: f64,
    pub late: f64,
    pub max: f64,
}

pub fn early_late(values: &[f64]) -> EarlyLate {
    let m = values.len() as f64;
    let tenth = m / 10.0;
    let mean = |pick: &dyn Fn(f64) -> bool| {
        let chosen: Vec<f64> = (1..=values.len())
            .filter(|&i| pick(i as f64))
            .map(|i| values[i - 1])
            .collect();
        chosen.iter().sum::<f64>() / chosen.len().max(1) as f64
    };
    EarlyLate {
        early: mean(&|i| i > tenth && i <= 2.0 * tenth + 1.0),
        late: mean(&|i| i > m - tenth),
        max: values.iter().copied().fold(0.0, f64::max),
    }
}

/// How much a late level may exceed the early one before it counts as growth: a factor, and an
/// allowance for series that start near zero.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub factor: f64,
    pub plus: f64,
}

/// Memory (MiB): allocators and pools settle within a few MiB; a leak goes on past that.
pub const MEMORY: Allowance = Allowance {
    factor: 1.10,
    plus: 4.0,
};
/// Messages queued and outbox rows: a fleet that keeps up holds a small backlog that moves with
/// the moment; one that falls behind holds more at the end than at the start.
pub const BACKLOG: Allowance = Allowance {
    factor: 2.0,
    plus: 100.0,
};

/// Whether the late level is above what the early one allows.
pub fn grows(e: &EarlyLate, allowance: Allowance) -> bool {
    e.late > e.early * allowance.factor + allowance.plus
}

/// The flush probe's p50, p99, max (ms) and count over `[from, to]` (epoch seconds).
pub fn flush_stats(samples: &[(f64, f64)], from: f64, to: f64) -> Option<[f64; 4]> {
    let mut ms: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t <= to)
        .map(|(_, ms)| *ms)
        .collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    (n > 0).then(|| {
        let at = |q: f64| ms[((n - 1) as f64 * q) as usize];
        [at(0.5), at(0.99), ms[n - 1], n as f64]
    })
}

/// Percent of the time between the first and the last sample in `[from, to)` during which
/// some task waited for a core, for I/O, and every task for I/O; `None` without two samples.
pub fn pressure_stats(samples: &[(f64, Pressure)], from: f64, to: f64) -> Option<[Option<f64>; 3]> {
    let inside: Vec<&(f64, Pressure)> = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .collect();
    let (&(t0, a), &(t1, b)) = (inside.first()?, inside.last()?);
    let span_us = (t1 - t0) * 1e6;
    if span_us <= 0.0 {
        return None;
    }
    let share = |x: u64, y: u64| Some(100.0 * y.saturating_sub(x) as f64 / span_us);
    Some([
        share(a.cpu_some_us, b.cpu_some_us),
        share(a.io_some_us, b.io_some_us),
        a.io_full_us
            .zip(b.io_full_us)
            .and_then(|(x, y)| share(x, y)),
    ])
}

/// The windows a phase's figures are reported over: the whole load window, then, when it
/// lasted more than a minute, each minute from the load's start (as loadgen counts its
/// minutes), each `slack` seconds longer (the pressure sampler's sample at a minute's end
/// closes it). Labels are "" for the whole phase and "FROM-TO s" for a minute.
pub fn by_minute(t0: f64, t1: f64, slack: f64) -> Vec<(String, f64, f64)> {
    let mut windows = vec![(String::new(), t0, t1)];
    // Rounded: the window starts a moment after loadgen's own start, so 600 s read as 599.8.
    let minutes = ((t1 - t0) / 60.0 + 0.5) as u64;
    if minutes > 1 {
        for m in 0..minutes {
            let from = t0 + (m * 60) as f64;
            let label = format!("{}-{} s", m * 60, m * 60 + 60);
            windows.push((label, from, from + 60.0 + slack));
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_is_the_second_tenth_and_late_the_last() {
        // 20 samples: early = samples 3..=5 (1-based), late = samples 19 and 20.
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        let e = early_late(&values);
        assert_eq!(e.early, 4.0);
        assert_eq!(e.late, 19.5);
        assert_eq!(e.max, 20.0);
        assert_eq!(early_late(&[]), EarlyLate::default());
    }

    #[test]
    fn memory_that_settles_is_no_growth_and_a_leak_is() {
        let settled = EarlyLate {
            early: 30.0,
            late: 33.0,
            max: 34.0,
        };
        assert!(!grows(&settled, MEMORY));
        let leak = EarlyLate {
            early: 30.0,
            late: 60.0,
            max: 60.0,
        };
        assert!(grows(&leak, MEMORY));
    }

    #[test]
    fn a_backlog_near_zero_is_no_growth_and_a_rising_one_is() {
        let small = EarlyLate {
            early: 3.0,
            late: 40.0,
            max: 120.0,
        };
        assert!(!grows(&small, BACKLOG));
        let behind = EarlyLate {
            early: 50.0,
            late: 5000.0,
            max: 5000.0,
        };
        assert!(grows(&behind, BACKLOG));
    }

    #[test]
    fn flush_figures_are_taken_inside_the_window() {
        let samples: Vec<(f64, f64)> = (0..100).map(|i| (f64::from(i), f64::from(i))).collect();
        let [p50, p99, max, n] = flush_stats(&samples, 10.0, 59.0).unwrap();
        assert_eq!((p50, p99, max, n), (34.0, 58.0, 59.0, 50.0));
        assert_eq!(flush_stats(&samples, 200.0, 300.0), None);
    }

    #[test]
    fn pressure_is_the_share_of_the_time_between_first_and_last_sample() {
        let at = |t: f64, cpu: u64, io: u64| {
            (
                t,
                Pressure {
                    cpu_some_us: cpu,
                    io_some_us: io,
                    io_full_us: Some(io / 2),
                },
            )
        };
        let samples = [
            at(0.0, 0, 0),
            at(1.0, 250_000, 100_000),
            at(2.0, 500_000, 200_000),
        ];
        let shares = pressure_stats(&samples, 0.0, 3.0).unwrap();
        assert_eq!(shares, [Some(25.0), Some(10.0), Some(5.0)]);
        assert_eq!(pressure_stats(&samples[..1], 0.0, 3.0), None);
    }

    #[test]
    fn a_phase_of_several_minutes_is_also_reported_minute_by_minute() {
        assert_eq!(by_minute(100.0, 160.0, 0.0).len(), 1);
        let w = by_minute(100.0, 279.8, 1.0);
        assert_eq!(w.len(), 4);
        assert_eq!(w[3], ("120-180 s".to_string(), 220.0, 281.0));
    }
}
