//! `spawn_app()` and the `TestApp` every test drives: one helper per endpoint, plus publishing
//! commands onto the test's vhost and tapping the replies the service sends.

use lapin::BasicProperties;
use serde_json::{Value, json};
use uuid::Uuid;

use inventory::startup::Inventory;
use saga_common::contracts::{self, Payload};
use saga_common::messaging::{Envelope, OutgoingMessage, topology};
use saga_common::testing::{
    ADMIN_TOKEN, PATIENCE, Tap, TestService, eventually, publish_envelope, publish_raw,
};

/// The inventory service under test, with one helper per endpoint on top of the shared ones.
pub struct TestApp(pub TestService);

impl std::ops::Deref for TestApp {
    type Target = TestService;
    fn deref(&self) -> &TestService {
        &self.0
    }
}

/// Starts the service on a free port with a fresh database and vhost, and waits until it is ready.
pub async fn spawn_app() -> TestApp {
    TestApp(TestService::spawn::<Inventory>(|_| {}).await)
}

impl TestApp {
    /// Stops the service and removes its database and vhost.
    pub async fn stop(self) {
        self.0.stop().await;
    }

    pub async fn put_product(&self, product_id: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(format!("{}/api/products/{product_id}", self.address))
            .json(body)
            .send()
            .await
            .expect("PUT /api/products failed")
    }

    /// PUT with any bytes and content type, for the malformed-request cases.
    pub async fn put_product_raw(
        &self,
        product_id: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .put(format!("{}/api/products/{product_id}", self.address))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("PUT /api/products failed")
    }

    pub async fn get_product(&self, product_id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/products/{product_id}", self.address))
            .send()
            .await
            .expect("GET /api/products failed")
    }

    pub async fn get_reservations(&self, order_id: Option<&str>) -> reqwest::Response {
        // Test values need no percent-encoding (reqwest's `query` is a feature left off).
        let query = order_id.map_or_else(String::new, |id| format!("?order_id={id}"));
        self.client
            .get(format!("{}/api/reservations{query}", self.address))
            .send()
            .await
            .expect("GET /api/reservations failed")
    }

    pub async fn get_openapi(&self) -> reqwest::Response {
        self.client
            .get(format!("{}/api/docs/openapi.json", self.address))
            .send()
            .await
            .expect("GET /api/docs/openapi.json failed")
    }

    /// Arrange: a product with `stock` units available.
    pub async fn stock(&self, product_id: &str, stock: i64) {
        let response = self
            .put_product(product_id, &json!({ "stock": stock }))
            .await;
        assert!(
            response.status().is_success(),
            "stocking {product_id} answered {}",
            response.status()
        );
    }

    /// `(available, reserved)` of a product that must exist.
    pub async fn stock_of(&self, product_id: &str) -> (i64, i64) {
        let response = self.get_product(product_id).await;
        assert_eq!(response.status(), 200, "GET product {product_id}");
        let product: Value = response.json().await.unwrap();
        (
            product["available"].as_i64().unwrap(),
            product["reserved"].as_i64().unwrap(),
        )
    }

    /// The reservation lines of one order, as the API lists them.
    pub async fn reservation_lines(&self, order_id: Uuid) -> Vec<Value> {
        let response = self.get_reservations(Some(&order_id.to_string())).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Publishes raw bytes to `saga.commands`, persistent and confirmed.
    pub async fn publish_command_bytes(&self, routing_key: &str, body: &[u8]) {
        let properties = BasicProperties::default().with_content_type("application/json".into());
        publish_raw(
            &self.vhost.amqp_url,
            topology::COMMANDS_EXCHANGE,
            routing_key,
            body,
            properties,
        )
        .await;
    }

    /// Publishes an envelope under an explicit routing key (to reach the queue with any type).
    pub async fn send_command_as(&self, routing_key: &str, command: &Envelope) {
        let mut message = OutgoingMessage::command(command.clone());
        message.routing_key = routing_key.to_owned();
        publish_envelope(&self.vhost.amqp_url, &message).await;
    }

    /// Starts collecting inventory replies from `saga.replies`. Call it before publishing the
    /// command whose reply you expect: a reply published before the tap is bound goes nowhere.
    pub async fn listen_for_replies(&self) -> Tap {
        Tap::bind(
            &self.vhost.amqp_url,
            topology::REPLIES_EXCHANGE,
            &[
                contracts::StockReserved::TYPE,
                contracts::StockReservationFailed::TYPE,
                contracts::StockReleased::TYPE,
            ],
        )
        .await
    }

    /// Starts collecting `inventory.low_stock` alerts from `saga.events`; bind before the
    /// reservation that crosses.
    pub async fn listen_for_low_stock(&self) -> Tap {
        Tap::bind(
            &self.vhost.amqp_url,
            topology::EVENTS_EXCHANGE,
            &[contracts::LowStock::TYPE],
        )
        .await
    }

    /// The `inventory.low_stock` rows of the outbox: every alert the service ever wrote. Read
    /// after a reply arrived, it counts what that reply's batch wrote (same transaction).
    pub async fn low_stock_alerts_written(&self) -> i64 {
        saga_common::testing::number(
            &self.database_url,
            "SELECT count(*) AS n FROM outbox WHERE message_type = 'inventory.low_stock'",
        )
        .await
    }

    /// The product as `GET` shows it; it must exist.
    pub async fn product(&self, product_id: &str) -> Value {
        let response = self.get_product(product_id).await;
        assert_eq!(response.status(), 200, "GET product {product_id}");
        response.json().await.unwrap()
    }

    /// The dead-lettered messages of `inventory.commands`, once there are `count` of them.
    pub async fn dead_letters(&self, count: usize) -> Vec<Value> {
        let dlq = topology::dead_letter_queue(topology::INVENTORY_COMMANDS);
        eventually("messages in the dead-letter queue", PATIENCE, || async {
            let messages = self.vhost.peek(&dlq, 10).await;
            (messages.len() >= count).then_some(messages)
        })
        .await
    }

    /// GET `/api/admin/dead-letters`, with the test token or without any.
    pub async fn get_dead_letters(&self, authorized: bool) -> reqwest::Response {
        let request = self
            .anonymous
            .get(format!("{}/api/admin/dead-letters", self.address));
        let request = if authorized {
            request.bearer_auth(ADMIN_TOKEN)
        } else {
            request
        };
        request
            .send()
            .await
            .expect("GET /api/admin/dead-letters failed")
    }
}

/// An `inventory.reserve` command for `order_id` (also its saga id), one line per pair.
pub fn reserve_command(order_id: Uuid, lines: &[(&str, i32)]) -> Envelope {
    let payload = contracts::ReserveStock {
        order_id,
        lines: lines
            .iter()
            .map(|(product_id, quantity)| contracts::StockLine {
                product_id: (*product_id).to_owned(),
                quantity: *quantity,
            })
            .collect(),
    };
    Envelope::new(&payload, order_id, &format!("test-{order_id}"), None).unwrap()
}

/// An `inventory.release` command for `order_id`.
pub fn release_command(order_id: Uuid) -> Envelope {
    Envelope::new(
        &contracts::ReleaseStock { order_id },
        order_id,
        &format!("test-{order_id}"),
        None,
    )
    .unwrap()
}
