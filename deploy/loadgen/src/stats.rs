//! Latency percentiles (exact, or from a [`Histogram`] where a run keeps no orders), the
//! per-second series behind the chart and the per-minute windows of the report.

/// Percentiles of one set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Nearest-rank percentile of an ascending slice (`q` in 0..=100); 0 when empty.
/// Nearest rank rather than interpolation: every reported value is one that was measured.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn latency(values: &[f64]) -> Latency {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return Latency::default();
    }
    Latency {
        count: sorted.len(),
        p50: percentile(&sorted, 50.0),
        p95: percentile(&sorted, 95.0),
        p99: percentile(&sorted, 99.0),
        max: sorted[sorted.len() - 1],
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
    }
}

/// Latencies in buckets 1 % wide (on a log scale), for runs too long to keep every value: the
/// soak's windows and its per-second p99. A percentile is the upper bound of the bucket that
/// holds the nearest-rank value, capped at the largest value seen: at most 1 % above it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Bucket index of `counts[0]`; only the buckets from the smallest to the largest value
    /// seen are kept (a few hundred for latencies of 20 ms to 1 s).
    first: usize,
    counts: Vec<u32>,
    count: usize,
    sum: f64,
    max: f64,
}

/// The upper bound of bucket 0, and each bucket's upper bound over the one before.
const HISTOGRAM_FLOOR_MS: f64 = 0.01;
const HISTOGRAM_GROWTH: f64 = 1.01;

impl Histogram {
    fn bucket(ms: f64) -> usize {
        if ms <= HISTOGRAM_FLOOR_MS {
            return 0;
        }
        ((ms / HISTOGRAM_FLOOR_MS).ln() / HISTOGRAM_GROWTH.ln()).ceil() as usize
    }

    fn upper(bucket: usize) -> f64 {
        HISTOGRAM_FLOOR_MS * HISTOGRAM_GROWTH.powi(bucket as i32)
    }

    pub fn add(&mut self, ms: f64) {
        if !ms.is_finite() {
            return;
        }
        let ms = ms.max(0.0);
        let b = Self::bucket(ms);
        if self.counts.is_empty() {
            self.first = b;
        } else if b < self.first {
            let grow = self.first - b;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = b;
        }
        let i = b - self.first;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.count += 1;
        self.sum += ms;
        self.max = self.max.max(ms);
    }

    /// Nearest-rank percentile (`q` in 0..=100), as the bucket's upper bound; 0 when empty.
    pub fn percentile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (((q / 100.0) * self.count as f64).ceil() as usize).clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n as usize;
            if seen >= rank {
                return Self::upper(self.first + i).min(self.max);
            }
        }
        self.max
    }

    pub fn latency(&self) -> Latency {
        if self.count == 0 {
            return Latency::default();
        }
        Latency {
            count: self.count,
            p50: self.percentile(50.0),
            p95: self.percentile(95.0),
            p99: self.percentile(99.0),
            max: self.max,
            mean: self.sum / self.count as f64,
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Second {
    /// Seconds since the load started.
    pub t: usize,
    /// Orders accepted (202) whose request was sent in this second.
    pub accepted: usize,
    /// Sagas that reached COMPLETED in this second (by the server's terminal timestamp).
    pub completed: usize,
    /// Sagas that reached FAILED in this second.
    pub failed: usize,
    /// p99 end-to-end latency of the sagas that ended in this second (ms; 0 when none did).
    pub p99_e2e_ms: f64,
}

/// An event placed in time: (seconds since start when sent, accepted?, seconds since start
/// when terminal, completed?, e2e ms).
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub sent_s: f64,
    pub accepted: bool,
    pub ended_s: Option<f64>,
    pub completed: bool,
    pub e2e_ms: Option<f64>,
}

/// Buckets the points into whole seconds, up to the last second anything happened in.
pub fn series(points: &[Point]) -> Vec<Second> {
    let last = points
        .iter()
        .flat_map(|p| [Some(p.sent_s), p.ended_s])
        .flatten()
        .fold(0.0_f64, f64::max);
    let n = last.floor() as usize + 1;
    let mut seconds: Vec<Second> = (0..n)
        .map(|t| Second {
            t,
            ..Second::default()
        })
        .collect();
    let mut e2e: Vec<Vec<f64>> = vec![Vec::new(); n];
    let slot = |s: f64| (s.max(0.0).floor() as usize).min(n - 1);
    for p in points {
        if p.accepted {
            seconds[slot(p.sent_s)].accepted += 1;
        }
        if let Some(end) = p.ended_s {
            let i = slot(end);
            if p.completed {
                seconds[i].completed += 1;
            } else {
                seconds[i].failed += 1;
            }
            if let Some(ms) = p.e2e_ms {
                e2e[i].push(ms);
            }
        }
    }
    for (second, values) in seconds.iter_mut().zip(&mut e2e) {
        values.sort_by(f64::total_cmp);
        second.p99_e2e_ms = percentile(values, 99.0);
    }
    seconds
}

/// A stretch of the run (a minute in the report): the orders sent in it and what their sagas
/// took end to end. A whole phase's p99 cannot tell a fleet that is slow throughout from one
/// slow spell (a stalled disk, a busy neighbour); the windows can.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// Seconds since the load started, at the window's start.
    pub from_s: usize,
    /// Its length; the last window of a run is shorter when the duration is not a multiple.
    pub seconds: usize,
    /// Orders sent in it (accepted or not), per second.
    pub sent_per_s: f64,
    /// End-to-end latency of those of its orders whose saga ended.
    pub e2e_ms: Latency,
    /// Accepted orders sent in it whose saga had not ended when tracking gave up.
    pub unfinished: usize,
    /// Sagas that reached COMPLETED in it (by their end, not by when they were sent), per
    /// second: the throughput of the stretch.
    #[serde(default)]
    pub completed_per_s: f64,
}

