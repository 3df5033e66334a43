//! The fleet under test: a private PostgreSQL cluster and RabbitMQ node (or two independent
//! nodes, for failover), and each service as one or more `fleet-node` processes on free ports.
//! Instances of one service share its database and queue, as replicas in production do.
//!
//! Service logs (JSON lines) go to `<scratch>/<service>-<n>.log`; when a test fails, the fleet
//! prints the end of every log as it is dropped, and nothing otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::StatusCode;

use saga_common::configuration::RetrySettings;

use super::postgres::Postgres;
use super::rabbitmq::RabbitMq;
use super::{Process, Scratch, tail, within};

pub use super::api::{Api, CallError};

/// The operator token every service takes (`APP__AUTH__OPERATOR_TOKEN`); the harness sends it
/// on every call (orders, accounts, products and the admin routes).
pub const ADMIN_TOKEN: &str = "fault-tests-admin-token-0123456789";
/// The HS256 secret of customer tokens (`APP__AUTH__JWT_SECRET`): configured as production
/// would be, though the harness itself calls as the operator.
const JWT_SECRET: &str = "fault-tests-jwt-secret-0123456789-0123456789";

/// The three services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Orchestrator,
    Payment,
    Inventory,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Orchestrator, Service::Payment, Service::Inventory];

    pub fn name(self) -> &'static str {
        match self {
            Service::Orchestrator => "orchestrator",
            Service::Payment => "payment",
            Service::Inventory => "inventory",
        }
    }

    fn database(self) -> String {
        format!("saga_{}", self.name())
    }
}

/// How a scenario wants its fleet.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// Processes per service.
    pub instances: usize,
    /// Retries of transient failures, for every service (the checker needs their delay queues).
    pub retry: RetrySettings,
    /// Extra `APP__...` settings for every instance of a service.
    pub settings: BTreeMap<Service, Vec<(String, String)>>,
    /// A second, independent RabbitMQ node (not clustered with the first), given to every
    /// service after the first as `APP__AMQP__URL="<first>,<second>"`.
    pub second_rabbitmq: bool,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            instances: 1,
            retry: RetrySettings::default(),
            settings: BTreeMap::new(),
            second_rabbitmq: false,
        }
    }
}

impl FleetOptions {
    pub fn with_instances(mut self, instances: usize) -> Self {
        self.instances = instances;
        self
    }

    /// Retries every `base_delay_ms`, doubling, instead of every second.
    pub fn with_retry_base_delay(mut self, base_delay_ms: u64) -> Self {
        self.retry.base_delay_ms = base_delay_ms;
        self
    }

    /// Starts a second RabbitMQ node and gives the services both addresses (see
    /// [`FleetOptions::second_rabbitmq`]).
    pub fn with_second_rabbitmq(mut self) -> Self {
        self.second_rabbitmq = true;
        self
    }

    /// Adds `APP__<key>=value` for `service`.
    pub fn with_setting(mut self, service: Service, key: &str, value: impl ToString) -> Self {
        self.settings
            .entry(service)
            .or_default()
            .push((format!("APP__{key}"), value.to_string()));
        self
    }
}

/// One service process, restartable on the same port, database and log.
pub struct Node {
    pub service: Service,
    pub port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    process: Option<Process>,
}

impl Node {
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        assert!(self.process.is_none(), "{} is running", self.label());
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fleet-node"));
        // A clean environment: nothing from the developer's shell (RUST_LOG, APP__*, an
        // APP_CONFIG_FILE) may change what the test runs.
        command
            .env_clear()
            .arg(self.service.name())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.process = Some(Process::spawn(&self.label(), command, &self.log));
    }

    fn label(&self) -> String {
        format!("{} on port {}", self.service.name(), self.port)
    }
}

/// The whole fleet. Dropping it kills every process and removes the scratch directory (fields
/// drop in declaration order: services, then the servers they use, then their files).
pub struct Fleet {
    pub nodes: Vec<Node>,
    /// What the services retry with.
    pub retry: RetrySettings,
    pub rabbitmq: RabbitMq,
    /// The node the services fail over to, with [`FleetOptions::with_second_rabbitmq`].
    pub second_rabbitmq: Option<RabbitMq>,
    pub postgres: Postgres,
    pub api: Api,
    scratch: Scratch,
}

