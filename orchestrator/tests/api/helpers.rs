use reqwest::{Response, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use orchestrator::configuration::{
    AdmissionSettings, ConsoleSettings, IntakeSettings, SagaSettings, Settings,
};
use orchestrator::startup::Orchestrator;
use saga_common::configuration::{RetentionSettings, ServiceSettings};
use saga_common::shutdown::Shutdown;
use saga_common::testing::{
    MailCatcher, PATIENCE, TestVhost, eventually, free_port, init_test_telemetry, service_settings,
    start,
};

/// One service of the fleet (`base` empty while it is not started).
pub struct Service {
    pub base: String,
    pub db_url: String,
}

/// The fleet, each service on port 0 with its own database, all in one private vhost.
pub struct TestFleet {
    pub orchestrator: Service,
    pub payment: Service,
    pub inventory: Service,
    /// Started only with `FleetOptions::with_notification` (else `base` and `db_url` are empty).
    pub notification: Service,
    /// The notification service's SMTP server (with `with_notification`). Read by the console
    /// tests, which include this file too; the API tests only keep it running.
    #[allow(dead_code)]
    pub mail_catcher: Option<MailCatcher>,
    pub vhost: TestVhost,
    /// Sends the operator token on every request.
    pub client: reqwest::Client,
    /// Sends no credentials, for the 401 cases.
    pub anonymous: reqwest::Client,
    /// Settings of a participant not started yet.
    payment_settings: Option<ServiceSettings>,
    inventory_settings: Option<ServiceSettings>,
    shutdown: Shutdown,
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The bearer token every test service accepts on its operator routes.
pub use saga_common::testing::ADMIN_TOKEN;

/// What differs from the default fleet.
pub struct FleetOptions {
    pub saga: SagaSettings,
    /// Start the payment participant now (else: `start_payment` later).
    pub with_payment: bool,
    /// Start the inventory participant now (else: `start_inventory` later).
    pub with_inventory: bool,
    /// Every service's `retention` section.
    pub retention: RetentionSettings,
    /// The orchestrator's `intake` section.
    pub intake: IntakeSettings,
    /// The orchestrator's `admission` section.
    pub admission: AdmissionSettings,
    /// Start the notification service too (its own database; the mail it sends goes nowhere:
    /// no SMTP server is started).
    pub with_notification: bool,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            saga: SagaSettings::default(),
            with_payment: true,
            with_inventory: true,
            retention: RetentionSettings::default(),
            intake: IntakeSettings::default(),
            admission: AdmissionSettings::default(),
            with_notification: false,
        }
    }
}

pub async fn spawn_fleet() -> TestFleet {
    spawn_fleet_with(FleetOptions::default()).await
}

/// The whole fleet, the notification service included, as the console sees it.
pub async fn spawn_console_fleet() -> TestFleet {
    spawn_fleet_with(FleetOptions {
        with_notification: true,
        ..FleetOptions::default()
    })
    .await
}

fn local_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

async fn start_payment_app(settings: ServiceSettings, shutdown: &Shutdown) -> String {
    start::<payment::startup::Payment>(settings, shutdown)
        .await
        .0
}

async fn start_inventory_app(settings: ServiceSettings, shutdown: &Shutdown) -> String {
    start::<inventory::startup::Inventory>(settings, shutdown)
        .await
        .0
}

pub async fn spawn_fleet_with(options: FleetOptions) -> TestFleet {
    init_test_telemetry();
    let vhost = TestVhost::create().await;
    let shutdown = Shutdown::new();

    let defaults = orchestrator::configuration::default_settings();
    let mut payment_settings =
        service_settings(payment::startup::default_settings(), "payment", &vhost).await;
    let mut inventory_settings =
        service_settings(inventory::startup::default_settings(), "inventory", &vhost).await;
    payment_settings.retention = options.retention.clone();
    inventory_settings.retention = options.retention.clone();

    // The participants first, so the orchestrator's console knows their addresses; one started
    // later gets a port reserved now.
    let payment_db = payment_settings.database.url.expose().to_owned();
    let (payment_base, payment_settings) = if options.with_payment {
        (start_payment_app(payment_settings, &shutdown).await, None)
    } else {
        let port = free_port();
        payment_settings.application.port = port;
        (local_url(port), Some(payment_settings))
    };
    let inventory_db = inventory_settings.database.url.expose().to_owned();
    let (inventory_base, inventory_settings) = if options.with_inventory {
        (
            start_inventory_app(inventory_settings, &shutdown).await,
            None,
        )
    } else {
        let port = free_port();
        inventory_settings.application.port = port;
        (local_url(port), Some(inventory_settings))
    };
    let mut mail_catcher = None;
    let notification = if options.with_notification {
        let mut settings = notification::startup::default_settings();
        settings.service = service_settings(settings.service, "notification", &vhost).await;
        settings.service.retention = options.retention.clone();
        // A real SMTP server, so notifications end SENT as in a running fleet.
        let mail = MailCatcher::start().await;
        settings.notify.smtp_port = mail.port;
        mail_catcher = Some(mail);
        let db_url = settings.service.database.url.expose().to_owned();
        Service {
            base: start::<notification::startup::Notification>(settings, &shutdown)
                .await
                .0,
            db_url,
        }
    } else {
        Service {
            base: String::new(),
            db_url: String::new(),
        }
    };

    let console = ConsoleSettings {
        payment_url: payment_base.clone(),
        inventory_url: inventory_base.clone(),
        notification_url: if notification.base.is_empty() {
            local_url(free_port())
        } else {
            notification.base.clone()
        },
    };
    let mut orchestrator_settings = Settings {
        service: service_settings(defaults.service, "orchestrator", &vhost).await,
        saga: options.saga,
        intake: options.intake,
        admission: options.admission,
        console,
    };
    orchestrator_settings.service.retention = options.retention;
    let orchestrator = Service {
        db_url: orchestrator_settings
            .service
            .database
            .url
            .expose()
            .to_owned(),
        base: start::<Orchestrator>(orchestrator_settings, &shutdown)
            .await
            .0,
    };
    // A participant not started yet has no address in the fleet until it starts.
    let payment = Service {
        base: if options.with_payment {
            payment_base
        } else {
            String::new()
        },
        db_url: payment_db,
    };
    let inventory = Service {
        base: if options.with_inventory {
            inventory_base
        } else {
            String::new()
        },
        db_url: inventory_db,
    };

    let fleet = TestFleet {
        orchestrator,
        payment,
        inventory,
        notification,
        mail_catcher,
        vhost,
        client: saga_common::testing::operator_client(),
        anonymous: reqwest::Client::new(),
        payment_settings,
        inventory_settings,
        shutdown,
    };
    fleet.wait_ready(&fleet.orchestrator).await;
    if options.with_inventory {
        fleet.wait_ready(&fleet.inventory).await;
    }
    if options.with_payment {
        fleet.wait_ready(&fleet.payment).await;
    }
    fleet
}

