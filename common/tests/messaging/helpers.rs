//! `start()`: the shared consumer on `payment.commands` of a private vhost, with a scripted
//! handler and its own database (outbox and inbox tables only).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sea_orm::DatabaseConnection;
use sea_orm_migration::prelude::*;
use serde_json::json;
use uuid::Uuid;

use saga_common::configuration::{AmqpSettings, DatabaseSettings, OutboxSettings, RetrySettings};
use saga_common::messaging::outbox::RelayWakeup;
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

/// Each call of the handler: which message, when, and whether it succeeded.
#[derive(Debug, Clone)]
pub struct Call {
    pub message_id: Uuid,
    pub at: Instant,
    pub succeeded: bool,
}

pub struct Scripted {
    db: DatabaseConnection,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl MessageHandler for Scripted {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
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
            FLAKY => Ok(()),
            ALWAYS_TRANSIENT => Err(HandleError::Transient("always transient".into())),
            PERMANENT => Err(HandleError::permanent("invalid_payload", "never valid")),
            NEEDS_DATABASE => saga_common::db::ping(&self.db, std::time::Duration::from_secs(1))
                .await
                .then_some(())
                .ok_or_else(|| HandleError::Transient("database down".into())),
            other => Err(HandleError::unknown_type(other)),
        };
        self.calls.lock().unwrap().push(Call {
            message_id: envelope.message_id,
            at,
            succeeded: outcome.is_ok(),
        });
        outcome
    }
}

struct SharedTables;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for SharedTables {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(saga_common::migration::CreateOutbox),
            Box::new(saga_common::migration::CreateInbox),
        ]
    }
}

pub struct Harness {
    pub vhost: TestVhost,
    pub database_url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    shutdown: Shutdown,
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
    init_test_telemetry();
    let vhost = TestVhost::create().await;
    let database_url = create_database("common").await;
    let settings = DatabaseSettings {
        url: database_url.clone(),
        max_connections: 4,
        min_connections: 1,
        acquire_timeout_ms: 1_000,
    };
    let db = saga_common::db::connect(&settings).await.unwrap();
    SharedTables::up(&db, None).await.unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let status = Arc::new(BrokerStatus::default());
    let shutdown = Shutdown::new();
    let messaging = Messaging {
        service: SERVICE.into(),
        amqp: AmqpSettings {
            url: vhost.amqp_url.clone(),
            ..AmqpSettings::default()
        },
        outbox: OutboxSettings::default(),
        retry,
        db: db.clone(),
        queue: QUEUE,
        handler: Arc::new(Scripted {
            db,
            calls: calls.clone(),
        }),
        status: status.clone(),
        wakeup: RelayWakeup::default(),
        grace: std::time::Duration::from_secs(2),
    };
    tokio::spawn(messaging.run(shutdown.clone()));
    eventually("the consumer to run", PATIENCE, || async {
        status.consuming().then_some(())
    })
    .await;
    Harness {
        vhost,
        database_url,
        calls,
        shutdown,
    }
}

impl Harness {
    /// Publishes a message of `message_type` to `payment.commands`, as a producer would.
    pub async fn send(&self, message_type: &str) -> Envelope {
        let envelope =
            Envelope::new(message_type, Uuid::now_v7(), "test", None, &json!({})).unwrap();
        publish_envelope(
            &self.vhost.amqp_url,
            &OutgoingMessage {
                exchange: topology::COMMANDS_EXCHANGE.into(),
                routing_key: saga_common::contracts::command::CHARGE_PAYMENT.into(),
                envelope: envelope.clone(),
            },
        )
        .await;
        envelope
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

/// Millisecond-precise retry settings for tests.
pub fn retry(max_attempts: u32, base_delay_ms: u64) -> RetrySettings {
    RetrySettings {
        max_attempts,
        base_delay_ms,
        max_delay_ms: 10_000,
    }
}
