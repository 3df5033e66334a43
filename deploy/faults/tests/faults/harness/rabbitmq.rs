//! A private RabbitMQ node: its own node name, ports, data, logs and config in the scratch
//! directory; only epmd (4369) is shared with the machine's node.
//!
//! `/usr/lib/rabbitmq/bin/rabbitmq-server` is started directly (the `/usr/sbin` wrapper writes
//! the machine node's log), and with `RABBITMQ_ALLOW_INPUT` it `exec`s the Erlang VM, so the
//! process held is the broker itself: SIGTERM stops it, SIGKILL crashes it, and a restart on the
//! same directories keeps durable queues. Checks use AMQP only (no management plugin).

use std::path::PathBuf;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use nix::sys::signal::Signal;

use super::{Process, RunAs, Scratch, within};

/// The longest one AMQP exchange of the harness (connect, declare, publish) may take.
pub const AMQP_CALL_LIMIT: Duration = Duration::from_secs(10);

const SERVER_SCRIPT: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

pub struct RabbitMq {
    pub node: String,
    pub amqp_port: u16,
    dist_port: u16,
    home: PathBuf,
    log: PathBuf,
    user: RunAs,
    process: Option<Process>,
}

impl RabbitMq {
    /// Lays out the node's directories and starts it.
    pub async fn start_new(scratch: &Scratch) -> Self {
        Self::start_named(scratch, "rabbitmq").await
    }

    /// [`RabbitMq::start_new`] with its directory and log named `name`, so that one scratch
    /// directory can hold several independent nodes.
    pub async fn start_named(scratch: &Scratch, name: &str) -> Self {
        assert!(
            std::path::Path::new(SERVER_SCRIPT).exists(),
            "{SERVER_SCRIPT} is missing (is rabbitmq-server installed?)"
        );
        let user = RunAs::system_user("rabbitmq");
        let home = scratch.private_dir(name, &user);
        for dir in ["mnesia", "log"] {
            std::fs::create_dir(home.join(dir)).expect("cannot create a RabbitMQ directory");
            user.take_ownership(&home.join(dir));
        }
        let files = [
            // Guest may log in from loopback only, which is where every client of this node is.
            ("rabbitmq.conf", "log.file.level = info\n".to_owned()),
            ("enabled_plugins", "[].\n".to_owned()),
            // Read instead of /etc/rabbitmq/rabbitmq-env.conf, which names the machine's node.
            ("rabbitmq-env.conf", String::new()),
            // The node and any CLI tool must share a cookie; a random one per node.
            (
                ".erlang.cookie",
                uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
            ),
        ];
        for (name, content) in files {
            let path = home.join(name);
            std::fs::write(&path, content).expect("cannot write a RabbitMQ file");
            user.take_ownership(&path);
        }
        {
            use std::os::unix::fs::PermissionsExt;
            // Erlang refuses a cookie others can read.
            std::fs::set_permissions(
                home.join(".erlang.cookie"),
                std::fs::Permissions::from_mode(0o400),
            )
            .expect("cannot restrict the cookie");
        }
        let mut node = Self {
            node: format!(
                "faults-{}@localhost",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            amqp_port: super::free_port(),
            dist_port: super::free_port(),
            log: scratch.path().join(format!("{name}.log")),
            home,
            user,
            process: None,
        };
        node.start().await;
        node
    }

    /// Starts the node on its directories and waits until it accepts AMQP connections.
    pub async fn start(&mut self) {
        assert!(self.process.is_none(), "RabbitMQ is already running");
        let home = &self.home;
        let mut command = self.user.command(SERVER_SCRIPT);
        command
            .env_clear()
            .current_dir(home)
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", home)
            .env("LANG", "C.UTF-8")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", home.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", home.join("log"))
            .env("RABBITMQ_CONFIG_FILE", home.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                home.join("enabled_plugins"),
            )
            .env("RABBITMQ_CONF_ENV_FILE", home.join("rabbitmq-env.conf"))
            .env("RABBITMQ_PID_FILE", home.join("rabbitmq.pid"))
            .env("RABBITMQ_ALLOW_INPUT", "true")
            // Distribution (for CLI tools) on loopback only, like the AMQP listener.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            // ALLOW_INPUT would give the VM an interactive shell; stdin is closed anyway.
            .arg("-noinput");
        self.process = Some(Process::spawn("rabbitmq", command, &self.log));
        let url = self.amqp_url();
        let up = within(Duration::from_secs(90), Duration::from_millis(200), || {
            if let Some(process) = self.process.as_mut() {
                process.assert_running();
            }
            let url = url.clone();
            async move {
                // Each attempt bounded: a connect the booting broker never answers is retried.
                let attempt = async {
                    let connection = Connection::connect(&url, ConnectionProperties::default())
                        .await
                        .ok()?;
                    let _ = connection.close(200, "ready".into()).await;
                    Some(())
                };
                tokio::time::timeout(Duration::from_secs(5), attempt)
                    .await
                    .ok()
                    .flatten()
            }
        })
        .await;
        assert!(
            up.is_some(),
            "RabbitMQ did not accept AMQP connections within 90 s:\n{}",
            super::tail(&self.log, 40)
        );
    }

