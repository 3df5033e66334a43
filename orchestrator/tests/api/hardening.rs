//! NUL characters (PostgreSQL text cannot hold them) anywhere in a request: a 422 naming the
//! field, never a 500, and nothing written.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestFleet, order_body, spawn_fleet};

const NUL_RULE: &str = "must not contain the NUL character (\\u0000)";

async fn nul_field(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "validation_failed");
    assert_eq!(error["details"][0]["message"], NUL_RULE);
    error["details"][0]["field"].as_str().unwrap().to_owned()
}

async fn order_count(fleet: &TestFleet) -> usize {
    let page: Value = fleet
        .get(format!("{}/api/orders", fleet.orchestrator.base))
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_nul_in_a_body_field_a_nested_item_or_a_query_parameter_is_named_and_nothing_written() {
    let fleet = spawn_fleet().await;
    let top = order_body("c\u{0}x", "p-1", 1, 100);
    assert_eq!(nul_field(fleet.post_order(&top).await).await, "customer_id");

    let nested = json!({
        "customer_id": "c-1",
        "items": [
            {"product_id": "p-1", "quantity": 1, "unit_price_cents": 1},
            {"product_id": "p\u{0}", "quantity": 1, "unit_price_cents": 1}
        ]
    });
    assert_eq!(
        nul_field(fleet.post_order(&nested).await).await,
        "items[1].product_id"
    );
    let key = json!({"customer_id": "c-1", "items": [], "x\u{0}": 1});
    assert_eq!(nul_field(fleet.post_order(&key).await).await, "x\\u0000");

    let listed = fleet
        .get(format!(
            "{}/api/orders?customer_id=c%00x",
            fleet.orchestrator.base
        ))
        .await;
    assert_eq!(nul_field(listed).await, "customer_id");
    assert_eq!(order_count(&fleet).await, 0);
}

/// HTTP/1 forbids control characters in header values: the server's parser refuses a NUL in
/// `Idempotency-Key` (or any header) with 400 before any handler runs. (No client library
/// will even send one, hence the raw socket.)
#[tokio::test]
async fn a_nul_in_a_header_is_refused_before_anything_is_written() {
    let fleet = spawn_fleet().await;
    let address = fleet.orchestrator.base.trim_start_matches("http://");
    let body = order_body("c-1", "p-1", 1, 100).to_string();
    let request = format!(
        "POST /api/orders HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: k\0ey\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(order_count(&fleet).await, 0);
}
