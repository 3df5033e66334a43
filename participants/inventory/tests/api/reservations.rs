use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn listing_reservations_of_an_order_id_that_is_not_a_uuid_is_rejected_naming_order_id() {
    let app = spawn_app().await;

    let response = app.get_reservations(Some("not-a-uuid")).await;

    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["details"][0]["field"], "order_id");
    app.stop().await;
}

#[tokio::test]
async fn listing_reservations_without_any_is_empty() {
    let app = spawn_app().await;

    let response = app.get_reservations(None).await;

    assert_eq!(response.status(), 200);
    let lines: Vec<Value> = response.json().await.unwrap();
    assert!(lines.is_empty());
    app.stop().await;
}
