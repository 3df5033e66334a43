//! `spawn_app()` and the `TestApp` every test drives: the service on a free port with a fresh
//! database and vhost, mailing to a given SMTP port; events published onto `saga.events`; one
//! helper per endpoint.

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use uuid::Uuid;

use notification::configuration::Settings;
use notification::startup::Notification;
use saga_common::configuration::RetrySettings;
use saga_common::contracts::Message;
use saga_common::contracts::{
    AccountUpdated, LowStock, OrderCompleted, OrderFailed, OrderFailureReason, OrderLine,
};
use saga_common::messaging::{Envelope, OutgoingMessage};
use saga_common::service::TaskFailed;
use saga_common::shutdown::Shutdown;
use saga_common::testing::{
    PATIENCE, TestVhost, drop_database, eventually, init_test_telemetry, number, operator_client,
    publish_envelope, service_settings, start,
};

pub struct TestApp {
    pub address: String,
    /// Sends the operator token.
    pub client: reqwest::Client,
    pub anonymous: reqwest::Client,
    pub vhost: TestVhost,
    pub database_url: String,
    shutdown: Shutdown,
    task: Option<JoinHandle<Result<(), TaskFailed>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The shop's address in the tests (`notify.ops_email`).
pub const OPS: &str = "ops@shop.test";

/// Starts the service mailing to 127.0.0.1:`smtp_port`, with quick retries (3 attempts, 50 ms
/// then 100 ms) and a 100 ms sweep; `configure` changes the settings last.
pub async fn spawn_app(smtp_port: u16, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(TestVhost::create().await, smtp_port, configure).await
}

/// [`spawn_app`] on a vhost the test prepared (events published before the service starts).
pub async fn spawn_app_on(
    vhost: TestVhost,
    smtp_port: u16,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    init_test_telemetry();
    let mut settings = notification::startup::default_settings();
    settings.service = service_settings(settings.service, "notification", &vhost).await;
    settings.service.retry = RetrySettings {
        max_attempts: 3,
        base_delay_ms: 50,
        max_delay_ms: 10_000,
    };
    settings.notify.smtp_port = smtp_port;
    settings.notify.ops_email = OPS.into();
    settings.notify.max_attempts = 3;
    settings.notify.backoff_base_ms = 50;
    settings.notify.backoff_max_ms = 200;
    settings.notify.sweep_interval_ms = 100;
    settings.notify.smtp_timeout_ms = 5_000;
    configure(&mut settings);
    let database_url = settings.service.database.url.expose().to_owned();
    let shutdown = Shutdown::new();
    let (address, task) = start::<Notification>(settings, &shutdown).await;
    TestApp {
        address,
        client: operator_client(),
        anonymous: reqwest::Client::new(),
        vhost,
        database_url,
        shutdown,
        task: Some(task),
    }
}

impl TestApp {
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

    /// Publishes `envelope` onto `saga.events`, routed by its type, as a service's relay would.
    pub async fn publish(&self, envelope: &Envelope) {
        publish_envelope(
            &self.vhost.amqp_url,
            &OutgoingMessage::event(envelope.clone()),
        )
        .await;
    }

    /// Arrange: the customer's address, as the payment service announces it; waits until the
    /// service has it (events on the queue may be handled on different channels).
    pub async fn give_address(&self, customer_id: &str, email: Option<&str>) {
        let event = event(
            &AccountUpdated {
                customer_id: customer_id.into(),
                email: email.map(str::to_owned),
            },
            Uuid::now_v7(),
        );
        self.publish(&event).await;
        let sql = format!(
            "SELECT count(*) AS n FROM recipients WHERE customer_id = '{customer_id}' \
             AND email IS NOT DISTINCT FROM {}",
            email.map_or_else(|| "NULL".to_owned(), |e| format!("'{e}'"))
        );
        eventually("the address to be stored", PATIENCE, || async {
            (number(&self.database_url, &sql).await == 1).then_some(())
        })
        .await;
    }

    pub async fn get_notifications(&self, query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/notifications{query}", self.address))
            .send()
            .await
            .expect("GET /api/notifications failed")
    }

    /// The page `query` lists, which must answer 200.
    pub async fn page(&self, query: &str) -> Value {
        let response = self.get_notifications(query).await;
        assert_eq!(response.status(), 200, "GET /api/notifications{query}");
        response.json().await.unwrap()
    }

    /// The notifications of `query`, once one of them has `status`.
    pub async fn wait_status(&self, query: &str, status: &str) -> Value {
        eventually(
            &format!("a notification {status} for {query}"),
            PATIENCE,
            || async {
                let page = self.page(query).await;
                page["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|n| n["status"] == status).cloned())
            },
        )
        .await
    }

    pub async fn resend(&self, id: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/notifications/{id}/resend", self.address))
            .send()
            .await
            .expect("POST /api/notifications/{id}/resend failed")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.anonymous
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("GET failed")
    }
}

/// An envelope of `message` for saga `saga_id`, correlated as `corr-<saga>`.
pub fn event<M: Message>(message: &M, saga_id: Uuid) -> Envelope {
    Envelope::new(message, saga_id, &format!("corr-{saga_id}"), None).unwrap()
}

/// `order.completed` for `customer_id`: two of p-1 at 12.50 and one of p-2 at 10.50.
pub fn completed(customer_id: &str) -> (Uuid, Envelope) {
    let order_id = Uuid::now_v7();
    let order = OrderCompleted {
        order_id,
        customer_id: customer_id.into(),
        total_cents: 3_550,
        lines: vec![
            OrderLine {
                product_id: "p-1".into(),
                quantity: 2,
                unit_price_cents: 1_250,
            },
            OrderLine {
                product_id: "p-2".into(),
                quantity: 1,
                unit_price_cents: 1_050,
            },
        ],
    };
    (order_id, event(&order, order_id))
}

pub fn failed(customer_id: &str, reason: OrderFailureReason) -> (Uuid, Envelope) {
    let order_id = Uuid::now_v7();
    let order = OrderFailed {
        order_id,
        customer_id: customer_id.into(),
        reason,
    };
    (order_id, event(&order, order_id))
}

pub fn low_stock(product_id: &str, available: i32, threshold: i32) -> Envelope {
    let low = LowStock {
        product_id: product_id.into(),
        available,
        threshold,
    };
    event(&low, Uuid::now_v7())
}

/// The body of an invalid `order.completed` (no customer), for the dead-letter case.
pub fn invalid_completed(order_id: Uuid) -> Envelope {
    Envelope::untyped(
        "order.completed",
        order_id,
        "corr-bad",
        None,
        &json!({"order_id": order_id}),
    )
    .unwrap()
}
