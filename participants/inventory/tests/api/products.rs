use serde_json::{Value, json};

use crate::helpers::spawn_app;

/// Asserts a 422 `validation_failed` naming `field`.
async fn assert_invalid_field(response: reqwest::Response, field: &str) {
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "validation_failed");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|detail| detail["field"].as_str())
        .collect();
    assert_eq!(fields, [field], "{body}");
}

#[tokio::test]
async fn putting_a_new_product_creates_it_with_its_stock() {
    let app = spawn_app().await;

    let response = app.put_product("p-1", &json!({"stock": 100})).await;

    assert_eq!(response.status(), 201);
    let product: Value = response.json().await.unwrap();
    assert_eq!(product["product_id"], "p-1");
    assert_eq!(product["available"], 100);
    assert_eq!(product["reserved"], 0);
    assert!(product["updated_at"].is_string());

    let response = app.get_product("p-1").await;
    assert_eq!(response.status(), 200);
    let fetched: Value = response.json().await.unwrap();
    assert_eq!(fetched, product);
    app.stop().await;
}

#[tokio::test]
async fn putting_an_existing_product_sets_its_available_stock() {
    let app = spawn_app().await;
    app.stock("p-1", 100).await;

    let response = app.put_product("p-1", &json!({"stock": 7})).await;

    assert_eq!(response.status(), 200);
    let product: Value = response.json().await.unwrap();
    assert_eq!(product["available"], 7);
    assert_eq!(app.stock_of("p-1").await, (7, 0));
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_product_is_not_found() {
    let app = spawn_app().await;

    let response = app.get_product("nope").await;

    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    app.stop().await;
}

#[tokio::test]
async fn a_negative_stock_is_rejected_naming_stock() {
    let app = spawn_app().await;

    let response = app.put_product("p-1", &json!({"stock": -1})).await;

    assert_invalid_field(response, "stock").await;
    assert_eq!(app.get_product("p-1").await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn a_stock_over_one_billion_is_rejected_naming_stock() {
    let app = spawn_app().await;

    let accepted = app
        .put_product("p-1", &json!({"stock": 1_000_000_000}))
        .await;
    let response = app
        .put_product("p-1", &json!({"stock": 1_000_000_001}))
        .await;

    assert_eq!(accepted.status(), 201);
    assert_invalid_field(response, "stock").await;
    app.stop().await;
}

#[tokio::test]
async fn a_stock_that_is_not_an_integer_is_rejected_naming_stock() {
    let app = spawn_app().await;

    let response = app.put_product("p-1", &json!({"stock": "lots"})).await;

    assert_invalid_field(response, "stock").await;
    app.stop().await;
}

#[tokio::test]
async fn a_product_id_over_64_characters_is_rejected_naming_product_id() {
    let app = spawn_app().await;
    let long_id = "p".repeat(65);

    let put = app.put_product(&long_id, &json!({"stock": 1})).await;
    let get = app.get_product(&long_id).await;

    assert_invalid_field(put, "product_id").await;
    assert_invalid_field(get, "product_id").await;
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_field_is_rejected_naming_it() {
    let app = spawn_app().await;

    let response = app
        .put_product("p-1", &json!({"stock": 1, "colour": "red"}))
        .await;

    assert_invalid_field(response, "colour").await;
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    let app = spawn_app().await;

    let response = app
        .put_product_raw("p-1", "application/json", r#"{"stock": "#)
        .await;

    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "malformed_json");
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_an_unsupported_media_type() {
    let app = spawn_app().await;

    let response = app
        .put_product_raw("p-1", "text/plain", r#"{"stock": 1}"#)
        .await;

    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_media_type");
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_too_large() {
    let app = spawn_app().await;
    // Valid JSON of the right shape but for its size (and an unknown field, which would be a 422
    // if the size limit did not come first).
    let padding = "x".repeat(1024 * 1024);
    let body = format!(r#"{{"stock": 1, "padding": "{padding}"}}"#);

    let response = app.put_product_raw("p-1", "application/json", body).await;

    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(app.get_product("p-1").await.status(), 404);
    app.stop().await;
}
