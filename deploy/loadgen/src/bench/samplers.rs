//! The samplers that run while a phase's load does, each writing its file in the results
//! directory as it goes and handing its samples back when stopped:
//! - memory, every second: resident memory of the services, the broker and the load
//!   generator, anonymous memory of PostgreSQL's processes (`rss-PHASE.tsv`);
//! - pressure, every second: the PSI totals (`pressure-PHASE.tsv`); the end-to-end tail at 80 %
//!   of the peak is made of waits, for a core or for the disk, and these tell them apart;
//! - flush probe, every 100 ms: a 4 KiB write and fsync in the results directory
//!   (`flush-PHASE.tsv`); every hop of a saga waits for two flushes (a commit, the quorum
//!   queue's log), and the calibration sees the disk only before the fleet starts;
//! - rollovers, every 50 ms: new write-ahead-log files of the benchmark's broker
//!   (`rollovers-PHASE.txt`, read by the phase's loadgen through `--marks`); a rollover holds
//!   every queue of the node up for a moment;
//! - backlog, every 5 s: messages queued and each service's unpublished outbox rows
//!   (`backlog-PHASE.tsv`), each service counted by one connection kept for the phase (a
//!   session started per sample made the fleet's latency jump on a machine without idle time).

use std::fs::File;
use std::io::{Seek, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::broker::{self, Api};
use super::db;
use super::procfs::{self, Pressure};

pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the memory sampler reads: (name, pid) of each process, and the postmaster.
#[derive(Debug, Clone)]
pub struct Processes {
    pub named: Vec<(String, u32)>,
    pub postmaster: u32,
    pub page_kb: u64,
}

/// One backlog sample: seconds since the phase started, messages queued, and each service's
/// unpublished outbox rows (`None`: unreadable).
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    pub t_s: u64,
    pub queued: Option<u64>,
    pub outbox: Vec<Option<i64>>,
}

/// Everything sampled during one phase.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Per process, KiB, one value a second.
    pub rss_kb: Vec<(String, Vec<f64>)>,
    pub pressure: Vec<(f64, Pressure)>,
    /// (epoch seconds, ms).
    pub flush: Vec<(f64, f64)>,
    pub backlog: Vec<Backlog>,
}

pub struct Running {
    stop: watch::Sender<bool>,
    flush_stop: Arc<AtomicBool>,
    rss: JoinHandle<Vec<(String, Vec<f64>)>>,
    pressure: JoinHandle<Vec<(f64, Pressure)>>,
    backlog: JoinHandle<Vec<Backlog>>,
    rollovers: Option<JoinHandle<()>>,
    flush: std::thread::JoinHandle<Vec<(f64, f64)>>,
}

pub struct Context {
    pub out: PathBuf,
    pub processes: Processes,
    pub api: Arc<Api>,
    /// (service, its database's URL), in the backlog file's column order.
    pub outboxes: Vec<(String, String)>,
    pub broker_dir: Option<PathBuf>,
}

/// Starts every sampler for `phase`.
pub fn start(cx: &Context, phase: &str) -> Running {
    let (stop, stopped) = watch::channel(false);
    let flush_stop = Arc::new(AtomicBool::new(false));
    let file = |what: &str, ext: &str| cx.out.join(format!("{what}-{phase}.{ext}"));
    Running {
        rss: tokio::spawn(rss(
            cx.processes.clone(),
            file("rss", "tsv"),
            stopped.clone(),
        )),
        pressure: tokio::spawn(pressure(file("pressure", "tsv"), stopped.clone())),
        backlog: tokio::spawn(backlog(
            cx.api.clone(),
            cx.outboxes.clone(),
            file("backlog", "tsv"),
            stopped.clone(),
        )),
        rollovers: cx
            .broker_dir
            .clone()
            .map(|dir| tokio::spawn(rollovers(dir, file("rollovers", "txt"), stopped.clone()))),
        flush: {
            let (probe, out, stop) = (
                cx.out.join(".flush-probe"),
                file("flush", "tsv"),
                flush_stop.clone(),
            );
            std::thread::spawn(move || flush(&probe, &out, &stop))
        },
        stop,
        flush_stop,
    }
}

impl Running {
    pub async fn stop(self) -> Samples {
        let _ = self.stop.send(true);
        self.flush_stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.rollovers {
            let _ = r.await;
        }
        Samples {
            rss_kb: self.rss.await.unwrap_or_default(),
            pressure: self.pressure.await.unwrap_or_default(),
            backlog: self.backlog.await.unwrap_or_default(),
            flush: tokio::task::spawn_blocking(move || self.flush.join().unwrap_or_default())
                .await
                .unwrap_or_default(),
        }
    }
}

/// Waits `every`; false once the phase is over.
pub(super) async fn tick(stopped: &mut watch::Receiver<bool>, every: Duration) -> bool {
    if *stopped.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(every) => !*stopped.borrow(),
        _ = stopped.changed() => false,
    }
}

/// Appends `text` to `file`; a sampler that cannot write still samples for the summary.
pub fn append(file: &Path, text: &str) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        eprintln!("bench: {}: {e}", file.display());
    }
}

