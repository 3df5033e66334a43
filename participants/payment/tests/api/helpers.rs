//! `spawn_app()` and the `TestApp` every test drives.

use serde_json::{Value, json};
use uuid::Uuid;

use payment::startup::{Application, default_settings};
use saga_common::configuration::{AdminSettings, RetrySettings, ServiceSettings};
use saga_common::contracts::{self, Payload};
use saga_common::messaging::{Envelope, OutgoingMessage, topology};
use saga_common::shutdown::Shutdown;
use saga_common::testing::{
    ADMIN_TOKEN, PATIENCE, Tap, TestVhost, create_database, eventually, init_test_telemetry,
    publish_envelope,
};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub vhost: TestVhost,
    pub database_url: String,
    shutdown: Shutdown,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The service with the test admin token and quick retries (3 attempts, 50 ms then 100 ms).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`], with settings changed by `configure` first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut ServiceSettings)) -> TestApp {
    init_test_telemetry();
    let vhost = TestVhost::create().await;
    let mut settings = default_settings();
    settings.application.port = 0;
    settings.database.url = create_database("payment").await;
    settings.amqp.url = vhost.amqp_url.clone();
    settings.shutdown_grace_ms = 2_000;
    // Every writer hands its outbox rows to the relay on commit: a reply only the orphan scan
    // would find is never published here, and the test waiting for it fails.
    settings.outbox.orphan_age_ms = 3_600_000;
    settings.admin = AdminSettings::with_token(ADMIN_TOKEN);
    settings.retry = RetrySettings {
        max_attempts: 3,
        base_delay_ms: 50,
        max_delay_ms: 10_000,
    };
    configure(&mut settings);
    let database_url = settings.database.url.clone();
    let app = Application::build(settings)
        .await
        .expect("payment did not start");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = Shutdown::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let client = reqwest::Client::new();
    eventually("payment to be ready", PATIENCE, || async {
        let response = client
            .get(format!("{address}/health/ready"))
            .send()
            .await
            .ok()?;
        (response.status() == reqwest::StatusCode::OK).then_some(())
    })
    .await;
    TestApp {
        address,
        client,
        vhost,
        database_url,
        shutdown,
    }
}

impl TestApp {
    pub async fn put_account(&self, customer_id: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(format!("{}/api/accounts/{customer_id}", self.address))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_account(&self, customer_id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/accounts/{customer_id}", self.address))
            .send()
            .await
            .unwrap()
    }

    pub async fn balance(&self, customer_id: &str) -> i64 {
        let account: Value = self.get_account(customer_id).await.json().await.unwrap();
        account["balance_cents"].as_i64().unwrap()
    }

    pub async fn payments(&self, order_id: Uuid) -> Vec<Value> {
        self.client
            .get(format!("{}/api/payments?order_id={order_id}", self.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn fund(&self, customer_id: &str, balance_cents: i64) {
        let response = self
            .put_account(customer_id, &json!({ "balance_cents": balance_cents }))
            .await;
        assert!(response.status().is_success());
    }

    /// Binds a tap on the payment replies; bind before sending the command.
    pub async fn replies(&self) -> Tap {
        Tap::bind(
            &self.vhost.amqp_url,
            topology::REPLIES_EXCHANGE,
            &[
                contracts::PaymentCharged::TYPE,
                contracts::PaymentDeclined::TYPE,
                contracts::PaymentRefunded::TYPE,
            ],
        )
        .await
    }

    /// GET `/api/admin/dead-letters{query}` with the test token.
    pub async fn list_dead_letters(&self, query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/admin/dead-letters{query}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// The dead letters' page, once it holds `count` messages in all.
    pub async fn dead_letters(&self, count: u64) -> Value {
        eventually(&format!("{count} dead letter(s)"), PATIENCE, || async {
            let page: Value = self.list_dead_letters("").await.json().await.ok()?;
            (page["total"].as_u64() == Some(count)).then_some(page)
        })
        .await
    }

    /// POST `/api/admin/dead-letters/replay` with the test token.
    pub async fn replay_dead_letters(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/admin/dead-letters/replay", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
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
            .unwrap()
    }

    pub async fn send(&self, command: &Envelope) {
        publish_envelope(
            &self.vhost.amqp_url,
            &OutgoingMessage::command(command.clone()),
        )
        .await;
    }
}

pub fn charge(order_id: Uuid, customer_id: &str, amount_cents: i64) -> Envelope {
    Envelope::new(
        &contracts::ChargePayment {
            order_id,
            customer_id: customer_id.into(),
            amount_cents,
        },
        order_id,
        "test-correlation",
        None,
    )
    .unwrap()
}

pub fn refund(order_id: Uuid, customer_id: &str) -> Envelope {
    Envelope::new(
        &contracts::RefundPayment {
            order_id,
            customer_id: customer_id.into(),
        },
        order_id,
        "test-correlation",
        None,
    )
    .unwrap()
}