impl Fleet {
    /// Starts the servers and every service, and waits until all are ready.
    pub async fn start(options: FleetOptions) -> Self {
        let instances = options.instances;
        let mut fleet = Self::prepare(options).await;
        // The first instance of every service migrates its database before the others start:
        // two instances migrating one fresh database at once race (see
        // `two_instances_of_a_service_can_start_at_once_on_a_fresh_database`).
        for wave in 0..instances {
            let indices: Vec<usize> = (0..fleet.nodes.len())
                .filter(|&i| fleet.instance_number(i) == wave)
                .collect();
            for &index in &indices {
                fleet.nodes[index].spawn();
            }
            for &index in &indices {
                fleet.wait_ready_at(index).await;
            }
        }
        fleet
    }

    /// Starts the servers and creates the databases; no service runs yet.
    async fn prepare(options: FleetOptions) -> Self {
        let retry = options.retry.clone();
        let scratch = Scratch::new();
        let (postgres, rabbitmq, second_rabbitmq) = tokio::join!(
            Postgres::start_new(&scratch),
            RabbitMq::start_new(&scratch),
            async {
                if options.second_rabbitmq {
                    Some(RabbitMq::start_named(&scratch, "rabbitmq-second").await)
                } else {
                    None
                }
            }
        );
        // One address, as production's single node, unless a second node is asked for.
        let amqp_url = match &second_rabbitmq {
            Some(second) => format!("{},{}", rabbitmq.amqp_url(), second.amqp_url()),
            None => rabbitmq.amqp_url(),
        };
        let log_level = std::env::var("FAULTS_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let mut nodes = Vec::new();
        for service in Service::ALL {
            let database_url = postgres.create_database(&service.database()).await;
            for instance in 0..options.instances {
                let port = super::free_port();
                let mut env = vec![
                    ("APP__APPLICATION__HOST".to_owned(), "127.0.0.1".to_owned()),
                    ("APP__APPLICATION__PORT".to_owned(), port.to_string()),
                    ("APP__DATABASE__URL".to_owned(), database_url.clone()),
                    ("APP__AMQP__URL".to_owned(), amqp_url.clone()),
                    ("APP__LOG_LEVEL".to_owned(), log_level.clone()),
                    // Reconnect within a second of the broker's return instead of up to 10 s
                    // later: the scenarios measure recovery, not the backoff cap.
                    (
                        "APP__AMQP__MAX_RECONNECT_DELAY_MS".to_owned(),
                        "1000".to_owned(),
                    ),
                    ("APP__SHUTDOWN_GRACE_MS".to_owned(), "3000".to_owned()),
                    (
                        "APP__AUTH__OPERATOR_TOKEN".to_owned(),
                        ADMIN_TOKEN.to_owned(),
                    ),
                    ("APP__AUTH__JWT_SECRET".to_owned(), JWT_SECRET.to_owned()),
                    (
                        "APP__RETRY__MAX_ATTEMPTS".to_owned(),
                        retry.max_attempts.to_string(),
                    ),
                    (
                        "APP__RETRY__BASE_DELAY_MS".to_owned(),
                        retry.base_delay_ms.to_string(),
                    ),
                    (
                        "APP__RETRY__MAX_DELAY_MS".to_owned(),
                        retry.max_delay_ms.to_string(),
                    ),
                ];
                env.extend(options.settings.get(&service).cloned().unwrap_or_default());
                nodes.push(Node {
                    service,
                    port,
                    env,
                    log: scratch
                        .path()
                        .join(format!("{}-{instance}.log", service.name())),
                    process: None,
                });
            }
        }
        let api = Api::new(
            &nodes
                .iter()
                .filter(|n| n.service == Service::Orchestrator)
                .map(Node::base_url)
                .collect::<Vec<_>>(),
            &nodes
                .iter()
                .find(|n| n.service == Service::Payment)
                .expect("a payment node")
                .base_url(),
            &nodes
                .iter()
                .find(|n| n.service == Service::Inventory)
                .expect("an inventory node")
                .base_url(),
        );
        Self {
            nodes,
            retry,
            rabbitmq,
            second_rabbitmq,
            postgres,
            api,
            scratch,
        }
    }

    /// Which instance of its service node `index` is (0 for the first).
    fn instance_number(&self, index: usize) -> usize {
        let service = self.nodes[index].service;
        self.nodes[..index]
            .iter()
            .filter(|n| n.service == service)
            .count()
    }

    /// Starts every instance at once, without waiting for the first to migrate.
    pub async fn start_all_at_once(options: FleetOptions) -> Self {
        let mut fleet = Self::prepare(options).await;
        for node in &mut fleet.nodes {
            node.spawn();
        }
        for index in 0..fleet.nodes.len() {
            fleet.wait_ready_at(index).await;
        }
        fleet
    }

    fn index(&self, service: Service, instance: usize) -> usize {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.service == service)
            .nth(instance)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no {} instance {instance}", service.name()))
    }