/// Cuts the points sent within `duration_s` into windows of `width_s` seconds, by send time.
pub fn windows(points: &[Point], duration_s: usize, width_s: usize) -> Vec<Window> {
    let width = width_s.max(1);
    let count = duration_s.div_ceil(width);
    let mut e2e: Vec<Vec<f64>> = vec![Vec::new(); count];
    let mut sent = vec![0_usize; count];
    let mut unfinished = vec![0_usize; count];
    let mut completed = vec![0_usize; count];
    for p in points {
        if let Some(end) = p.ended_s.filter(|&e| p.completed && e < duration_s as f64) {
            completed[end.max(0.0) as usize / width] += 1;
        }
        if p.sent_s >= duration_s as f64 {
            continue;
        }
        let i = p.sent_s.max(0.0).floor() as usize / width;
        sent[i] += 1;
        match p.e2e_ms {
            Some(ms) => e2e[i].push(ms),
            None if p.accepted => unfinished[i] += 1,
            None => {}
        }
    }
    (0..count)
        .map(|i| {
            let from_s = i * width;
            let seconds = width.min(duration_s - from_s);
            Window {
                from_s,
                seconds,
                sent_per_s: sent[i] as f64 / seconds as f64,
                e2e_ms: latency(&e2e[i]),
                unfinished: unfinished[i],
                completed_per_s: completed[i] as f64 / seconds as f64,
            }
        })
        .collect()
}

/// The profile around marks covers orders sent from `MARK_FROM_S` before their nearest mark to
/// `MARK_TO_S` after it, in bins of `MARK_BIN_S`. On the broker's write-ahead-log rollovers,
/// the sagas sent from a quarter of a second before one to half a second after take longest,
/// so with rollovers seconds apart
/// the range shows them with the level before and after. With marks closer together, an
/// order's nearest mark is at most half the gap away, so only the middle bins fill.
pub const MARK_FROM_S: f64 = -1.0;
pub const MARK_TO_S: f64 = 2.0;
pub const MARK_BIN_S: f64 = 0.25;

/// The end-to-end latency of the orders by when they were sent against the nearest mark (an
/// event of the fleet's machine that may hold every saga up, such as the broker's write-ahead
/// log rolling over): whether a periodic event makes the tail, which a whole phase's p99 cannot
/// say.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AroundMarks {
    /// Marks inside the load window.
    pub marks: usize,
    /// Mean seconds between consecutive marks inside the load window; 0 with fewer than two.
    pub every_s: f64,
    /// From `MARK_FROM_S` to `MARK_TO_S`: the ended orders sent that long after their nearest
    /// mark (negative: before it), a bin of `MARK_BIN_S` each. Only orders sent between two
    /// marks count: before the first or after the last, the nearest one is not known.
    pub bins: Vec<MarkBin>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarkBin {
    /// Seconds from the nearest mark to the start of the bin.
    pub from_s: f64,
    pub e2e_ms: Latency,
}

