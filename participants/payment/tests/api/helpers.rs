//! `spawn_app()` and the `TestApp` every test drives.

use serde_json::{Value, json};
use uuid::Uuid;

use payment::startup::{Application, default_settings};
use saga_common::contracts::{self, command, reply};
use saga_common::messaging::{Envelope, OutgoingMessage, topology};
use saga_common::shutdown::Shutdown;
use saga_common::testing::{
    PATIENCE, Tap, TestVhost, create_database, eventually, init_test_telemetry, publish_envelope,
};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub vhost: TestVhost,
    shutdown: Shutdown,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

pub async fn spawn_app() -> TestApp {
    init_test_telemetry();
    let vhost = TestVhost::create().await;
    let mut settings = default_settings();
    settings.application.port = 0;
    settings.database.url = create_database("payment").await;
    settings.amqp.url = vhost.amqp_url.clone();
    settings.shutdown_grace_ms = 2_000;
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
                reply::PAYMENT_CHARGED,
                reply::PAYMENT_DECLINED,
                reply::PAYMENT_REFUNDED,
            ],
        )
        .await
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
        command::CHARGE_PAYMENT,
        order_id,
        "test-correlation",
        None,
        &contracts::ChargePayment {
            order_id,
            customer_id: customer_id.into(),
            amount_cents,
        },
    )
    .unwrap()
}

pub fn refund(order_id: Uuid, customer_id: &str) -> Envelope {
    Envelope::new(
        command::REFUND_PAYMENT,
        order_id,
        "test-correlation",
        None,
        &contracts::RefundPayment {
            order_id,
            customer_id: customer_id.into(),
        },
    )
    .unwrap()
}
