//! Bad input gets a clear JSON error and changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestFleet, spawn_fleet};

async fn error_of(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

async fn post_raw(
    fleet: &TestFleet,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    fleet
        .client
        .post(format!("{}/api/orders", fleet.orchestrator.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn assert_no_orders(fleet: &TestFleet) {
    let page: Value = fleet
        .get(format!("{}/api/orders", fleet.orchestrator.base))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["items"],
        json!([]),
        "a rejected request created an order"
    );
}

fn fields(error: &Value) -> Vec<&str> {
    error["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let fleet = spawn_fleet().await;
    let error = error_of(
        post_raw(&fleet, "application/json", "{\"customer_id\": ").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error["error"], "malformed_json");
    assert_no_orders(&fleet).await;
}

#[tokio::test]
async fn another_content_type_is_a_415() {
    let fleet = spawn_fleet().await;
    let error = error_of(
        post_raw(&fleet, "text/plain", "hello").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert_eq!(error["error"], "unsupported_media_type");
    assert_no_orders(&fleet).await;
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_a_413() {
    let fleet = spawn_fleet().await;
    let huge = format!(
        "{{\"customer_id\": \"{}\", \"items\": []}}",
        "x".repeat(1024 * 1024 + 1)
    );
    let error = error_of(
        post_raw(&fleet, "application/json", huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(error["error"], "payload_too_large");
    assert_no_orders(&fleet).await;
}

#[tokio::test]
async fn every_invalid_field_is_named_in_one_422() {
    let fleet = spawn_fleet().await;
    let body = json!({
        "customer_id": "",
        "items": [
            {"product_id": "p", "quantity": 0, "unit_price_cents": -1},
            {"product_id": "x".repeat(65), "quantity": 10_001, "unit_price_cents": 1_000_000_001}
        ]
    });
    let error = error_of(
        fleet.post_order(&body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error["error"], "validation_failed");
    assert_eq!(
        fields(&error),
        [
            "customer_id",
            "items[0].quantity",
            "items[0].unit_price_cents",
            "items[1].product_id",
            "items[1].quantity",
            "items[1].unit_price_cents",
        ]
    );
    assert_no_orders(&fleet).await;
}

#[tokio::test]
async fn too_few_or_too_many_items_are_a_422() {
    let fleet = spawn_fleet().await;
    let none = json!({"customer_id": "c", "items": []});
    assert_eq!(
        fields(
            &error_of(
                fleet.post_order(&none).await,
                StatusCode::UNPROCESSABLE_ENTITY
            )
            .await
        ),
        ["items"]
    );
    let line = json!({"product_id": "p", "quantity": 1, "unit_price_cents": 1});
    let many = json!({"customer_id": "c", "items": vec![line; 101]});
    assert_eq!(
        fields(
            &error_of(
                fleet.post_order(&many).await,
                StatusCode::UNPROCESSABLE_ENTITY
            )
            .await
        ),
        ["items"]
    );
    assert_no_orders(&fleet).await;
}

#[tokio::test]
async fn a_wrong_type_missing_or_unknown_field_is_a_422_naming_it() {
    let fleet = spawn_fleet().await;
    let cases = [
        (
            json!({"customer_id": "c", "items": [{"product_id": "p", "quantity": "two", "unit_price_cents": 1}]}),
            "items[0].quantity",
        ),
        // The operator must name the customer (a customer token may leave it out).
        (
            json!({"items": [{"product_id": "p", "quantity": 1, "unit_price_cents": 1}]}),
            "customer_id",
        ),
        (
            json!({"customer_id": "c", "items": [{"product_id": "p", "quantity": 1, "unit_price_cents": 1, "colour": "red"}]}),
            "items[0].colour",
        ),
        (json!([1, 2]), "body"),
    ];
    for (body, field) in cases {
        let error = error_of(
            fleet.post_order(&body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(fields(&error), [field], "{body}");
        assert!(!error["details"][0]["message"].as_str().unwrap().is_empty());
    }
    assert_no_orders(&fleet).await;
}

#[tokio::test]
async fn an_unusable_idempotency_key_is_a_422() {
    let fleet = spawn_fleet().await;
    let body = json!({"customer_id": "c", "items": [{"product_id": "p", "quantity": 1, "unit_price_cents": 1}]});
    let response = fleet.post_order_with_key(&body, &"k".repeat(129)).await;
    let error = error_of(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&error), ["Idempotency-Key"]);
    assert_no_orders(&fleet).await;
}

#[tokio::test]
async fn unknown_or_malformed_order_ids_are_404_and_422() {
    let fleet = spawn_fleet().await;
    let base = &fleet.orchestrator.base;
    let missing = uuid::Uuid::now_v7();
    let error = error_of(
        fleet.get(format!("{base}/api/orders/{missing}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(error["error"], "not_found");
    error_of(
        fleet
            .get(format!("{base}/api/orders/{missing}/timeline"))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let error = error_of(
        fleet.get(format!("{base}/api/orders/not-a-uuid")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&error), ["order_id"]);
    error_of(
        fleet.get(format!("{base}/api/nothing-here")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let response = fleet
        .client
        .delete(format!("{base}/api/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response, StatusCode::METHOD_NOT_ALLOWED).await["error"],
        "method_not_allowed"
    );
}

#[tokio::test]
async fn bad_list_parameters_are_each_named() {
    let fleet = spawn_fleet().await;
    let url = format!(
        "{}/api/orders?status=DONE&limit=0&cursor=zzz",
        fleet.orchestrator.base
    );
    let error = error_of(fleet.get(url).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&error), ["status", "limit", "cursor"]);
    let url = format!("{}/api/orders?limit=101", fleet.orchestrator.base);
    assert_eq!(
        fields(&error_of(fleet.get(url).await, StatusCode::UNPROCESSABLE_ENTITY).await),
        ["limit"]
    );
}

#[tokio::test]
async fn participants_reject_bad_input_the_same_way() {
    let fleet = spawn_fleet().await;
    let put = |url: String, body: Value| fleet.client.put(url).json(&body).send();

    let error = error_of(
        put(
            format!("{}/api/accounts/c-1", fleet.payment.base),
            json!({"balance_cents": -5}),
        )
        .await
        .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&error), ["balance_cents"]);
    let long = "c".repeat(65);
    let error = error_of(
        put(
            format!("{}/api/accounts/{long}", fleet.payment.base),
            json!({"balance_cents": 5}),
        )
        .await
        .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&error), ["customer_id"]);
    error_of(
        fleet
            .get(format!("{}/api/accounts/unknown", fleet.payment.base))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let error = error_of(
        fleet
            .get(format!("{}/api/payments?order_id=xyz", fleet.payment.base))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&error), ["order_id"]);

    let error = error_of(
        put(
            format!("{}/api/products/p-1", fleet.inventory.base),
            json!({"stock": -1}),
        )
        .await
        .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&error), ["stock"]);
    error_of(
        fleet
            .get(format!("{}/api/products/unknown", fleet.inventory.base))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