    /// SIGKILL: no shutdown code runs; unacknowledged deliveries go back to the queue.
    pub async fn kill(&mut self, service: Service, instance: usize) {
        let index = self.index(service, instance);
        let mut process = self.nodes[index]
            .process
            .take()
            .unwrap_or_else(|| panic!("{} is not running", service.name()));
        process.stop(Signal::SIGKILL, Duration::from_secs(10)).await;
    }

    /// SIGTERM: the service's own graceful shutdown; panics unless it exits 0 in time.
    pub async fn terminate(&mut self, service: Service, instance: usize) {
        let index = self.index(service, instance);
        let mut process = self.nodes[index]
            .process
            .take()
            .unwrap_or_else(|| panic!("{} is not running", service.name()));
        let status = process.stop(Signal::SIGTERM, Duration::from_secs(15)).await;
        assert!(
            status.success(),
            "{} did not stop cleanly on SIGTERM ({status}):\n{}",
            service.name(),
            tail(process.log(), 30)
        );
    }

    /// Starts a stopped instance again (same port, database and log) and waits until it is ready.
    pub async fn restart(&mut self, service: Service, instance: usize) {
        let index = self.index(service, instance);
        self.nodes[index].spawn();
        self.wait_ready_at(index).await;
    }

    /// Waits until every running service answers `/health/ready` with 200.
    pub async fn wait_all_ready(&mut self) {
        for index in 0..self.nodes.len() {
            if self.nodes[index].process.is_some() {
                self.wait_ready_at(index).await;
            }
        }
    }

    async fn wait_ready_at(&mut self, index: usize) {
        let client = self.api.client.clone();
        let node = &mut self.nodes[index];
        let url = format!("{}/health/ready", node.base_url());
        let label = node.label();
        let ready = within(Duration::from_secs(60), Duration::from_millis(100), || {
            // A crashed service fails the wait at once, with its log, rather than at the timeout.
            if let Some(process) = node.process.as_mut() {
                process.assert_running();
            }
            let request = client.get(&url).send();
            async move {
                let response = request.await.ok()?;
                (response.status() == StatusCode::OK).then_some(())
            }
        })
        .await;
        assert!(
            ready.is_some(),
            "{label} was not ready within 60 s:\n{}",
            tail(&node.log, 30)
        );
    }

    /// URL of a service's database in the private cluster.
    pub fn database_url(&self, service: Service) -> String {
        self.postgres.url(&service.database())
    }

    /// The scratch directory: logs, data, and the mark of every process this fleet started.
    pub fn scratch(&self) -> &std::path::Path {
        self.scratch.path()
    }

    /// Runs `sql` on a service's database, as an operator (or a failing disk) would.
    pub async fn execute_sql(&self, service: Service, sql: &str) {
        use sea_orm::ConnectionTrait;
        let url = self.database_url(service);
        super::bounded(&format!("`{sql}`"), Duration::from_secs(30), async {
            let db = super::postgres::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("cannot reach {}'s database: {e}", service.name()));
            db.execute_unprepared(sql)
                .await
                .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
            let _ = db.close().await;
        })
        .await;
    }

    /// The end of every log: what a failing test prints.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out += &format!(
                "\n===== {} ({}) =====\n{}\n",
                node.label(),
                node.log.display(),
                tail(&node.log, lines)
            );
        }
        let mut servers = vec![
            ("postgres", self.postgres.log().to_owned()),
            ("rabbitmq", self.rabbitmq.log().to_owned()),
            ("rabbitmq node log", self.rabbitmq.node_log()),
        ];
        if let Some(second) = &self.second_rabbitmq {
            servers.push(("second rabbitmq", second.log().to_owned()));
            servers.push(("second rabbitmq node log", second.node_log()));
        }
        for (name, path) in servers {
            out += &format!(
                "\n===== {name} ({}) =====\n{}\n",
                path.display(),
                tail(&path, lines)
            );
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\nThe fleet's logs ({}; set FAULTS_KEEP=1 to keep them):{}",
                self.scratch.path().display(),
                self.log_tails(25)
            );
        }
    }
}

/// The work queues this fleet consumes: the saga's. The fault fleet runs no notification
/// service, so `notification.events` (declared by every service) only fills up here, and is
/// left out of the consumer, quiet and dead-letter checks.
pub fn saga_work_queues() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    saga_common::messaging::topology::work_queues()
        .into_iter()
        .filter(|(queue, _, _)| *queue != saga_common::messaging::topology::NOTIFICATION_EVENTS)
        .collect()
}
