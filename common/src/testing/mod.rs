//! Test isolation against the real servers: every test gets its own PostgreSQL databases and
//! RabbitMQ vhost, so tests run in parallel and never see another's leftovers. A [`TestVhost`]
//! deletes itself when dropped; `deploy/test.sh` drops what crashed runs left.
//!
//! The servers are found through `SAGA_TEST_DATABASE_URL` (an admin URL),
//! `SAGA_TEST_AMQP_URL` (without vhost) and `SAGA_TEST_RABBITMQ_API`; the defaults are the
//! local servers with the stock credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::configuration::{AuthSettings, ServiceSettings};
use crate::service::{Application, Service, TaskFailed};
use crate::shutdown::Shutdown;

mod credentials;
mod lines;
mod mail;
mod messages;
mod metrics;
mod tls;

pub use credentials::*;
pub use lines::*;
pub use mail::*;
pub use messages::*;
pub use metrics::*;
pub use tls::*;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The admin connection URL (database `postgres`).
pub fn admin_database_url() -> String {
    env_or(
        "SAGA_TEST_DATABASE_URL",
        "postgres://postgres:postgres@127.0.0.1:5432/postgres",
    )
}

/// Creates an empty database and returns its URL.
pub async fn create_database(label: &str) -> String {
    let admin_url = admin_database_url();
    let name = format!("sagatest_{}_{label}", Uuid::new_v4().simple());
    let admin = Database::connect(&admin_url)
        .await
        .expect("cannot reach the test PostgreSQL (is ./deploy/test.sh used?)");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("cannot create a test database");
    let _ = admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// Drops a test database, terminating its connections.
pub async fn drop_database(url: &str) {
    as_admin(url, |name| {
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
    })
    .await;
}

/// Makes a test database refuse (or accept again) connections, and ends the ones it has: a
/// database outage that a test can start and end at will, without touching the server.
pub async fn set_database_reachable(url: &str, reachable: bool) {
    as_admin(url, |name| {
        format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {reachable}")
    })
    .await;
    if !reachable {
        end_database_connections(url).await;
    }
}

/// Ends every connection to a test database, as a server restart would, and waits until they
/// are gone; new ones are accepted.
pub async fn end_database_connections(url: &str) {
    as_admin(url, |name| {
        format!(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{name}'"
        )
    })
    .await;
}

/// Runs, as the administrator, the statement `sql` makes of the test database's name.
async fn as_admin(url: &str, sql: impl FnOnce(&str) -> String) {
    let name = url.rsplit('/').next().unwrap_or_default();
    let admin = Database::connect(&admin_database_url()).await.unwrap();
    admin.execute_unprepared(&sql(name)).await.unwrap();
    let _ = admin.close().await;
}

/// Runs one statement on a test database (e.g. to break a table, then mend it).
pub async fn execute(url: &str, sql: &str) {
    let db = Database::connect(url).await.unwrap();
    db.execute_unprepared(sql).await.unwrap();
    let _ = db.close().await;
}

/// Runs one query on a test database that answers one number, as `n` (`SELECT count(*) AS n ...`).
pub async fn number(url: &str, sql: &str) -> i64 {
    use sea_orm::FromQueryResult;
    #[derive(FromQueryResult)]
    struct N {
        n: i64,
    }
    let db = Database::connect(url).await.unwrap();
    let n = N::find_by_statement(crate::db::stmt(sql, []))
        .one(&db)
        .await
        .unwrap()
        .expect("no row")
        .n;
    let _ = db.close().await;
    n
}

/// A UUIDv7 as one made `ago` in the past would be: for backdated rows.
pub fn uuid_v7_ago(ago: Duration) -> Uuid {
    let time = std::time::SystemTime::now() - ago;
    let since = time.duration_since(std::time::UNIX_EPOCH).unwrap();
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        since.as_secs(),
        since.subsec_nanos(),
    ))
}

/// A private RabbitMQ vhost with full permissions for the test user.
pub struct TestVhost {
    pub name: String,
    /// AMQP URL into this vhost.
    pub amqp_url: String,
    pub api: RabbitApi,
}

