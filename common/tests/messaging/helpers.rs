//! `start()`: the shared consumer on `payment.commands` of a private vhost, with a scripted
//! handler and its own database (outbox and inbox tables only).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sea_orm::{ConnectionTrait, DatabaseTransaction};
use sea_orm_migration::prelude::*;
use serde_json::json;
use uuid::Uuid;

use saga_common::configuration::{AmqpSettings, DatabaseSettings, OutboxSettings, RetrySettings};
use saga_common::contracts::{self, Payload};
use saga_common::messaging::inbox::{self, DedupWindow};
use saga_common::messaging::outbox::{Enqueued, RelayWakeup};
use saga_common::messaging::{
    BrokerStatus, Envelope, HandleError, MessageHandler, Messaging, OutgoingMessage, topology,
};
use saga_common::shutdown::Shutdown;
use saga_common::testing::{
    PATIENCE, TestVhost, create_database, eventually, init_test_telemetry, publish_envelope,
};

/// Fails transiently on its first two deliveries, then succeeds.
pub const FLAKY: &str = "test.flaky";
/// Always fails transiently.
pub const ALWAYS_TRANSIENT: &str = "test.always_transient";
/// Fails permanently.
pub const PERMANENT: &str = "test.permanent";
/// Succeeds when the database answers a `SELECT 1`, fails transiently when it does not.
pub const NEEDS_DATABASE: &str = "test.needs_database";

/// Sleeps a moment, then succeeds: deliveries pile up behind it and form the next batch.
pub const SLOW: &str = "test.slow";
/// Succeeds.
pub const OK: &str = "test.ok";
/// Inbox consumer name under which the handler records each message it applied.
pub const APPLIED: &str = "scripted";

/// Each call of the handler: which message, when, in how large a batch, and whether it
/// succeeded.
#[derive(Debug, Clone)]
pub struct Call {
    pub message_id: Uuid,
    pub at: Instant,
    pub batch: usize,
    pub succeeded: bool,
}

pub struct Scripted {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl MessageHandler for Scripted {
    /// Each message in order, stopping at the first failure; a message that succeeds is
    /// recorded in the inbox as `scripted`, so what a batch committed can be counted.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        batch: &[Envelope],
    ) -> Result<Enqueued, HandleError> {
        for envelope in batch {
            self.one(txn, envelope, batch.len()).await?;
        }
        Ok(Enqueued::default())
    }
}

impl Scripted {
    async fn one(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
        batch: usize,
    ) -> Result<(), HandleError> {
        let at = Instant::now();
        let earlier = self
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.message_id == envelope.message_id)
            .count();
        let outcome = match envelope.message_type.as_str() {
            FLAKY if earlier < 2 => Err(HandleError::Transient(format!("flaky #{earlier}"))),
            FLAKY | OK => Ok(()),
            SLOW => {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                Ok(())
            }
            ALWAYS_TRANSIENT => Err(HandleError::Transient("always transient".into())),
            PERMANENT => Err(HandleError::permanent("invalid_payload", "never valid")),
            NEEDS_DATABASE => txn
                .execute_unprepared("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|error| HandleError::Transient(format!("database down: {error}"))),
            other => Err(HandleError::unknown_type(other)),
        };
        let outcome = match outcome {
            Ok(()) => record_applied(txn, envelope).await,
            failed => failed,
        };
        self.calls.lock().unwrap().push(Call {
            message_id: envelope.message_id,
            at,
            batch,
            succeeded: outcome.is_ok(),
        });
        outcome
    }
}

/// Records that the handler applied `envelope`, in the inbox as consumer [`APPLIED`].
async fn record_applied(txn: &DatabaseTransaction, envelope: &Envelope) -> Result<(), HandleError> {
    if let Some(part) = inbox::claim_part(APPLIED, std::slice::from_ref(envelope))? {
        part.execute(txn).await?;
    }
    Ok(())
}

struct SharedTables;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for SharedTables {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(saga_common::migration::CREATE_OUTBOX),
            Box::new(saga_common::migration::CREATE_INBOX),
            Box::new(saga_common::migration::SPLIT_OUTBOX_PENDING),
        ]
    }
}