impl TestFleet {
    /// Starts the payment participant of a fleet spawned without it.
    pub async fn start_payment(&mut self) {
        let settings = self
            .payment_settings
            .take()
            .expect("payment is already running");
        self.payment.base = start_payment_app(settings, &self.shutdown).await;
        self.wait_ready(&self.payment).await;
    }

    /// Starts the inventory participant of a fleet spawned without it.
    pub async fn start_inventory(&mut self) {
        let settings = self
            .inventory_settings
            .take()
            .expect("inventory is already running");
        self.inventory.base = start_inventory_app(settings, &self.shutdown).await;
        self.wait_ready(&self.inventory).await;
    }

    pub async fn wait_ready(&self, service: &Service) {
        let url = format!("{}/health/ready", service.base);
        eventually("service readiness", PATIENCE, || async {
            let response = self.client.get(&url).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        })
        .await;
    }

    pub async fn get(&self, url: String) -> Response {
        self.client.get(url).send().await.unwrap()
    }

    pub async fn post_order(&self, body: &Value) -> Response {
        self.client
            .post(format!("{}/api/orders", self.orchestrator.base))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_order_with_key(&self, body: &Value, key: &str) -> Response {
        self.client
            .post(format!("{}/api/orders", self.orchestrator.base))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Places an order and returns its id.
    pub async fn place(&self, body: &Value) -> Uuid {
        let response = self.post_order(body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.unwrap();
        body["order_id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn order(&self, order_id: Uuid) -> Value {
        self.get(format!("{}/api/orders/{order_id}", self.orchestrator.base))
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn timeline(&self, order_id: Uuid) -> Value {
        self.get(format!(
            "{}/api/orders/{order_id}/timeline",
            self.orchestrator.base
        ))
        .await
        .json()
        .await
        .unwrap()
    }

    /// Waits until the order leaves PENDING and returns it.
    pub async fn wait_final(&self, order_id: Uuid) -> Value {
        eventually("a final order status", PATIENCE, || async {
            let order = self.order(order_id).await;
            (order["status"] != "PENDING").then_some(order)
        })
        .await
    }

    pub async fn set_balance(&self, customer_id: &str, balance_cents: i64) {
        let response = self
            .client
            .put(format!("{}/api/accounts/{customer_id}", self.payment.base))
            .json(&json!({ "balance_cents": balance_cents }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    pub async fn balance(&self, customer_id: &str) -> i64 {
        let account: Value = self
            .get(format!("{}/api/accounts/{customer_id}", self.payment.base))
            .await
            .json()
            .await
            .unwrap();
        account["balance_cents"].as_i64().unwrap()
    }

    pub async fn payments(&self, order_id: Uuid) -> Vec<Value> {
        self.get(format!(
            "{}/api/payments?order_id={order_id}",
            self.payment.base
        ))
        .await
        .json()
        .await
        .unwrap()
    }

    pub async fn set_stock(&self, product_id: &str, stock: i64) {
        let response = self
            .client
            .put(format!("{}/api/products/{product_id}", self.inventory.base))
            .json(&json!({ "stock": stock }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// `(available, reserved)`.
    pub async fn stock(&self, product_id: &str) -> (i64, i64) {
        let product: Value = self
            .get(format!("{}/api/products/{product_id}", self.inventory.base))
            .await
            .json()
            .await
            .unwrap();
        (
            product["available"].as_i64().unwrap(),
            product["reserved"].as_i64().unwrap(),
        )
    }

    pub async fn reservations(&self, order_id: Uuid) -> Vec<Value> {
        self.get(format!(
            "{}/api/reservations?order_id={order_id}",
            self.inventory.base
        ))
        .await
        .json()
        .await
        .unwrap()
    }
}

/// A direct connection to one service's database, for what the API does not show (the outbox).
pub async fn database(url: &str) -> DatabaseConnection {
    Database::connect(url).await.unwrap()
}

pub async fn query_one(db: &DatabaseConnection, sql: &str, values: Vec<sea_orm::Value>) -> Value {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            values,
        ))
        .await
        .unwrap()
        .expect("no row");
    row.try_get::<Value>("", "row").unwrap()
}

/// An order of `quantity` × `product` at `unit_price_cents`.
pub fn order_body(customer: &str, product: &str, quantity: i64, unit_price_cents: i64) -> Value {
    json!({
        "customer_id": customer,
        "items": [{"product_id": product, "quantity": quantity, "unit_price_cents": unit_price_cents}]
    })
}
