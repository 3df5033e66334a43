//! The fleet's HTTP APIs as the fault tests call them, always as the operator: one helper per
//! endpoint, and [`CallError`], which tells an outage worth retrying from a definite answer.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::fleet::{ADMIN_TOKEN, Service};

/// Why a request did not get the answer it wanted.
#[derive(Debug)]
pub enum CallError {
    /// No answer, or a 5xx: the service (or what it depends on) is down; worth retrying.
    Unavailable(String),
    /// A definite answer that retrying will not change.
    Refused(StatusCode, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unavailable(why) => write!(f, "unavailable: {why}"),
            CallError::Refused(status, body) => write!(f, "{status}: {body}"),
        }
    }
}

/// The fleet's HTTP APIs, one helper per endpoint the tests use.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    /// Every orchestrator instance; orders are spread over them.
    pub orchestrators: Vec<String>,
    pub payment: String,
    pub inventory: String,
}

/// `Authorization: Bearer <operator token>`, sent on every call of the harness.
fn operator_bearer() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {ADMIN_TOKEN}"))
        .expect("the test token is a valid header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    headers
}

impl Api {
    pub(super) fn new(orchestrators: &[String], payment: &str, inventory: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .default_headers(operator_bearer())
                // A service that hangs must not hang the test: every call is bounded.
                .timeout(Duration::from_secs(5))
                .connect_timeout(Duration::from_secs(1))
                .build()
                .expect("cannot build the HTTP client"),
            orchestrators: orchestrators.to_vec(),
            payment: payment.to_owned(),
            inventory: inventory.to_owned(),
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Value), CallError> {
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        if status.is_server_error() {
            return Err(CallError::Unavailable(format!("{status}: {text}")));
        }
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    async fn expect(
        &self,
        request: reqwest::RequestBuilder,
        wanted: &[StatusCode],
    ) -> Result<Value, CallError> {
        let (status, body) = self.send(request).await?;
        if wanted.contains(&status) {
            Ok(body)
        } else {
            Err(CallError::Refused(status, body.to_string()))
        }
    }

    /// Creates the account (or sets its balance).
    pub async fn put_account(
        &self,
        customer_id: &str,
        balance_cents: i64,
    ) -> Result<(), CallError> {
        let url = format!("{}/api/accounts/{customer_id}", self.payment);
        self.expect(
            self.client
                .put(url)
                .json(&json!({ "balance_cents": balance_cents })),
            &[StatusCode::OK, StatusCode::CREATED],
        )
        .await
        .map(drop)
    }

    /// The balance, or `None` when the customer has no account.
    pub async fn balance(&self, customer_id: &str) -> Result<Option<i64>, CallError> {
        let url = format!("{}/api/accounts/{customer_id}", self.payment);
        let (status, body) = self.send(self.client.get(url)).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => Ok(body["balance_cents"].as_i64()),
            other => Err(CallError::Refused(other, body.to_string())),
        }
    }

    /// Creates the product (or sets its available stock).
    pub async fn put_product(&self, product_id: &str, stock: i64) -> Result<(), CallError> {
        let url = format!("{}/api/products/{product_id}", self.inventory);
        self.expect(
            self.client.put(url).json(&json!({ "stock": stock })),
            &[StatusCode::OK, StatusCode::CREATED],
        )
        .await
        .map(drop)
    }

    /// `(available, reserved)`.
    pub async fn stock(&self, product_id: &str) -> Result<(i64, i64), CallError> {
        let url = format!("{}/api/products/{product_id}", self.inventory);
        let body = self.expect(self.client.get(url), &[StatusCode::OK]).await?;
        Ok((
            body["available"].as_i64().unwrap_or(-1),
            body["reserved"].as_i64().unwrap_or(-1),
        ))
    }

    /// Places an order on orchestrator `instance` (modulo their number); `Ok` is the order id.
    pub async fn place_order(
        &self,
        instance: usize,
        body: &Value,
        idempotency_key: &str,
    ) -> Result<Uuid, CallError> {
        let base = &self.orchestrators[instance % self.orchestrators.len()];
        let answer = self
            .expect(
                self.client
                    .post(format!("{base}/api/orders"))
                    .header("Idempotency-Key", idempotency_key)
                    .header("X-Correlation-Id", idempotency_key)
                    .json(body),
                &[StatusCode::ACCEPTED],
            )
            .await?;
        answer["order_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| CallError::Refused(StatusCode::ACCEPTED, answer.to_string()))
    }

    pub async fn order(&self, order_id: Uuid) -> Result<Value, CallError> {
        let url = format!("{}/api/orders/{order_id}", self.orchestrators[0]);
        self.expect(self.client.get(url), &[StatusCode::OK]).await
    }

    pub async fn timeline(&self, order_id: Uuid) -> Result<Value, CallError> {
        let url = format!("{}/api/orders/{order_id}/timeline", self.orchestrators[0]);
        self.expect(self.client.get(url), &[StatusCode::OK]).await
    }

    pub async fn payments(&self, order_id: Uuid) -> Result<Vec<Value>, CallError> {
        let url = format!("{}/api/payments?order_id={order_id}", self.payment);
        let body = self.expect(self.client.get(url), &[StatusCode::OK]).await?;
        Ok(body.as_array().cloned().unwrap_or_default())
    }

    /// The orchestrator's sagas in progress (`GET /api/sagas`), as `(order_id, state)`.
    pub async fn sagas_in_progress(&self) -> Result<Vec<(Uuid, String)>, CallError> {
        let url = format!(
            "{}/api/sagas?status=PENDING&limit=500",
            self.orchestrators[0]
        );
        let body = self
            .expect(
                self.client.get(url).bearer_auth(ADMIN_TOKEN),
                &[StatusCode::OK],
            )
            .await?;
        Ok(body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|saga| {
                Some((
                    saga["order_id"].as_str()?.parse().ok()?,
                    saga["state"].as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    fn base_of(&self, service: Service) -> &str {
        match service {
            Service::Orchestrator => &self.orchestrators[0],
            Service::Payment => &self.payment,
            Service::Inventory => &self.inventory,
        }
    }

    /// The first page (up to 500) of a service's dead letters, through its admin API.
    pub async fn dead_letters(&self, service: Service) -> Result<Vec<Value>, CallError> {
        let url = format!("{}/api/admin/dead-letters?limit=500", self.base_of(service));
        let page = self
            .expect(
                self.client.get(url).bearer_auth(ADMIN_TOKEN),
                &[StatusCode::OK],
            )
            .await?;
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    /// Replays the given dead letters of a service through its admin API; returns the report.
    pub async fn replay_dead_letters(
        &self,
        service: Service,
        message_ids: &[String],
    ) -> Result<Value, CallError> {
        let url = format!("{}/api/admin/dead-letters/replay", self.base_of(service));
        self.expect(
            self.client
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({ "message_ids": message_ids })),
            &[StatusCode::OK],
        )
        .await
    }

    pub async fn reservation_lines(&self, order_id: Uuid) -> Result<Vec<Value>, CallError> {
        let url = format!("{}/api/reservations?order_id={order_id}", self.inventory);
        let body = self.expect(self.client.get(url), &[StatusCode::OK]).await?;
        Ok(body.as_array().cloned().unwrap_or_default())
    }
}