pub struct Harness {
    pub vhost: TestVhost,
    pub database_url: String,
    pub db: sea_orm::DatabaseConnection,
    /// The service's relay wake-up: what a committing transaction would call.
    pub wakeup: RelayWakeup,
    calls: Arc<Mutex<Vec<Call>>>,
    shutdown: Shutdown,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

pub const SERVICE: &str = "test-service";
pub const QUEUE: &str = topology::PAYMENT_COMMANDS;

/// Starts consuming `payment.commands` with `retry`, and waits until the consumer runs.
pub async fn start(retry: RetrySettings) -> Harness {
    start_with(retry, AmqpSettings::default()).await
}

/// [`start`] with other AMQP settings (the URL is the test vhost's in any case; `urls`, when
/// given, come before it).
pub async fn start_with(retry: RetrySettings, amqp: AmqpSettings) -> Harness {
    start_windowed(retry, amqp, DedupWindow::default()).await
}

/// [`start_with`] with a deduplication window of its own.
pub async fn start_windowed(
    retry: RetrySettings,
    amqp: AmqpSettings,
    dedup_window: DedupWindow,
) -> Harness {
    init_test_telemetry();
    let vhost = TestVhost::create().await;
    let outbox = OutboxSettings::default();
    consume(vhost, retry, amqp, outbox, dedup_window, &[]).await
}

/// Writes `waiting` to the outbox, as a crashed instance would leave it, then starts the service
/// with `outbox` settings: its relay finds them on its first scan.
pub async fn start_relaying(outbox: OutboxSettings, waiting: &[OutgoingMessage]) -> Harness {
    init_test_telemetry();
    let vhost = TestVhost::create().await;
    consume(
        vhost,
        retry(3, 100),
        AmqpSettings::default(),
        outbox,
        DedupWindow::default(),
        waiting,
    )
    .await
}

/// Publishes a message of each of `backlog`'s types to the queue first, and only then starts
/// consuming: the consumer finds them all waiting. Returns them in publishing order.
pub async fn start_with_backlog(
    retry: RetrySettings,
    amqp: AmqpSettings,
    backlog: &[&str],
) -> (Harness, Vec<Envelope>) {
    init_test_telemetry();
    let vhost = TestVhost::create().await;
    {
        let connection =
            lapin::Connection::connect(&vhost.amqp_url, lapin::ConnectionProperties::default())
                .await
                .unwrap();
        let channel = connection.create_channel().await.unwrap();
        topology::declare(&channel).await.unwrap();
        let _ = connection.close(200, "declared".into()).await;
    }
    let mut sent = Vec::new();
    for message_type in backlog {
        sent.push(send_to(&vhost, message_type).await);
    }
    let outbox = OutboxSettings::default();
    let window = DedupWindow::default();
    (consume(vhost, retry, amqp, outbox, window, &[]).await, sent)
}

async fn consume(
    vhost: TestVhost,
    retry: RetrySettings,
    amqp: AmqpSettings,
    outbox: OutboxSettings,
    dedup_window: DedupWindow,
    waiting: &[OutgoingMessage],
) -> Harness {
    let database_url = create_database("common").await;
    let settings = DatabaseSettings {
        url: database_url.clone().into(),
        max_connections: 4,
        min_connections: 1,
        acquire_timeout_ms: 1_000,
        check_idle_after_ms: 1_000,
    };
    let db = saga_common::db::connect(&settings).await.unwrap();
    SharedTables::up(&db, None).await.unwrap();
    // Left by an earlier instance: no relay is told of them; the first scan finds them.
    let _left_behind = saga_common::messaging::outbox::enqueue_all(&db, waiting)
        .await
        .unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let wakeup = RelayWakeup::default();
    let status = Arc::new(BrokerStatus::default());
    let shutdown = Shutdown::new();
    let messaging = Messaging {
        service: SERVICE.into(),
        amqp: AmqpSettings {
            url: vhost.amqp_url.clone().into(),
            // Addresses given are tried before the test vhost's (the failover test).
            urls: if amqp.urls.is_empty() {
                Vec::new()
            } else {
                let vhost_url = vhost.amqp_url.clone().into();
                amqp.urls.iter().cloned().chain([vhost_url]).collect()
            },
            ..amqp
        },
        outbox,
        retry,
        dedup_window,
        db: db.clone(),
        queue: QUEUE,
        handler: Arc::new(Scripted {
            calls: calls.clone(),
        }),
        status: status.clone(),
        wakeup: wakeup.clone(),
        grace: std::time::Duration::from_secs(2),
    };
    let running = tokio::spawn(messaging.run(shutdown.clone()));
    eventually("the consumer to run", PATIENCE, || async {
        status.consuming().then_some(())
    })
    .await;
    Harness {
        vhost,
        database_url,
        db,
        wakeup,
        calls,
        shutdown,
        running: Some(running),
    }
}

impl Harness {
    /// Publishes a message of `message_type` to `payment.commands`, as a producer would.
    pub async fn send(&self, message_type: &str) -> Envelope {
        send_to(&self.vhost, message_type).await
    }

