//! What every scenario stands on: a scratch directory, free ports, child processes that are
//! always reaped, bounded waits, and the private PostgreSQL, RabbitMQ and service processes built
//! from them.
//!
//! - [`postgres`]: a private cluster (`initdb` + `postgres`) on a free port.
//! - [`rabbitmq`]: a private RabbitMQ node on free ports, stoppable and restartable with its data.
//! - [`fleet`]: the services as `fleet-node` processes.
//! - [`api`]: the HTTP API client the tests use, as the operator.

pub mod api;
pub mod fleet;
pub mod postgres;
pub mod rabbitmq;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

/// Polls `check` every `every` until it yields `Some`, or gives up after `timeout`.
pub async fn within<T, F, Fut>(timeout: Duration, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Like [`within`], but a timeout is a test failure naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match within(timeout, Duration::from_millis(100), check).await {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Awaits `operation` for at most `limit`, failing the test naming `what` if it takes longer.
/// Every AMQP and SQL call of the harness goes through it: lapin's futures carry no deadline,
/// and one that never resolves would hang the whole test binary without a word.
pub async fn bounded<T>(what: &str, limit: Duration, operation: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, operation).await {
        Ok(value) => value,
        Err(_) => panic!("{what} took longer than {limit:?}"),
    }
}

/// A port nothing listens on right now. Each port is handed out once per test process, so two
/// servers of this process never race for one; another process could still take it in between,
/// which start-up then reports as a bind error.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Mutex::default);
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("no free port");
        let port = listener
            .local_addr()
            .expect("bound socket has an address")
            .port();
        let mut given = given
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

/// Names, in the environment of every process a test starts, the scratch directory it belongs
/// to: how a later run finds the processes of a run that was killed before its destructors ran.
const SCRATCH_ENV: &str = "FAULTS_SCRATCH";
const SCRATCH_PREFIX: &str = "fault-tests-";
/// The file naming the test process that owns a scratch directory.
const OWNER_FILE: &str = "owner";

/// A directory under the system temp dir, removed with everything in it on drop.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        sweep_orphans();
        let path =
            std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&path).expect("cannot create the scratch directory");
        let owner = process_identity("self").expect("/proc/self/stat is readable");
        std::fs::write(path.join(OWNER_FILE), owner).expect("cannot write the owner file");
        // The `postgres` and `rabbitmq` users must be able to reach their own subdirectories.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("cannot open up the scratch directory");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new subdirectory owned by `owner`, readable only by it.
    pub fn private_dir(&self, name: &str, owner: &RunAs) -> PathBuf {
        let dir = self.path.join(name);
        std::fs::create_dir_all(&dir).expect("cannot create a scratch subdirectory");
        owner.take_ownership(&dir);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("cannot restrict a scratch subdirectory");
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("FAULTS_KEEP").is_some() {
            eprintln!("FAULTS_KEEP: leaving {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `<pid> <start time>` of a process (`self` for this one): a pid alone may have been reused by
/// the time someone reads it back.
fn process_identity(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; nothing after its last `)` does.
    let after_name = stat.rsplit_once(')')?.1;
    // Fields 3, 4, ...: the start time is field 22.
    let start = after_name.split_whitespace().nth(19)?;
    let pid = stat.split_whitespace().next()?;
    Some(format!("{pid} {start}"))
}

/// Once per test process: kills what earlier runs left running when they were killed themselves
/// (their servers and services would otherwise hold ports and CPU for good) and removes their
/// directories. A directory whose owner still runs (another test binary at work) is left alone.
fn sweep_orphans() {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for dir in entries.filter_map(Result::ok).map(|e| e.path()) {
            let is_scratch = dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(SCRATCH_PREFIX));
            // No owner file: not one of ours, or one being created this instant.
            let Some(owner) = is_scratch
                .then(|| std::fs::read_to_string(dir.join(OWNER_FILE)).ok())
                .flatten()
            else {
                continue;
            };
            let pid = owner.split_whitespace().next().unwrap_or_default();
            if process_identity(pid).as_deref() == Some(owner.trim()) {
                continue;
            }
            kill_marked(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
}

/// SIGKILLs every process whose environment names `dir` as its scratch directory, and waits
/// (bounded) for them to be gone, so their files can be removed.
pub fn kill_marked(dir: &Path) {
    let marker = format!("{SCRATCH_ENV}={}\0", dir.display()).into_bytes();
    let marked = || -> Vec<Pid> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.windows(marker.len()).any(|w| w == marker.as_slice()))
            })
            .map(Pid::from_raw)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = marked();
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in pids {
            let _ = signal::kill(pid, Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Guards a scenario against hanging: if it is still running after `limit`, every process it
/// started is killed (so whatever it waits on fails, and it ends with its logs), and if even
/// that does not end it within another minute, the test binary exits: CI gets a failure with a
/// reason instead of a job that hangs until its own timeout. Disarmed when dropped.
pub struct Watchdog {
    _disarm: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    pub fn arm(name: &str, limit: Duration, scratch: &Path) -> Self {
        let (disarm, disarmed) = std::sync::mpsc::channel::<()>();
        let name = name.to_owned();
        let scratch = scratch.to_owned();
        std::thread::spawn(move || {
            use std::sync::mpsc::RecvTimeoutError;
            // Nothing is ever sent: the sender's drop is the signal.
            if disarmed.recv_timeout(limit) != Err(RecvTimeoutError::Timeout) {
                return;
            }
            eprintln!("scenario `{name}` still runs after {limit:?}: killing its processes");
            kill_marked(&scratch);
            if disarmed.recv_timeout(Duration::from_secs(60)) == Err(RecvTimeoutError::Timeout) {
                eprintln!("scenario `{name}` is stuck even without its processes; giving up");
                std::process::exit(101);
            }
        });
        Self { _disarm: disarm }
    }
}

/// The account a server runs under. `initdb`, `postgres` and RabbitMQ refuse to run as root, so
/// a root test process runs them as their Debian users; any other user runs them as itself.
#[derive(Clone, Debug)]
pub struct RunAs {
    ids: Option<(Uid, Gid)>,
}

impl RunAs {
    pub fn system_user(name: &str) -> Self {
        if !Uid::effective().is_root() {
            return Self { ids: None };
        }
        let user = User::from_name(name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("user `{name}` does not exist (is its server installed?)"));
        Self {
            ids: Some((user.uid, user.gid)),
        }
    }

    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            // std drops the supplementary groups when root switches uid.
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    pub fn take_ownership(&self, path: &Path) {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw()))
                .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
        }
    }
}

/// A child process whose output goes to a log file. Dropping it kills it (SIGKILL) and reaps it,
/// so no test leaves a process behind, even when it panics.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log`. Every log is
    /// kept at the root of its scratch directory, so the log's directory is the one the process
    /// is marked with (see [`SCRATCH_ENV`]).
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        if let Some(scratch) = log.parent() {
            command.env(SCRATCH_ENV, scratch);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let stderr = file.try_clone().expect("cannot share the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"))
    }

    pub fn signal(&self, signal: Signal) {
        // ESRCH: it exited already, which is what a signal is for anyway.
        let _ = signal::kill(self.pid(), signal);
    }

    /// `Some` once the process has exited (and is reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        within(timeout, Duration::from_millis(20), || {
            std::future::ready(self.exited())
        })
        .await
    }

    /// Sends `signal`, waits up to `grace` for the exit, then SIGKILLs. Returns how it ended.
    pub async fn stop(&mut self, signal: Signal, grace: Duration) -> ExitStatus {
        self.signal(signal);
        if let Some(status) = self.wait_exit(grace).await {
            return status;
        }
        eprintln!(
            "{} ignored {signal} for {grace:?}; sending SIGKILL",
            self.name
        );
        self.signal(Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{} survived SIGKILL for 30 s", self.name))
    }

    /// Panics, with the end of its log, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited ({status}); the end of its log:\n{}",
                self.name,
                tail(&self.log, 40)
            );
        }
    }

    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        self.signal(Signal::SIGKILL);
        // Bounded, blocking: a destructor cannot await, and SIGKILL takes effect at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The last `lines` lines of a log file (reads at most its last 64 KiB).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("({} does not exist)", path.display());
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or_default();
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

mod tests {
    use std::time::Duration;

    use super::{Process, Scratch, Watchdog, within};

    #[tokio::test]
    async fn a_watchdog_past_its_limit_kills_every_process_of_its_scratch_directory() {
        let scratch = Scratch::new();
        let mut command = std::process::Command::new("sleep");
        command.arg("600");
        let mut process = Process::spawn("sleep", command, &scratch.path().join("sleep.log"));
        let _watchdog = Watchdog::arm("watchdog test", Duration::from_millis(200), scratch.path());
        let ended = within(Duration::from_secs(10), Duration::from_millis(50), || {
            std::future::ready(process.exited())
        })
        .await;
        assert!(
            ended.is_some(),
            "the watchdog did not kill the marked process"
        );
    }
}
