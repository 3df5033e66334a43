//! The checker itself: a scenario that passes proves something only if the checker would have
//! failed it. Here the fleet runs clean, then the test breaks each invariant on purpose and
//! expects the checker to name every break in one report.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Connection, ConnectionProperties};
use uuid::Uuid;

use saga_common::messaging::topology;

use crate::harness::bounded;
use crate::harness::fleet::FleetOptions;
use crate::harness::rabbitmq::AMQP_CALL_LIMIT;
use crate::invariants::{self, Expectations};
use crate::scenario::Scenario;
use crate::stream::{AcceptedOrder, Line, StreamPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invariant_checker_reports_every_violation_not_only_the_first() {
    let mut scenario = Scenario::begin("checker", FleetOptions::default()).await;
    let mut ledger = scenario
        .stream(StreamPlan {
            orders: 30,
            ..StreamPlan::default()
        })
        .finish()
        .await;
    let fleet = &scenario.fleet;

    // Money appears, stock appears, a dead letter appears, and an order the fleet never heard of
    // is in the ledger.
    fleet
        .api
        .put_account("rich-1", 10_000_001)
        .await
        .expect("a balance");
    fleet.api.put_product("gizmo", 5).await.expect("a stock");
    bounded(
        "publishing a stray dead letter",
        AMQP_CALL_LIMIT,
        publish_stray_dead_letter(&fleet.rabbitmq.amqp_url()),
    )
    .await;
    ledger.accepted.push(AcceptedOrder {
        order_id: Uuid::now_v7(),
        idempotency_key: "faults-never-placed".to_owned(),
        customer_id: "rich-2".to_owned(),
        lines: vec![Line {
            product_id: "widget".to_owned(),
            quantity: 1,
            unit_price_cents: 1,
        }],
    });

    let expect = Expectations {
        settle: Duration::from_secs(3),
        ..Expectations::default()
    };
    let report = invariants::check(fleet, &ledger, &expect).await;
    let all = report.violations.join("\n");
    for expected in [
        "did not end",
        "faults-never-placed",
        "customer rich-1",
        "product gizmo",
        "payment.commands.dlq holds 1",
    ] {
        assert!(
            all.contains(expected),
            "no violation mentions `{expected}`; the report:\n{all}"
        );
    }
    scenario.mark("checked the checker");
}

/// Puts a message in `payment.commands.dlq` that no consumer put there.
async fn publish_stray_dead_letter(amqp_url: &str) {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .expect("AMQP");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let dlq = topology::dead_letter_queue(topology::PAYMENT_COMMANDS);
    channel
        .basic_publish(
            topology::DEAD_LETTER_EXCHANGE.into(),
            dlq.as_str().into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}