async fn rss(
    p: Processes,
    file: PathBuf,
    mut stopped: watch::Receiver<bool>,
) -> Vec<(String, Vec<f64>)> {
    let mut names: Vec<String> = p.named.iter().map(|(n, _)| n.clone()).collect();
    names.push("postgres_anon".into());
    let mut series: Vec<(String, Vec<f64>)> = names.into_iter().map(|n| (n, Vec::new())).collect();
    loop {
        let mut values: Vec<u64> = p
            .named
            .iter()
            .map(|(_, pid)| procfs::rss_kb(*pid, false, p.page_kb))
            .collect();
        let backends = procfs::children(p.postmaster);
        let pg = std::iter::once(p.postmaster).chain(backends);
        values.push(pg.map(|pid| procfs::rss_kb(pid, true, p.page_kb)).sum());
        let mut text = String::new();
        for ((name, s), kb) in series.iter_mut().zip(values) {
            s.push(kb as f64);
            text.push_str(&format!("{name}\t{kb}\n"));
        }
        append(&file, &text);
        if !tick(&mut stopped, Duration::from_secs(1)).await {
            return series;
        }
    }
}

async fn pressure(file: PathBuf, mut stopped: watch::Receiver<bool>) -> Vec<(f64, Pressure)> {
    let mut samples = Vec::new();
    if procfs::pressure().is_none() {
        return samples; // a kernel without PSI
    }
    append(&file, "t\tcpu_some_us\tio_some_us\tio_full_us\n");
    loop {
        if let Some(p) = procfs::pressure() {
            let t = epoch_now();
            let full = p.io_full_us.map(|v| v.to_string()).unwrap_or_default();
            append(
                &file,
                &format!("{t:.6}\t{}\t{}\t{full}\n", p.cpu_some_us, p.io_some_us),
            );
            samples.push((t, p));
        }
        if !tick(&mut stopped, Duration::from_secs(1)).await {
            return samples;
        }
    }
}

/// On its own thread: an fsync blocks it, and must not block the other samplers.
fn flush(probe: &Path, out: &Path, stop: &AtomicBool) -> Vec<(f64, f64)> {
    let mut samples = Vec::new();
    let Ok(mut f) = File::create(probe) else {
        eprintln!("bench: flush probe: cannot create {}", probe.display());
        return samples;
    };
    let block = [b'x'; 4096];
    while !stop.load(Ordering::Relaxed) {
        let (t, start) = (epoch_now(), std::time::Instant::now());
        let done = f
            .rewind()
            .and_then(|()| f.write_all(&block))
            .and_then(|()| f.sync_all());
        if let Err(e) = done {
            eprintln!("bench: flush probe: {e}");
            break;
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        append(out, &format!("{t:.3}\t{ms:.3}\n"));
        samples.push((t, ms));
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(probe);
    samples
}

/// The file is created only once the sampler runs, so that loadgen reports a sampler that did
/// not start as a missing file, not as a phase without rollovers.
async fn rollovers(dir: PathBuf, file: PathBuf, mut stopped: watch::Receiver<bool>) {
    let mut seen = broker::wal_files(&dir);
    append(&file, "");
    while tick(&mut stopped, Duration::from_millis(50)).await {
        let now = broker::wal_files(&dir);
        let new = now.difference(&seen).count();
        if new > 0 {
            append(&file, &format!("{:.6}\n", epoch_now()).repeat(new));
        }
        seen = now;
    }
}

async fn backlog(
    api: Arc<Api>,
    outboxes: Vec<(String, String)>,
    file: PathBuf,
    mut stopped: watch::Receiver<bool>,
) -> Vec<Backlog> {
    let start = std::time::Instant::now();
    let mut conns = Vec::new();
    for (_, url) in &outboxes {
        conns.push(db::connect(url).await);
    }
    let header: Vec<String> = outboxes
        .iter()
        .map(|(s, _)| format!("outbox_{s}"))
        .collect();
    append(&file, &format!("t_s\tqueued\t{}\n", header.join("\t")));
    let mut samples = Vec::new();
    loop {
        let queued = api.queued().await;
        let mut outbox = Vec::new();
        for (conn, (_, url)) in conns.iter_mut().zip(&outboxes) {
            // A dropped session is opened again at the next sample.
            if conn.is_none() {
                *conn = db::connect(url).await;
            }
            let count = match conn.as_mut() {
                Some(c) => db::unpublished(c).await,
                None => None,
            };
            if count.is_none() {
                *conn = None;
            }
            outbox.push(count);
        }
        let sample = Backlog {
            t_s: start.elapsed().as_secs(),
            queued,
            outbox,
        };
        append(&file, &backlog_line(&sample));
        samples.push(sample);
        if !tick(&mut stopped, Duration::from_secs(5)).await {
            return samples;
        }
    }
}

fn or_unknown<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

pub fn backlog_line(b: &Backlog) -> String {
    let outbox: Vec<String> = b.outbox.iter().map(|v| or_unknown(*v)).collect();
    format!(
        "{}\t{}\t{}\n",
        b.t_s,
        or_unknown(b.queued),
        outbox.join("\t")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_count_is_written_as_a_question_mark() {
        let b = Backlog {
            t_s: 15,
            queued: None,
            outbox: vec![Some(3), None, Some(0)],
        };
        assert_eq!(backlog_line(&b), "15\t?\t3\t?\t0\n");
    }

    #[tokio::test]
    async fn the_memory_sampler_records_until_stopped() {
        let dir = std::env::temp_dir().join(format!("loadgen-rss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        let p = Processes {
            named: vec![("me".into(), me)],
            postmaster: me,
            page_kb: 4,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(rss(p, dir.join("rss.tsv"), stopped));
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(true).unwrap();
        let series = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        let text = std::fs::read_to_string(dir.join("rss.tsv")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(series[0].0, "me");
        assert!(series[0].1[0] > 0.0);
        assert!(
            text.starts_with("me\t") && text.contains("postgres_anon\t"),
            "{text}"
        );
    }
}