impl TestVhost {
    pub async fn create() -> Self {
        let api = RabbitApi::from_env();
        let name = format!("sagatest-{}", Uuid::new_v4().simple());
        api.put(&format!("/api/vhosts/{name}"), serde_json::json!({}))
            .await;
        api.put(
            &format!("/api/permissions/{name}/{}", api.user),
            serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await;
        let base = env_or("SAGA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672");
        Self {
            amqp_url: format!("{}/{name}", base.trim_end_matches('/')),
            name,
            api,
        }
    }

    /// Deletes the vhost: every connection into it is closed by the broker.
    pub async fn delete(&self) {
        self.api.delete(&format!("/api/vhosts/{}", self.name)).await;
    }

    /// Messages in `queue` (ready ones), as the management API sees them.
    pub async fn queue_depth(&self, queue: &str) -> i64 {
        let info = self
            .api
            .get(&format!("/api/queues/{}/{queue}", self.name))
            .await;
        info.get("messages_ready")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + info
                .get("messages_unacknowledged")
                .and_then(Value::as_i64)
                .unwrap_or(0)
    }

    /// A queue's definition and statistics from the management API (`type`, `arguments`, ...).
    /// The statistics lag by seconds; use [`TestVhost::message_count`] for counts.
    pub async fn queue_info(&self, queue: &str) -> Value {
        self.api
            .get(&format!("/api/queues/{}/{queue}", self.name))
            .await
    }

    /// Ready messages in `queue` right now, asked over AMQP (the management statistics lag).
    pub async fn message_count(&self, queue: &str) -> u32 {
        use lapin::options::QueueDeclareOptions;
        let connection =
            lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default())
                .await
                .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = connection.close(200, "done".into()).await;
        declared.message_count()
    }

    /// Peeks at up to `count` messages of `queue` (they are requeued).
    pub async fn peek(&self, queue: &str, count: u32) -> Vec<Value> {
        let answer = self
            .api
            .post(
                &format!("/api/queues/{}/{queue}/get", self.name),
                serde_json::json!({"count": count, "ackmode": "ack_requeue_true", "encoding": "auto"}),
            )
            .await;
        answer.as_array().cloned().unwrap_or_default()
    }
}

/// Deletes the vhost when the test is done with it: every vhost holds broker file handles, and
/// the vhosts one full test run left behind could exhaust them and wedge the broker. Blocking
/// work in `drop`, so it runs on a thread with its own runtime; a 404 or no API is fine.
impl Drop for TestVhost {
    fn drop(&mut self) {
        let url = format!("{}/api/vhosts/{}", self.api.base, self.name);
        let (user, password) = (self.api.user.clone(), self.api.password.clone());
        let deleted = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let request = reqwest::Client::new()
                    .delete(url)
                    .basic_auth(user, Some(password))
                    .send();
                let _ = tokio::time::timeout(Duration::from_secs(30), request).await;
            });
        });
        let _ = deleted.join();
    }
}

/// A small client for the RabbitMQ management HTTP API.
#[derive(Clone)]
pub struct RabbitApi {
    base: String,
    user: String,
    password: String,
    client: reqwest::Client,
}

impl RabbitApi {
    pub fn from_env() -> Self {
        Self {
            base: env_or("SAGA_TEST_RABBITMQ_API", "http://127.0.0.1:15672"),
            user: env_or("SAGA_TEST_RABBITMQ_USER", "guest"),
            password: env_or("SAGA_TEST_RABBITMQ_PASSWORD", "guest"),
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .expect("RabbitMQ management API unreachable (is the management plugin on?)");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "management API answered {status}: {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn get(&self, path: &str) -> Value {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.send(self.client.put(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.send(self.client.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Value {
        self.send(self.client.delete(format!("{}{path}", self.base)))
            .await
    }
}

/// Polls `check` until it yields `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match eventually_or(timeout, check).await {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// As [`eventually`], but `None` on timeout, so the caller can say what it saw last.
pub async fn eventually_or<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Generous bound for asynchronous outcomes: tests must pass on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Log output for tests: silent unless `TEST_LOG` is set.
pub fn init_test_telemetry() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let sink = lifecycle_lines().clone();
        if std::env::var("TEST_LOG").is_ok() {
            crate::telemetry::init(crate::telemetry::subscriber("test", "info", sink.echoed()));
        } else {
            // The lifecycle lines only, kept for tests to read (`lifecycle_lines`).
            crate::telemetry::init(crate::telemetry::subscriber(
                "test",
                "off,saga_common::lifecycle=info",
                sink,
            ));
        }
    });
}

