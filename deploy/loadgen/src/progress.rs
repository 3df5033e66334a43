//! The live progress line while the load runs.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::drive::Shared;

/// The live progress: on a terminal, one line rewritten every second (a bar, the rates of the
/// last second, the totals); into a file or pipe (as `loadgen bench` runs it), one plain line
/// every ten seconds, so the log stays readable.
pub(crate) async fn progress(shared: Arc<Shared>) {
    use std::io::IsTerminal;
    let c = &shared.counters;
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal { 1 } else { 10 };
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    let (mut last_ended, mut last_sent) = (0, 0);
    loop {
        tick.tick().await;
        let ended = c.completed.load(Relaxed) + c.failed.load(Relaxed);
        let sent = c.sent.load(Relaxed);
        let line = progress_line(&Progress {
            elapsed: shared.start.elapsed(),
            duration: shared.settings.duration,
            sent_per_s: (sent - last_sent) / every,
            ended_per_s: (ended - last_ended) / every,
            completed: c.completed.load(Relaxed),
            failed: c.failed.load(Relaxed),
            in_flight: c.in_flight.load(Relaxed),
            errors: c.errors.load(Relaxed),
            refused: c.shed.load(Relaxed) + c.rate_limited.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
        });
        let mut err = std::io::stderr();
        // The progress line is best effort: a closed stderr must not stop the run.
        let _ = if terminal {
            write!(err, "\r{line}   ")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        (last_ended, last_sent) = (ended, sent);
    }
}

/// What one progress line shows.
struct Progress {
    elapsed: Duration,
    duration: Duration,
    sent_per_s: u64,
    ended_per_s: u64,
    completed: u64,
    failed: u64,
    in_flight: usize,
    errors: u64,
    /// Shed (503) and rate-limited (429).
    refused: u64,
    dropped: u64,
}

const BAR_WIDTH: usize = 24;

fn progress_line(p: &Progress) -> String {
    let done = (p.elapsed.as_secs_f64() / p.duration.as_secs_f64().max(f64::EPSILON)).min(1.0);
    let filled = (done * BAR_WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {:>4.0}s/{:.0}s  sent {}/s  finished {}/s  completed {}  failed {}  in flight {}  errors {}  refused {}  dropped {}",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        p.elapsed.as_secs_f64(),
        p.duration.as_secs_f64(),
        p.sent_per_s,
        p.ended_per_s,
        p.completed,
        p.failed,
        p.in_flight,
        p.errors,
        p.refused,
        p.dropped,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(elapsed_s: u64) -> Progress {
        Progress {
            elapsed: Duration::from_secs(elapsed_s),
            duration: Duration::from_secs(60),
            sent_per_s: 1000,
            ended_per_s: 990,
            completed: 800,
            failed: 190,
            in_flight: 12,
            errors: 0,
            refused: 0,
            dropped: 0,
        }
    }

    #[test]
    fn the_bar_fills_with_the_elapsed_share_of_the_duration() {
        assert!(progress_line(&at(0)).starts_with(&format!("[{}]", "-".repeat(BAR_WIDTH))));
        let half = format!("[{}{}]", "#".repeat(12), "-".repeat(12));
        assert!(progress_line(&at(30)).starts_with(&half));
        // Tracking the last orders runs past the load's duration: the bar stays full.
        assert!(progress_line(&at(75)).starts_with(&format!("[{}]", "#".repeat(BAR_WIDTH))));
    }

    #[test]
    fn the_line_shows_the_live_rates_and_totals() {
        let line = progress_line(&at(30));
        for part in [
            "sent 1000/s",
            "finished 990/s",
            "completed 800",
            "failed 190",
            "in flight 12",
        ] {
            assert!(line.contains(part), "{line}");
        }
    }
}
