//! The orchestrator's metrics: `orders_rejected_total` by reason, and an order's requests and
//! messages counted under their route templates and queues. The services of this test process
//! share one recorder, so these tests assert what rose, never exact counts (the separate-process
//! fleet test in deploy/faults does).

use reqwest::StatusCode;
use serde_json::json;

use saga_common::messaging::topology;
use saga_common::metrics::names;
use saga_common::testing::{PATIENCE, Scrape, eventually, scrape};

use crate::helpers::{FleetOptions, order_body, spawn_fleet, spawn_fleet_with};

fn rejected(scrape: &Scrape, reason: &str) -> f64 {
    scrape.value(names::ORDERS_REJECTED, &[("reason", reason)])
}

#[tokio::test]
async fn refused_orders_are_counted_by_reason_from_zero() {
    let fleet = spawn_fleet_with(FleetOptions {
        with_payment: false,
        with_inventory: false,
        ..FleetOptions::default()
    })
    .await;
    let base = &fleet.orchestrator.base;
    let before = scrape(base).await;
    assert_eq!(
        before.label_values(names::ORDERS_REJECTED, "reason"),
        ["invalid", "overloaded", "rate_limited", "unauthorized"]
    );

    let anonymous = fleet
        .anonymous
        .post(format!("{base}/api/orders"))
        .json(&order_body("alice", "book", 1, 100))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let invalid = fleet.post_order(&json!({"items": []})).await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let now = scrape(base).await;
    assert!(rejected(&now, "unauthorized") >= rejected(&before, "unauthorized") + 1.0);
    assert!(rejected(&now, "invalid") >= rejected(&before, "invalid") + 1.0);
}

#[tokio::test]
async fn an_order_counts_its_requests_by_template_and_its_messages_by_queue_and_type() {
    let fleet = spawn_fleet().await;
    fleet.set_balance("mia", 10_000).await;
    fleet.set_stock("kettle", 5).await;
    let base = &fleet.orchestrator.base;
    let before = scrape(base).await;

    let order_id = fleet.place(&order_body("mia", "kettle", 1, 1_000)).await;
    let order = fleet.wait_final(order_id).await;
    assert_eq!(order["status"], "COMPLETED");

    let by_id = [
        ("method", "GET"),
        ("route", "/api/orders/{order_id}"),
        ("status", "200"),
    ];
    let replies = [
        ("queue", topology::ORCHESTRATOR_REPLIES),
        ("outcome", "acked"),
    ];
    let charges = [
        ("exchange", topology::COMMANDS_EXCHANGE),
        ("type", "payment.charge"),
    ];
    let count = "http_server_request_duration_seconds_count";
    let now = eventually("the order's messages counted", PATIENCE, || async {
        let now = scrape(base).await;
        let rose = now.value(count, &by_id) > before.value(count, &by_id)
            // Charged and reserved, at least.
            && now.value(names::CONSUMED, &replies) >= before.value(names::CONSUMED, &replies) + 2.0
            && now.value(names::PUBLISHED, &charges) > before.value(names::PUBLISHED, &charges);
        rose.then_some(now)
    })
    .await;
    for route in now.label_values(count, "route") {
        assert!(
            !route.contains(&order_id.to_string()),
            "a raw path became a label: {route}"
        );
    }
}