/// `defaults` made fit for a test: a free port, a fresh database, `vhost`, a short grace
/// period, the test operator token and JWT secret.
pub async fn service_settings(
    defaults: ServiceSettings,
    label: &str,
    vhost: &TestVhost,
) -> ServiceSettings {
    let mut settings = defaults;
    settings.application.port = 0;
    settings.database.url = create_database(label).await.into();
    settings.amqp.url = vhost.amqp_url.as_str().into();
    settings.shutdown_grace_ms = 2_000;
    // Orphan rows are never old enough here, so a message only the scan would find is never
    // published: a writer that forgot to hand its rows to the relay fails its test.
    settings.outbox.orphan_age_ms = 3_600_000;
    settings.auth = AuthSettings::with_secrets(OPERATOR_TOKEN, JWT_SECRET);
    // Every test client is 127.0.0.1: the limits stay on (the layer runs in every test) but
    // high enough that no test that is not about them is ever throttled.
    settings.rate_limit.per_address_per_second = 100_000;
    settings.rate_limit.per_address_burst = 100_000;
    settings.rate_limit.per_customer_per_second = 100_000;
    settings.rate_limit.per_customer_burst = 100_000;
    settings
}

/// Builds `S` as production does, runs it on its own task until `shutdown`, and waits until it
/// is ready. Returns its base address and the task.
pub async fn start<S: Service>(
    settings: S::Settings,
    shutdown: &Shutdown,
) -> (String, JoinHandle<Result<(), TaskFailed>>) {
    let app = Application::<S>::build(settings)
        .await
        .unwrap_or_else(|error| panic!("{} did not start: {error}", S::NAME));
    let address = format!("http://127.0.0.1:{}", app.port());
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    wait_ready(&reqwest::Client::new(), &address).await;
    (address, task)
}

/// Waits until the service at `address` answers its readiness probe with 200.
pub async fn wait_ready(client: &reqwest::Client, address: &str) {
    let url = format!("{address}/health/ready");
    eventually(&format!("{url} to answer 200"), PATIENCE, || async {
        let response = client.get(&url).send().await.ok()?;
        (response.status() == reqwest::StatusCode::OK).then_some(())
    })
    .await;
}

/// One service under test, alone on its own database and vhost; stopped when dropped.
pub struct TestService {
    pub address: String,
    /// Sends the operator token on every request ([`operator_client`]).
    pub client: reqwest::Client,
    /// Sends no credentials, for the 401 cases.
    pub anonymous: reqwest::Client,
    pub vhost: TestVhost,
    pub database_url: String,
    shutdown: Shutdown,
    /// Taken by [`TestService::stop`]; a test that panics first still stops the service on drop.
    task: Option<JoinHandle<Result<(), TaskFailed>>>,
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl TestService {
    /// `S` with [`service_settings`] and quick retries (3 attempts, 50 ms then 100 ms), changed
    /// by `configure` last.
    pub async fn spawn<S>(configure: impl FnOnce(&mut ServiceSettings)) -> Self
    where
        S: Service<Settings = ServiceSettings>,
    {
        init_test_telemetry();
        let vhost = TestVhost::create().await;
        let mut settings = service_settings(S::default_settings(), S::NAME, &vhost).await;
        settings.retry = crate::configuration::RetrySettings {
            max_attempts: 3,
            base_delay_ms: 50,
            max_delay_ms: 10_000,
        };
        configure(&mut settings);
        let database_url = settings.database.url.expose().to_owned();
        let shutdown = Shutdown::new();
        let (address, task) = start::<S>(settings, &shutdown).await;
        Self {
            address,
            client: operator_client(),
            anonymous: reqwest::Client::new(),
            vhost,
            database_url,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops the service, checks that it stopped cleanly, and removes its database and vhost.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            task.await
                .expect("the service task panicked")
                .expect("the service did not stop cleanly");
        }
        self.vhost.delete().await;
        drop_database(&self.database_url).await;
    }

    /// GET `/api/admin/dead-letters{query}` with the test token.
    pub async fn list_dead_letters(&self, query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/admin/dead-letters{query}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET /api/admin/dead-letters failed")
    }

    /// POST `/api/admin/dead-letters/replay` with the test token.
    pub async fn replay_dead_letters(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/admin/dead-letters/replay", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("POST /api/admin/dead-letters/replay failed")
    }

    /// DELETE `/api/admin/dead-letters/{message_id}` with the test token.
    pub async fn delete_dead_letter(&self, message_id: &str) -> reqwest::Response {
        self.client
            .delete(format!(
                "{}/api/admin/dead-letters/{message_id}",
                self.address
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("DELETE /api/admin/dead-letters failed")
    }

    /// A retention run now (or a dry run); the report, once it answered 200.
    pub async fn prune(&self, dry_run: bool) -> Value {
        let response = prune(&self.client, &self.address, dry_run).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Publishes a command onto the service's vhost, routed by its type.
    pub async fn send_command(&self, command: &crate::messaging::Envelope) {
        let message = crate::messaging::OutgoingMessage::command(command.clone());
        publish_envelope(&self.vhost.amqp_url, &message).await;
    }
}