    /// Publishes `envelope` to `payment.commands`, as a producer would.
    pub async fn send_envelope(&self, envelope: &Envelope) {
        publish(&self.vhost, envelope).await;
    }

    /// Publishes `bursts` × `burst` messages of `message_type` over one channel, a burst at a
    /// time, each burst confirmed before the next is sent: a stream that a running consumer
    /// takes in many small batches.
    pub async fn trickle(&self, message_type: &str, bursts: usize, burst: usize) -> Vec<Envelope> {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        let connection = lapin::Connection::connect(
            &self.vhost.amqp_url,
            lapin::ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut sent = Vec::with_capacity(bursts * burst);
        for _ in 0..bursts {
            let mut confirms = Vec::with_capacity(burst);
            for _ in 0..burst {
                let envelope = message(message_type);
                let confirm = channel
                    .basic_publish(
                        topology::COMMANDS_EXCHANGE.into(),
                        contracts::ChargePayment::TYPE.into(),
                        BasicPublishOptions::default(),
                        &serde_json::to_vec(&envelope).unwrap(),
                        saga_common::messaging::envelope::properties(&envelope, "test")
                            .with_delivery_mode(2),
                    )
                    .await
                    .unwrap();
                confirms.push(confirm);
                sent.push(envelope);
            }
            for confirm in confirms {
                assert!(confirm.await.unwrap().is_ack());
            }
        }
        let _ = connection.close(200, "sent".into()).await;
        sent
    }

    /// Stops the consumer and waits until its connection is closed: whatever it had not
    /// acknowledged is back in the queue then.
    pub async fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(running) = self.running.take() {
            tokio::time::timeout(PATIENCE, running)
                .await
                .expect("the consumer to stop")
                .unwrap();
        }
    }

    /// Every call of the handler so far, in order.
    pub fn all_calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// How many times the handler's work on `message_id` was committed.
    pub async fn committed(&self, message_id: Uuid) -> i64 {
        let row = self
            .db
            .query_one_raw(saga_common::db::stmt(
                "SELECT count(*) AS n FROM inbox WHERE consumer = $1 AND message_id = $2",
                [APPLIED.into(), message_id.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "n").unwrap()
    }

    /// The handler's calls for one message, in order.
    pub fn calls(&self, message_id: Uuid) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.message_id == message_id)
            .cloned()
            .collect()
    }

    /// The DLQ's messages once there are `count` of them (peeked: they stay).
    pub async fn dead_letters(&self, count: usize) -> Vec<serde_json::Value> {
        let dlq = topology::dead_letter_queue(QUEUE);
        eventually(
            &format!("{count} message(s) in {dlq}"),
            PATIENCE,
            || async {
                let messages = self.vhost.peek(&dlq, 50).await;
                (messages.len() >= count).then_some(messages)
            },
        )
        .await
    }
}

/// A new message of `message_type`, with an empty payload.
pub fn message(message_type: &str) -> Envelope {
    Envelope::untyped(message_type, Uuid::now_v7(), "test", None, &json!({})).unwrap()
}

async fn send_to(vhost: &TestVhost, message_type: &str) -> Envelope {
    let envelope = message(message_type);
    publish(vhost, &envelope).await;
    envelope
}

async fn publish(vhost: &TestVhost, envelope: &Envelope) {
    publish_envelope(
        &vhost.amqp_url,
        &OutgoingMessage {
            exchange: topology::COMMANDS_EXCHANGE.into(),
            routing_key: contracts::ChargePayment::TYPE.into(),
            envelope: envelope.clone(),
        },
    )
    .await;
}

/// Millisecond-precise retry settings for tests.
pub fn retry(max_attempts: u32, base_delay_ms: u64) -> RetrySettings {
    RetrySettings {
        max_attempts,
        base_delay_ms,
        max_delay_ms: 10_000,
    }
}
