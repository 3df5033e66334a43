//! The services given several broker addresses move to the next when one goes away.
//!
//! The two nodes here are independent, not clustered: a message sitting in the first node's
//! queues when it stops stays there (a cluster with quorum queues is what keeps it), so this
//! test does not run the order stream and its ledger checks. It checks what the services do:
//! every one reconnects to the second node by itself, declares its topology there, turns ready
//! again, and orders placed afterwards complete; the dead-letter admin reaches the second node
//! too.

use std::time::Duration;

use uuid::Uuid;

use crate::harness::eventually;
use crate::harness::fleet::{Api, FleetOptions, Service, saga_work_queues};
use crate::harness::rabbitmq::RabbitMq;
use crate::scenario::Scenario;
use crate::stream::order_body;

/// How long an order may take to complete, or the fleet to move to the other node.
const WAIT: Duration = Duration::from_secs(30);

/// Places `count` orders that complete (the stream's first, always-paid mix) and waits until
/// each has.
async fn orders_complete(api: &Api, label: &str, count: usize) {
    let mut placed: Vec<Uuid> = Vec::new();
    for index in 0..count {
        let body = order_body(index);
        let key = format!("failover-{label}-{index}-{}", Uuid::new_v4().simple());
        let order_id = eventually(&format!("order {label} {index} accepted"), WAIT, || {
            let (body, key) = (&body, &key);
            async move { api.place_order(index, body, key).await.ok() }
        })
        .await;
        placed.push(order_id);
    }
    for order_id in placed {
        eventually(
            &format!("order {order_id} ({label}) completed"),
            WAIT,
            || async move {
                let order = api.order(order_id).await.ok()?;
                (order["status"] == "COMPLETED").then_some(())
            },
        )
        .await;
    }
}

/// Consumers of each saga work queue on `node`; `None` for a queue it does not have.
async fn consumers(node: &RabbitMq) -> Vec<(&'static str, Option<u32>)> {
    let mut found = Vec::new();
    for (queue, _, _) in saga_work_queues() {
        let count = node
            .consumers(queue)
            .await
            .unwrap_or_else(|e| panic!("cannot ask about {queue}: {e}"));
        found.push((queue, count));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_given_two_addresses_move_to_the_second_when_the_first_stops() {
    let mut scenario = Scenario::begin(
        "failover to a second rabbitmq",
        FleetOptions::default().with_second_rabbitmq(),
    )
    .await;

    // Both addresses given, the first is used: it has the consumers, the second not even the
    // queues.
    orders_complete(&scenario.fleet.api, "first-node", 3).await;
    for (queue, count) in consumers(&scenario.fleet.rabbitmq).await {
        assert!(
            count >= Some(1),
            "{queue} has no consumer on the first node"
        );
    }
    let second = scenario
        .fleet
        .second_rabbitmq
        .as_ref()
        .expect("the fleet has a second node");
    for (queue, count) in consumers(second).await {
        assert_eq!(
            count, None,
            "{queue} was declared on the second node already"
        );
    }
    scenario.mark("orders completed on the first node");

    scenario.fleet.rabbitmq.stop().await;
    scenario.mark("first node stopped");
    let second = scenario
        .fleet
        .second_rabbitmq
        .as_ref()
        .expect("the fleet has a second node");
    eventually(
        "every work queue consumed on the second node",
        WAIT,
        || async {
            consumers(second)
                .await
                .iter()
                .all(|(_, count)| *count >= Some(1))
                .then_some(())
        },
    )
    .await;
    scenario.fleet.wait_all_ready().await;
    scenario.mark("fleet ready on the second node");

    orders_complete(&scenario.fleet.api, "second-node", 3).await;
    scenario.mark("orders completed on the second node");
    // A connection of its own, through the same list: the first address refuses, the second
    // answers.
    for service in Service::ALL {
        let listed = scenario.fleet.api.dead_letters(service).await;
        assert!(
            listed.is_ok(),
            "{}'s dead letters are not reachable on the second node: {listed:?}",
            service.name()
        );
    }
}