/// Places each ended order sent between two marks by the time from the nearer of them to its
/// sending. `marks_s` are seconds since the load started, in any order; marks outside the load
/// window count as nearest marks, not in `marks`.
pub fn around_marks(points: &[Point], marks_s: &[f64], load_s: f64) -> AroundMarks {
    let mut marks: Vec<f64> = marks_s.iter().copied().filter(|m| m.is_finite()).collect();
    marks.sort_by(f64::total_cmp);
    let count = ((MARK_TO_S - MARK_FROM_S) / MARK_BIN_S).round() as usize;
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); count];
    for p in points {
        let Some(ms) = p.e2e_ms else { continue };
        // The marks on either side; an order before the first or after the last would be
        // placed against a mark that may be far from its true nearest (a phase's first
        // moments, before the first rollover was seen), so it is left out.
        let i = marks.partition_point(|&m| m <= p.sent_s);
        let (Some(&before), Some(&after)) =
            (i.checked_sub(1).and_then(|j| marks.get(j)), marks.get(i))
        else {
            continue;
        };
        let offset = if p.sent_s - before <= after - p.sent_s {
            p.sent_s - before
        } else {
            p.sent_s - after
        };
        let bin = ((offset - MARK_FROM_S) / MARK_BIN_S).floor();
        if bin >= 0.0 && (bin as usize) < count {
            values[bin as usize].push(ms);
        }
    }
    let inside: Vec<f64> = marks
        .into_iter()
        .filter(|&m| (0.0..load_s).contains(&m))
        .collect();
    let every_s = match inside.as_slice() {
        [first, .., last] => (last - first) / (inside.len() - 1) as f64,
        _ => 0.0,
    };
    AroundMarks {
        marks: inside.len(),
        every_s,
        bins: values
            .iter()
            .enumerate()
            .map(|(i, v)| MarkBin {
                from_s: MARK_FROM_S + i as f64 * MARK_BIN_S,
                e2e_ms: latency(v),
            })
            .collect(),
    }
}

