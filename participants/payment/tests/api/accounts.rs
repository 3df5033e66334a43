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

#[tokio::test]
async fn an_account_write_stores_its_email_and_publishes_it_as_account_updated() {
    let app = spawn_app().await;
    let mut events = app.account_events().await;

    let created = app
        .client
        .put(format!("{}/api/accounts/c-3", app.address))
        .header("x-correlation-id", "corr-email-1")
        .json(&json!({"balance_cents": 500, "email": "Ada.Lovelace+orders@example.com"}))
        .send()
        .await
        .unwrap();

    assert_eq!(created.status(), StatusCode::CREATED);
    let account: Value = created.json().await.unwrap();
    assert_eq!(account["email"], "Ada.Lovelace+orders@example.com");
    let stored: Value = app.get_account("c-3").await.json().await.unwrap();
    assert_eq!(stored["email"], "Ada.Lovelace+orders@example.com");
    let event = events.next().await;
    assert_eq!(event.message_type, "account.updated");
    assert_eq!(
        event.payload,
        json!({"customer_id": "c-3", "email": "Ada.Lovelace+orders@example.com"})
    );
    assert_eq!(event.correlation_id, "corr-email-1");
    assert_eq!(event.saga_id, uuid::Uuid::nil(), "not about an order");

    // A PUT sets the whole account: without an address, the account has none, and says so.
    let cleared = app.put_account("c-3", &json!({"balance_cents": 400})).await;
    assert_eq!(cleared.status(), StatusCode::OK);
    let account: Value = cleared.json().await.unwrap();
    assert_eq!(account["email"], Value::Null);
    let event = events.next().await;
    assert_eq!(event.payload, json!({"customer_id": "c-3", "email": null}));
    assert_eq!(app.account_events_written().await, 2);
}

#[tokio::test]
async fn a_bad_email_is_refused_naming_the_field_and_changes_and_publishes_nothing() {
    let app = spawn_app().await;
    let mut events = app.account_events().await;
    let first = app
        .put_account(
            "c-4",
            &json!({"balance_cents": 10, "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(events.next().await.payload["email"], "ada@example.com");

    let too_long = format!("{}@example.com", "a".repeat(250));
    for email in [
        json!("ada"),
        json!("ada@localhost"),
        json!("ada@example.com\r\nBcc: eve@example.com"),
        json!(too_long),
        json!(42),
    ] {
        let refused = app
            .put_account("c-4", &json!({"balance_cents": 99, "email": email}))
            .await;
        assert_eq!(
            refused.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{email}"
        );
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"], "validation_failed", "{error}");
        assert_eq!(error["details"][0]["field"], "email", "{error}");
    }
    // A new account refused for its address is not created either.
    let refused = app
        .put_account("c-5", &json!({"balance_cents": 1, "email": "nope"}))
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.get_account("c-5").await.status(), StatusCode::NOT_FOUND);

    let account: Value = app.get_account("c-4").await.json().await.unwrap();
    assert_eq!(account["balance_cents"], 10);
    assert_eq!(account["email"], "ada@example.com");
    assert_eq!(
        app.account_events_written().await,
        1,
        "no event for a refusal"
    );
    // The outbox publishes in order: the next event on the exchange is the next write's.
    let second = app
        .put_account(
            "c-4",
            &json!({"balance_cents": 11, "email": "b@example.org"}),
        )
        .await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(events.next().await.payload["email"], "b@example.org");
}
