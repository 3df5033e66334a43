//! A private PostgreSQL cluster: `initdb` into the scratch directory, then `postgres` on a free
//! port of 127.0.0.1 with trust authentication, its unix socket kept in the scratch directory too.
//! It can be stopped (a crash-like immediate shutdown) and started again on the same data.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

use super::{Process, RunAs, Scratch, within};

/// The newest server installed under `/usr/lib/postgresql/<major>/bin` (Debian's layout).
fn server_bin_dir() -> PathBuf {
    let root = PathBuf::from("/usr/lib/postgresql");
    let newest = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e} (is PostgreSQL installed?)", root.display()))
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("no PostgreSQL server under /usr/lib/postgresql");
    root.join(newest.to_string()).join("bin")
}

/// A small pool that gives up quickly: the harness would rather retry than hang on a stopped
/// server.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(2)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(2))
        .sqlx_logging(false);
    Database::connect(options).await
}

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    user: RunAs,
    process: Option<Process>,
}

impl Postgres {
    /// Creates the cluster and starts it.
    pub async fn start_new(scratch: &Scratch) -> Self {
        let user = RunAs::system_user("postgres");
        let home = scratch.private_dir("postgres", &user);
        let mut cluster = Self {
            port: super::free_port(),
            bin: server_bin_dir(),
            data: home.join("data"),
            socket_dir: home,
            log: scratch.path().join("postgres.log"),
            user,
            process: None,
        };
        cluster.init().await;
        cluster.start().await;
        cluster
    }

    async fn init(&self) {
        let mut initdb = self.user.command(self.bin.join("initdb"));
        initdb
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
            // Only the one-off sync of the new cluster is skipped: the server keeps fsync on,
            // since surviving a stop is what these tests check.
            .arg("--no-sync");
        let mut process = Process::spawn("initdb", initdb, &self.log);
        let status = process
            .wait_exit(Duration::from_secs(60))
            .await
            .expect("initdb did not finish within 60 s");
        assert!(
            status.success(),
            "initdb failed ({status}):\n{}",
            super::tail(&self.log, 30)
        );
    }

    /// Starts the server on its data directory and waits until it answers SQL.
    pub async fn start(&mut self) {
        assert!(self.process.is_none(), "PostgreSQL is already running");
        let mut server = self.user.command(self.bin.join("postgres"));
        server
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.socket_dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                // Six services of two instances, each with a pool of 8, and the checker.
                "-c",
                "max_connections=100",
                "-c",
                "shared_buffers=16MB",
            ]);
        self.process = Some(Process::spawn("postgres", server, &self.log));
        let url = self.admin_url();
        let answered = within(Duration::from_secs(30), Duration::from_millis(50), || {
            if let Some(process) = self.process.as_mut() {
                process.assert_running();
            }
            let url = url.clone();
            let attempt = async move {
                let db = connect(&url).await.ok()?;
                let ok = db.execute_unprepared("SELECT 1").await.is_ok();
                let _ = db.close().await;
                ok.then_some(())
            };
            async move {
                tokio::time::timeout(Duration::from_secs(5), attempt)
                    .await
                    .ok()
                    .flatten()
            }
        })
        .await;
        assert!(
            answered.is_some(),
            "PostgreSQL did not answer within 30 s:\n{}",
            super::tail(&self.log, 30)
        );
    }

    /// Immediate shutdown (SIGQUIT): every connection is cut and nothing is flushed beyond what
    /// the WAL already holds, like a crash; the next start recovers from the WAL.
    pub async fn stop(&mut self) {
        let mut process = self.process.take().expect("PostgreSQL is not running");
        process.stop(Signal::SIGQUIT, Duration::from_secs(20)).await;
    }

    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        super::bounded(
            &format!("creating database {name}"),
            Duration::from_secs(30),
            async {
                let admin = connect(&self.admin_url())
                    .await
                    .expect("cannot reach the private PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
                let _ = admin.close().await;
            },
        )
        .await;
        self.url(name)
    }

    pub fn log(&self) -> &std::path::Path {
        &self.log
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(process) = self.process.as_ref() {
            // SIGQUIT first: the postmaster takes its backends down with it, where a SIGKILL
            // (which `Process` sends next, on drop) would leave them to notice on their own.
            process.signal(Signal::SIGQUIT);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while let Some(process) = self.process.as_mut() {
                if process.exited().is_some() || std::time::Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