/// Sustained rate: sagas ended (completed + failed, or only completed) per second over the
/// load window, excluding the first and last second, which are partial by construction.
pub fn sustained(series: &[Second], window_s: usize, pick: impl Fn(&Second) -> usize) -> f64 {
    let end = window_s.min(series.len());
    if end <= 2 {
        return series.iter().take(end).map(&pick).sum::<usize>() as f64 / end.max(1) as f64;
    }
    let inner = &series[1..end - 1];
    inner.iter().map(pick).sum::<usize>() as f64 / inner.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An accepted, completed order sent at `sent_s` whose saga took `e2e_ms` (`None`: never
    /// ended).
    fn p(sent_s: f64, e2e_ms: Option<f64>) -> Point {
        Point {
            sent_s,
            accepted: true,
            ended_s: e2e_ms.map(|ms| sent_s + ms / 1000.0),
            completed: true,
            e2e_ms,
        }
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = latency(&values);
        assert_eq!((l.p50, l.p95, l.p99, l.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(l.mean, 50.5);
    }

    #[test]
    fn percentiles_of_unsorted_and_tiny_inputs() {
        assert_eq!(latency(&[3.0, 1.0, 2.0]).p50, 2.0);
        assert_eq!(latency(&[7.0]).p99, 7.0);
        assert_eq!(latency(&[]), Latency::default());
        assert_eq!(percentile(&[1.0, 2.0], 0.0), 1.0);
    }

    #[test]
    fn points_are_bucketed_by_send_and_end_second() {
        let p = |sent_s, ended_s, completed| Point {
            sent_s,
            accepted: true,
            ended_s: Some(ended_s),
            completed,
            e2e_ms: Some((ended_s - sent_s) * 1000.0),
        };
        let s = series(&[p(0.1, 0.5, true), p(0.9, 1.2, true), p(1.5, 2.5, false)]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().map(|x| x.accepted).collect::<Vec<_>>(), [2, 1, 0]);
        assert_eq!(s.iter().map(|x| x.completed).collect::<Vec<_>>(), [1, 1, 0]);
        assert_eq!(s[2].failed, 1);
        assert_eq!(s[2].p99_e2e_ms, 1000.0);
    }

    #[test]
    fn windows_split_by_send_time_and_keep_a_short_last_one() {
        // An order sent at 59.9 s that ends at 62 s belongs to the first minute: it was sent
        // there. One sent after the duration (a late tick) belongs to none.
        let points = [
            p(0.5, Some(10.0)),
            p(59.9, Some(2100.0)),
            p(60.0, Some(30.0)),
            p(61.0, None),
            p(90.0, Some(5.0)),
            // Refused (no order id): sent, but neither finished nor unfinished.
            Point {
                accepted: false,
                ..p(70.0, None)
            },
        ];
        let w = windows(&points, 90, 60);
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].from_s, w[0].seconds, w[1].from_s, w[1].seconds),
            (0, 60, 60, 30)
        );
        assert_eq!((w[0].e2e_ms.count, w[0].e2e_ms.max), (2, 2100.0));
        assert_eq!((w[1].e2e_ms.count, w[1].unfinished), (1, 1));
        assert_eq!(w[1].sent_per_s, 3.0 / 30.0);
    }

    #[test]
    fn orders_are_placed_by_their_offset_from_the_nearest_mark() {
        let points = [
            p(9.9, Some(1.0)),   // 0.1 s before the mark at 10: the bin from -0.25 s
            p(10.0, Some(2.0)),  // at it: the bin from 0
            p(10.3, Some(3.0)),  // from 0.25
            p(10.2, None),       // never ended: nowhere
            p(11.99, Some(4.0)), // 1.99 s after 10, 8.01 s before 20: the last bin, from 1.75
            p(12.0, Some(8.0)),  // 2 s after 10: past the last bin
            p(15.0, Some(5.0)),  // 5 s from either: outside the profile
            p(18.99, Some(6.0)), // 1.01 s before 20 (given out of order): outside
            p(19.0, Some(7.0)),  // 1 s before 20: the first bin
            p(44.9, Some(9.0)),  // 0.1 s before 45, a mark after the load window: from -0.25
            p(2.0, Some(10.0)),  // before the first mark: its nearest is not known
            p(50.0, Some(11.0)), // after the last: neither
        ];
        let a = around_marks(&points, &[20.0, 10.0, 45.0, 5.0, f64::NAN], 40.0);
        // 45 is after the load window and NaN is no time: three marks, 7.5 s apart on average.
        assert_eq!((a.marks, a.every_s), (3, 7.5));
        assert_eq!(a.bins.len(), 12);
        let at = |from: f64| {
            let b = a.bins.iter().find(|b| b.from_s == from).unwrap();
            (b.e2e_ms.count, b.e2e_ms.max)
        };
        assert_eq!(at(-1.0), (1, 7.0));
        assert_eq!(at(-0.25), (2, 9.0));
        assert_eq!(at(0.0), (1, 2.0));
        assert_eq!(at(0.25), (1, 3.0));
        assert_eq!(at(1.75), (1, 4.0));
        let placed: usize = a.bins.iter().map(|b| b.e2e_ms.count).sum();
        assert_eq!(placed, 6);
        let none = around_marks(&points, &[], 40.0);
        assert_eq!((none.marks, none.every_s), (0, 0.0));
        assert!(none.bins.iter().all(|b| b.e2e_ms.count == 0));
    }

    #[test]
    fn a_window_counts_its_completions_by_when_they_ended() {
        // Sent in the first minute, ended in the second: the second minute's throughput.
        let w = windows(&[p(59.0, Some(2000.0)), p(1.0, Some(10.0))], 120, 60);
        assert_eq!(w[0].completed_per_s, 1.0 / 60.0);
        assert_eq!(w[1].completed_per_s, 1.0 / 60.0);
    }

    #[test]
    fn histogram_percentiles_are_within_one_percent_above_the_exact_ones() {
        let values: Vec<f64> = (1..=10_000).map(|i| f64::from(i) * 0.1).collect();
        let mut h = Histogram::default();
        // Added in reverse, so the kept range also grows downwards.
        for v in values.iter().rev() {
            h.add(*v);
        }
        let (exact, approx) = (latency(&values), h.latency());
        assert_eq!((approx.count, approx.max), (exact.count, exact.max));
        assert!((approx.mean - exact.mean).abs() < 1e-6);
        for (e, a) in [
            (exact.p50, approx.p50),
            (exact.p95, approx.p95),
            (exact.p99, approx.p99),
        ] {
            assert!(a >= e && a <= e * 1.01, "exact {e}, histogram {a}");
        }
        assert_eq!(Histogram::default().latency(), Latency::default());
        let mut one = Histogram::default();
        one.add(42.0);
        assert_eq!(one.percentile(99.0), 42.0);
    }

    #[test]
    fn sustained_rate_drops_the_partial_edges() {
        let s: Vec<Second> = [5, 100, 100, 100, 7]
            .iter()
            .enumerate()
            .map(|(t, &c)| Second {
                t,
                completed: c,
                ..Second::default()
            })
            .collect();
        assert_eq!(sustained(&s, 5, |x| x.completed), 100.0);
    }
}
