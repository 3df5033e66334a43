use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn an_account_is_created_then_its_balance_set() {
    let app = spawn_app().await;
    let created = app
        .put_account("c-1", &json!({"balance_cents": 50_000}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let set = app.put_account("c-1", &json!({"balance_cents": 70})).await;
    assert_eq!(set.status(), StatusCode::OK);

    let account: Value = app.get_account("c-1").await.json().await.unwrap();
    assert_eq!(account["customer_id"], "c-1");
    assert_eq!(account["balance_cents"], 70);
    assert!(account["updated_at"].is_string());
}

#[tokio::test]
async fn bad_account_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.fund("c-2", 10).await;

    let negative = app.put_account("c-2", &json!({"balance_cents": -1})).await;
    assert_eq!(negative.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = negative.json().await.unwrap();
    assert_eq!(error["details"][0]["field"], "balance_cents");

    let wrong_type = app
        .put_account("c-2", &json!({"balance_cents": "ten"}))
        .await;
    assert_eq!(wrong_type.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unknown_field = app
        .put_account("c-2", &json!({"balance_cents": 1, "owner": "x"}))
        .await;
    assert_eq!(unknown_field.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let not_json = app
        .client
        .put(format!("{}/api/accounts/c-2", app.address))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let form = app
        .client
        .put(format!("{}/api/accounts/c-2", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("balance_cents=5")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    assert_eq!(app.balance("c-2").await, 10);
    let unknown = app.get_account("nobody").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["error"], "not_found");
}
