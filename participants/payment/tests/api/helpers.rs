//! `spawn_app()` and the `TestApp` every test drives.

use serde_json::{Value, json};
use uuid::Uuid;

use payment::startup::Payment;
use saga_common::configuration::ServiceSettings;
use saga_common::contracts::{self, Payload};
use saga_common::messaging::{Envelope, topology};
use saga_common::testing::{PATIENCE, Tap, TestService, eventually};

/// The payment service under test, with one helper per endpoint on top of the shared ones.
pub struct TestApp(TestService);

impl std::ops::Deref for TestApp {
    type Target = TestService;
    fn deref(&self) -> &TestService {
        &self.0
    }
}

/// The service with the test admin token and quick retries (3 attempts, 50 ms then 100 ms).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`], with settings changed by `configure` first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut ServiceSettings)) -> TestApp {
    TestApp(TestService::spawn::<Payment>(configure).await)
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

    /// Binds a tap on `account.updated` on `saga.events`; bind before the write.
    pub async fn account_events(&self) -> Tap {
        Tap::bind(
            &self.vhost.amqp_url,
            topology::EVENTS_EXCHANGE,
            &[contracts::AccountUpdated::TYPE],
        )
        .await
    }

    /// The `account.updated` rows of the outbox: every one the service ever wrote.
    pub async fn account_events_written(&self) -> i64 {
        saga_common::testing::number(
            &self.database_url,
            "SELECT count(*) AS n FROM outbox WHERE message_type = 'account.updated'",
        )
        .await
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

    /// The dead letters' page, once it holds `count` messages in all.
    pub async fn dead_letters(&self, count: u64) -> Value {
        eventually(&format!("{count} dead letter(s)"), PATIENCE, || async {
            let page: Value = self.list_dead_letters("").await.json().await.ok()?;
            (page["total"].as_u64() == Some(count)).then_some(page)
        })
        .await
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
