//! What the benchmark reads from /proc: a process's CPU ticks and resident memory, its
//! children, the machine's busy ticks and context switches, the kernel's pressure stall totals
//! (PSI) and a thread's own CPU time. The parsers take text, so the tests feed them examples;
//! the readers around them return `None` (or 0) for a process that is gone.

use std::fs;
use std::process::Command;

/// The fields of `/proc/PID/stat` the benchmark uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stat {
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
    /// CPU of children already reaped: PostgreSQL's backends that came and went.
    pub cutime: u64,
    pub cstime: u64,
}

/// Parses `/proc/PID/stat`. The command name, in parentheses, may hold spaces and parentheses,
/// so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        utime: n(11)?,
        stime: n(12)?,
        cutime: n(13)?,
        cstime: n(14)?,
    })
}

/// `/proc/PID/statm` as (resident, anonymous) KiB; anonymous is resident minus shared
/// (RssAnon), so that PostgreSQL's shared buffers are not counted once per backend.
pub fn parse_statm(text: &str, page_kb: u64) -> Option<(u64, u64)> {
    let mut f = text
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<u64>().ok());
    let resident = f.next()??;
    let shared = f.next()??;
    Some((
        resident * page_kb,
        resident.saturating_sub(shared) * page_kb,
    ))
}

/// The whole machine from `/proc/stat`: busy and total ticks (everyone's load) and context
/// switches since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Machine {
    pub busy: u64,
    pub total: u64,
    pub ctxt: u64,
}

pub fn parse_proc_stat(text: &str) -> Option<Machine> {
    let mut machine = Machine::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                // user nice system idle iowait irq softirq steal
                let v: Vec<u64> = f.take(8).filter_map(|v| v.parse().ok()).collect();
                let [user, nice, system, idle, iowait, irq, softirq, steal] = v[..] else {
                    return None;
                };
                machine.busy = user + nice + system + irq + softirq + steal;
                machine.total = machine.busy + idle + iowait;
            }
            Some("ctxt") => machine.ctxt = f.next()?.parse().ok()?,
            _ => {}
        }
    }
    (machine.total > 0).then_some(machine)
}

/// Pressure stall totals, microseconds since boot: some task waited for a core (cpu some), for
/// I/O (io some), every non-idle task waited for I/O (io full).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub cpu_some_us: u64,
    pub io_some_us: u64,
    pub io_full_us: Option<u64>,
}

/// The `total=` of the line starting with `kind` ("some" or "full") of a PSI file.
pub fn parse_psi_total(text: &str, kind: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(kind))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// The first field of `/proc/thread-self/schedstat`: nanoseconds this thread ran on a core.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok()
}

pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&read(&format!("/proc/{pid}/stat"))?)
}

/// User + system ticks of the process; 0 when it is gone.
pub fn cpu_ticks(pid: u32) -> u64 {
    stat(pid).map_or(0, |s| s.utime + s.stime)
}

/// Resident KiB of the process (or its anonymous part); 0 when it is gone.
pub fn rss_kb(pid: u32, anon: bool, page_kb: u64) -> u64 {
    read(&format!("/proc/{pid}/statm"))
        .and_then(|t| parse_statm(&t, page_kb))
        .map_or(
            0,
            |(resident, anon_kb)| if anon { anon_kb } else { resident },
        )
}

/// The process's children: from its own list where the kernel keeps one
/// (CONFIG_PROC_CHILDREN), else by the parent pid of every process.
pub fn children(pid: u32) -> Vec<u32> {
    if let Some(list) = read(&format!("/proc/{pid}/task/{pid}/children")) {
        return list
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat(p).is_some_and(|s| s.ppid == pid))
        .collect()
}

/// The process's title (PostgreSQL's backends: "postgres: USER DATABASE CLIENT STATE").
pub fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

pub fn machine() -> Option<Machine> {
    parse_proc_stat(&read("/proc/stat")?)
}

/// `None` on a kernel without PSI. Each file is read whole, so its lines are of one moment.
pub fn pressure() -> Option<Pressure> {
    let cpu = read("/proc/pressure/cpu")?;
    let io = read("/proc/pressure/io")?;
    Some(Pressure {
        cpu_some_us: parse_psi_total(&cpu, "some")?,
        io_some_us: parse_psi_total(&io, "some")?,
        io_full_us: parse_psi_total(&io, "full"),
    })
}

pub fn thread_cpu_ns() -> Option<u64> {
    parse_schedstat(&read("/proc/thread-self/schedstat")?)
}

/// The one-minute load average and the two after it, as `uptime` shows them.
pub fn load_average() -> String {
    read("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// A `getconf` value (CLK_TCK, PAGESIZE); `fallback` where getconf is missing.
pub fn getconf(name: &str, fallback: u64) -> u64 {
    Command::new("getconf")
        .arg(name)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_a_command_name_with_spaces() {
        let text = "4242 (tokio (rt) x) S 7 4242 4242 0 -1 4194560 100 0 0 0 \
                    1500 250 30 4 20 0 9 0 1000 0 0";
        let s = parse_stat(text).unwrap();
        assert_eq!(
            s,
            Stat {
                ppid: 7,
                utime: 1500,
                stime: 250,
                cutime: 30,
                cstime: 4
            }
        );
        assert_eq!(parse_stat("4242 (gone"), None);
    }

    #[test]
    fn statm_gives_resident_and_anonymous_kib() {
        assert_eq!(
            parse_statm("9000 2500 500 100 0 3000 0\n", 4),
            Some((10_000, 8_000))
        );
        assert_eq!(parse_statm("", 4), None);
    }

    #[test]
    fn proc_stat_gives_busy_total_and_context_switches() {
        let text = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n\
                    intr 12345\nctxt 987654\nbtime 1\n";
        let m = parse_proc_stat(text).unwrap();
        assert_eq!(m.busy, 100 + 5 + 50 + 3 + 2 + 1);
        assert_eq!(m.total, m.busy + 1000 + 20);
        assert_eq!(m.ctxt, 987_654);
    }

    #[test]
    fn psi_totals_are_read_by_line_kind() {
        let io = "some avg10=0.50 avg60=0.40 avg300=0.30 total=123456\n\
                  full avg10=0.10 avg60=0.05 avg300=0.01 total=7890\n";
        assert_eq!(parse_psi_total(io, "some"), Some(123_456));
        assert_eq!(parse_psi_total(io, "full"), Some(7890));
        // The cpu file of older kernels has no "full" line.
        assert_eq!(parse_psi_total("some avg10=0 total=5\n", "full"), None);
    }

    #[test]
    fn schedstat_gives_the_nanoseconds_on_a_core() {
        assert_eq!(parse_schedstat("123456789 5000 42\n"), Some(123_456_789));
    }

    #[test]
    fn this_process_is_readable() {
        let me = std::process::id();
        assert!(stat(me).is_some());
        assert!(rss_kb(me, false, 4) > 0);
        assert!(machine().is_some_and(|m| m.total >= m.busy));
    }
}
