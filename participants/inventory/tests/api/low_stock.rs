//! Low-stock alerts: `inventory.low_stock` on `saga.events`, once per crossing of a product's
//! threshold by a reservation; a `PUT` at or above the threshold re-arms, a release does not.

use serde_json::{Value, json};
use uuid::Uuid;

use saga_common::contracts::{self, Payload};
use saga_common::messaging::Envelope;
use saga_common::testing::Tap;

use crate::helpers::{TestApp, release_command, reserve_command, spawn_app};

/// Sends a reservation of `quantity` units of `product_id` for a new order and waits for its
/// reply (so its batch has committed); returns the command.
async fn reserve(app: &TestApp, replies: &mut Tap, product_id: &str, quantity: i32) -> Envelope {
    let command = reserve_command(Uuid::now_v7(), &[(product_id, quantity)]);
    app.send_command(&command).await;
    let reply = replies.next().await;
    assert_eq!(
        reply.message_type,
        contracts::StockReserved::TYPE,
        "{reply:?}"
    );
    assert_eq!(reply.causation_id, Some(command.message_id));
    command
}

async fn put(app: &TestApp, product_id: &str, body: Value) -> Value {
    let response = app.put_product(product_id, &body).await;
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_reservation_that_crosses_the_threshold_publishes_one_alert() {
    let app = spawn_app().await;
    put(&app, "p-1", json!({"stock": 10, "low_stock_threshold": 5})).await;
    let mut alerts = app.listen_for_low_stock().await;
    let mut replies = app.listen_for_replies().await;

    reserve(&app, &mut replies, "p-1", 5).await;
    assert_eq!(
        app.low_stock_alerts_written().await,
        0,
        "5 left is at the threshold, not below"
    );
    let crossing = reserve(&app, &mut replies, "p-1", 2).await;

    let alert = alerts.next().await;
    assert_eq!(alert.message_type, "inventory.low_stock");
    assert_eq!(
        alert.payload,
        json!({"product_id": "p-1", "available": 3, "threshold": 5})
    );
    assert_eq!(
        alert.saga_id, crossing.saga_id,
        "the order that took the stock"
    );
    assert_eq!(alert.causation_id, Some(crossing.message_id));
    assert_eq!(alert.correlation_id, crossing.correlation_id);
    assert_eq!(app.product("p-1").await["low_stock_alerted"], true);

    // Further down, and the crossing command delivered again: nothing more.
    reserve(&app, &mut replies, "p-1", 1).await;
    app.send_command(&crossing).await;
    let again = replies.next().await;
    assert_eq!(again.causation_id, Some(crossing.message_id));
    assert_eq!(app.low_stock_alerts_written().await, 1);
    assert_eq!(app.stock_of("p-1").await, (2, 8));
    app.stop().await;
}

#[tokio::test]
async fn a_put_at_or_above_the_threshold_rearms_and_the_next_crossing_alerts_again() {
    let app = spawn_app().await;
    put(&app, "p-2", json!({"stock": 4})).await;
    let mut alerts = app.listen_for_low_stock().await;
    let mut replies = app.listen_for_replies().await;
    reserve(&app, &mut replies, "p-2", 3).await;
    assert_eq!(alerts.next().await.payload["available"], 1);

    // Below the threshold: the alarm stays off, and setting it publishes nothing.
    let below = put(&app, "p-2", json!({"stock": 1, "low_stock_threshold": 2})).await;
    assert_eq!(below["low_stock_alerted"], true);
    reserve(&app, &mut replies, "p-2", 1).await;
    assert_eq!(app.low_stock_alerts_written().await, 1);

    // At the threshold: re-armed.
    let rearmed = put(&app, "p-2", json!({"stock": 6, "low_stock_threshold": 6})).await;
    assert_eq!(rearmed["low_stock_alerted"], false);
    reserve(&app, &mut replies, "p-2", 2).await;
    let alert = alerts.next().await;
    assert_eq!(
        alert.payload,
        json!({"product_id": "p-2", "available": 4, "threshold": 6})
    );
    assert_eq!(app.low_stock_alerts_written().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_release_that_lifts_the_stock_back_neither_alerts_nor_rearms() {
    let app = spawn_app().await;
    put(&app, "p-3", json!({"stock": 4, "low_stock_threshold": 2})).await;
    let mut alerts = app.listen_for_low_stock().await;
    let mut replies = app.listen_for_replies().await;
    let first = reserve(&app, &mut replies, "p-3", 3).await;
    assert_eq!(alerts.next().await.payload["available"], 1);

    app.send_command(&release_command(first.saga_id)).await;
    assert_eq!(
        replies.next().await.message_type,
        contracts::StockReleased::TYPE
    );
    assert_eq!(app.stock_of("p-3").await, (4, 0));
    assert_eq!(app.product("p-3").await["low_stock_alerted"], true);
    reserve(&app, &mut replies, "p-3", 3).await;

    assert_eq!(app.low_stock_alerts_written().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn the_threshold_defaults_to_half_the_stock_set() {
    let app = spawn_app().await;

    let created = put(&app, "p-4", json!({"stock": 9})).await;
    assert_eq!(created["low_stock_threshold"], 4);
    assert_eq!(created["low_stock_alerted"], false);
    let explicit = put(&app, "p-4", json!({"stock": 9, "low_stock_threshold": 20})).await;
    assert_eq!(explicit["low_stock_threshold"], 20);
    assert_eq!(
        explicit["low_stock_alerted"], true,
        "set below its threshold"
    );
    // Every PUT sets the threshold: left out, it is half of this stock again.
    let again = put(
        &app,
        "p-4",
        json!({"stock": 1, "low_stock_threshold": null}),
    )
    .await;
    assert_eq!(again["low_stock_threshold"], 0);
    assert_eq!(again["low_stock_alerted"], false);
    assert_eq!(app.product("p-4").await, again);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_threshold_is_refused_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    put(&app, "p-5", json!({"stock": 10, "low_stock_threshold": 3})).await;

    for threshold in [
        json!(-1),
        json!(1_000_000_001_i64),
        json!("five"),
        json!(2.5),
    ] {
        let response = app
            .put_product(
                "p-5",
                &json!({"stock": 7, "low_stock_threshold": threshold}),
            )
            .await;
        assert_eq!(response.status(), 422, "{threshold}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "validation_failed");
        assert_eq!(body["details"][0]["field"], "low_stock_threshold", "{body}");
    }
    let response = app
        .put_product("p-6", &json!({"stock": 7, "low_stock_threshold": -5}))
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(app.get_product("p-6").await.status(), 404);

    let product = app.product("p-5").await;
    assert_eq!(product["available"], 10);
    assert_eq!(product["low_stock_threshold"], 3);
    app.stop().await;
}