    /// Graceful stop (SIGTERM): clients are disconnected, durable queues and persistent messages
    /// are kept for the next start.
    pub async fn stop(&mut self) {
        let mut process = self.process.take().expect("RabbitMQ is not running");
        process.stop(Signal::SIGTERM, Duration::from_secs(30)).await;
    }

    /// Crash (SIGKILL): no goodbye to clients, nothing flushed beyond what the broker had
    /// written; what it confirmed must still be there on the next start.
    pub async fn kill(&mut self) {
        let mut process = self.process.take().expect("RabbitMQ is not running");
        process.stop(Signal::SIGKILL, Duration::from_secs(10)).await;
    }

    /// AMQP URL of the default vhost, as guest.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// Ready messages in `queue`; `None` when the queue does not exist.
    pub async fn ready_messages(&self, queue: &str) -> Result<Option<u32>, String> {
        Ok(self.queue_state(queue).await?.map(|(ready, _)| ready))
    }

    /// Consumers of `queue`; `None` when the queue does not exist.
    pub async fn consumers(&self, queue: &str) -> Result<Option<u32>, String> {
        Ok(self
            .queue_state(queue)
            .await?
            .map(|(_, consumers)| consumers))
    }

    /// `(ready messages, consumers)` of `queue`, by a passive declare on a connection of its
    /// own. Bounded: the checker polls with it, and a call that hangs must become an error.
    async fn queue_state(&self, queue: &str) -> Result<Option<(u32, u32)>, String> {
        let url = self.amqp_url();
        let declared = async {
            let connection = Connection::connect(&url, ConnectionProperties::default())
                .await
                .map_err(|e| format!("cannot connect to RabbitMQ: {e}"))?;
            let outcome = async {
                let channel = connection.create_channel().await?;
                let queue = channel
                    .queue_declare(
                        queue.into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
                Ok::<_, lapin::Error>((queue.message_count(), queue.consumer_count()))
            }
            .await;
            Ok::<_, String>((connection, outcome))
        };
        let (connection, outcome) = tokio::time::timeout(AMQP_CALL_LIMIT, declared)
            .await
            .map_err(|_| format!("queue `{queue}`: no answer within {AMQP_CALL_LIMIT:?}"))??;
        // The answer is in; a goodbye the broker does not acknowledge is not worth waiting for.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            connection.close(200, "counted".into()),
        )
        .await;
        match outcome {
            Ok(state) => Ok(Some(state)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(format!("queue `{queue}`: {error}")),
        }
    }

    pub fn log(&self) -> &std::path::Path {
        &self.log
    }

    /// The node's own log, where it explains what it did with connections and queues.
    pub fn node_log(&self) -> PathBuf {
        self.home.join("log").join(format!("{}.log", self.node))
    }
}

/// The broker's answer to a passive declare of a queue that does not exist.
fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404)
}
