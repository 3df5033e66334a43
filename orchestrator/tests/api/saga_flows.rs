use saga_common::contracts::{self, Payload};
use saga_common::messaging::topology;
use saga_common::testing::{PATIENCE, Tap, eventually, lifecycle_lines};

use crate::helpers::{order_body, spawn_fleet};

async fn lifecycle_events(fleet: &crate::helpers::TestFleet) -> Tap {
    Tap::bind(
        &fleet.vhost.amqp_url,
        topology::EVENTS_EXCHANGE,
        &["order.*"],
    )
    .await
}

#[tokio::test]
async fn an_order_completes_when_paid_and_in_stock() {
    let fleet = spawn_fleet().await;
    fleet.set_balance("alice", 10_000).await;
    fleet.set_stock("book", 10).await;
    let mut events = lifecycle_events(&fleet).await;

    let order_id = fleet.place(&order_body("alice", "book", 2, 1_500)).await;
    let order = fleet.wait_final(order_id).await;

    let completed = events.next().await;
    assert_eq!(completed.message_type, contracts::OrderCompleted::TYPE);
    assert_eq!(completed.saga_id, order_id);
    assert_eq!(completed.payload["total_cents"], 3_000);

    assert_eq!(order["status"], "COMPLETED");
    assert_eq!(order["failure_reason"], serde_json::Value::Null);
    assert_eq!(order["total_cents"], 3_000);
    assert_eq!(fleet.balance("alice").await, 7_000);
    assert_eq!(fleet.stock("book").await, (8, 2));
    let payments = fleet.payments(order_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "CHARGED");
    let reservations = fleet.reservations(order_id).await;
    assert_eq!(reservations.len(), 1);
    assert_eq!(reservations[0]["status"], "RESERVED");

    let timeline = fleet.timeline(order_id).await;
    let steps: Vec<(String, String)> = timeline["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["trigger"].as_str().unwrap().to_owned(),
                t["to_state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("order.placed".to_owned(), "AWAITING_PAYMENT".to_owned()),
            ("payment.charged".to_owned(), "AWAITING_STOCK".to_owned()),
            ("inventory.reserved".to_owned(), "COMPLETED".to_owned()),
        ]
    );
    assert_eq!(timeline["transitions"][0]["commands"][0], "payment.charge");
    assert_eq!(
        timeline["transitions"][1]["commands"][0],
        "inventory.reserve"
    );
    assert_eq!(timeline["transitions"][1]["from_state"], "AWAITING_PAYMENT");
}

#[tokio::test]
async fn an_order_fails_when_the_payment_is_declined_and_takes_no_stock() {
    let fleet = spawn_fleet().await;
    fleet.set_balance("bob", 999).await;
    fleet.set_stock("lamp", 5).await;

    let order_id = fleet.place(&order_body("bob", "lamp", 1, 1_000)).await;
    let order = fleet.wait_final(order_id).await;

    assert_eq!(order["status"], "FAILED");
    assert_eq!(order["failure_reason"], "payment_declined");
    assert_eq!(fleet.balance("bob").await, 999);
    assert_eq!(fleet.stock("lamp").await, (5, 0));
    let payments = fleet.payments(order_id).await;
    assert_eq!(payments[0]["status"], "DECLINED");
    assert_eq!(payments[0]["decline_reason"], "insufficient_funds");
    assert!(fleet.reservations(order_id).await.is_empty());

    // What operators read: the payment's decline and the saga's end, once each.
    let lines = lifecycle_lines();
    let (declined, failed) = eventually("the decline's lifecycle lines", PATIENCE, || async {
        let failed = lines.of_order("saga.failed", order_id);
        (!failed.is_empty()).then(|| (lines.of_order("payment.declined", order_id), failed))
    })
    .await;
    assert_eq!(declined.len(), 1, "{declined:?}");
    assert_eq!(declined[0]["reason"], "insufficient_funds");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["reason"], "payment_declined");
    assert_eq!(failed[0]["saga_id"], order_id.to_string());
    // One correlation id from the request to the end, through the participant.
    let started = lines.of_order("saga.started", order_id);
    assert_eq!(started.len(), 1);
    assert_eq!(failed[0]["correlation_id"], started[0]["correlation_id"]);
    assert_eq!(declined[0]["correlation_id"], started[0]["correlation_id"]);
    assert!(lines.of_order("payment.charged", order_id).is_empty());
    assert!(lines.of_order("saga.completed", order_id).is_empty());
}

#[tokio::test]
async fn an_order_from_a_customer_without_account_is_declined() {
    let fleet = spawn_fleet().await;
    fleet.set_stock("lamp", 5).await;

    let order_id = fleet.place(&order_body("nobody", "lamp", 1, 1_000)).await;
    let order = fleet.wait_final(order_id).await;

    assert_eq!(order["failure_reason"], "payment_declined");
    assert_eq!(
        fleet.payments(order_id).await[0]["decline_reason"],
        "no_account"
    );
    assert_eq!(fleet.stock("lamp").await, (5, 0));
}

#[tokio::test]
async fn an_order_out_of_stock_is_refunded_and_fails() {
    let fleet = spawn_fleet().await;
    fleet.set_balance("carol", 10_000).await;
    fleet.set_stock("chair", 1).await;
    fleet.set_stock("table", 10).await;

    // Two lines; the second is short. Nothing may be reserved, and the charge is given back.
    let body = serde_json::json!({
        "customer_id": "carol",
        "items": [
            {"product_id": "table", "quantity": 1, "unit_price_cents": 2_000},
            {"product_id": "chair", "quantity": 2, "unit_price_cents": 500}
        ]
    });
    let mut events = lifecycle_events(&fleet).await;
    let order_id = fleet.place(&body).await;
    let order = fleet.wait_final(order_id).await;

    assert_eq!(order["status"], "FAILED");
    assert_eq!(order["failure_reason"], "out_of_stock");
    let failed = events.next().await;
    assert_eq!(failed.message_type, contracts::OrderFailed::TYPE);
    assert_eq!(failed.payload["reason"], "out_of_stock");
    assert_eq!(fleet.balance("carol").await, 10_000);
    let payments = fleet.payments(order_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "REFUNDED");
    assert_eq!(payments[0]["amount_cents"], 3_000);
    assert_eq!(fleet.stock("chair").await, (1, 0));
    assert_eq!(fleet.stock("table").await, (10, 0));

    let timeline = fleet.timeline(order_id).await;
    let states: Vec<&str> = timeline["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to_state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "AWAITING_PAYMENT",
            "AWAITING_STOCK",
            "REFUNDING_PAYMENT",
            "FAILED"
        ]
    );
}

#[tokio::test]
async fn concurrent_orders_never_overdraw_an_account() {
    let fleet = spawn_fleet().await;
    fleet.set_balance("dave", 5_000).await;
    fleet.set_stock("pen", 1_000).await;

    // Ten orders of 1 000 against a balance of 5 000: exactly five can be paid.
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(fleet.place(&order_body("dave", "pen", 1, 1_000)).await);
    }
    let mut completed = 0;
    for id in ids {
        if fleet.wait_final(id).await["status"] == "COMPLETED" {
            completed += 1;
        }
    }
    assert_eq!(completed, 5);
    assert_eq!(fleet.balance("dave").await, 0);
    assert_eq!(fleet.stock("pen").await, (995, 5));
}
