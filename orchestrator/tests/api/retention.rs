//! Retention on the orchestrator: finished orders go with their transitions after
//! `retention.history`; a saga in flight, its transitions and its outbox rows never do; and
//! pruning running all along beside a stream of orders through the three services loses nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use saga_common::configuration::RetentionSettings;
use saga_common::contracts::{self, Payload};
use saga_common::messaging::topology;
use saga_common::testing::{PATIENCE, Tap, eventually, execute, number, uuid_v7_ago};
use uuid::Uuid;

use crate::helpers::{FleetOptions, TestFleet, order_body, spawn_fleet_with};

const DAY: Duration = Duration::from_secs(86_400);

/// An order in `state`, its id made `age` ago and last changed `updated` ago, with two
/// transitions and one published outbox row.
fn order(order_id: Uuid, state: &str, age: Duration, updated: &str) -> String {
    let failure = if state == "FAILED" {
        "'timed_out'"
    } else {
        "NULL"
    };
    format!(
        "INSERT INTO orders (order_id, customer_id, items, total_cents, saga_state, failure_reason, \
           correlation_id, created_at, updated_at) VALUES ('{order_id}', 'c', '[]', 1, '{state}', \
           {failure}, 'c', now() - interval '{age} seconds', now() - interval '{updated}'); \
         INSERT INTO saga_transitions (order_id, to_state, trigger, message_id) VALUES \
           ('{order_id}', 'AWAITING_PAYMENT', 'order.placed', '{}'), \
           ('{order_id}', '{state}', 'test', '{}'); \
         INSERT INTO outbox (message_id, exchange, routing_key, message_type, saga_id, body, \
           created_at) VALUES ('{}', 'x', 'k', 'test', '{order_id}', '{{}}', \
           now() - interval '{age} seconds'); \
         DELETE FROM outbox_pending;",
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        age = age.as_secs()
    )
}

/// Rows of `order_id` in `table` (`saga_id` for the outbox).
async fn rows_of(fleet: &TestFleet, table: &str, order_id: Uuid) -> i64 {
    let column = if table == "outbox" {
        "saga_id"
    } else {
        "order_id"
    };
    number(
        &fleet.orchestrator.db_url,
        &format!("SELECT count(*) AS n FROM {table} WHERE {column} = '{order_id}'"),
    )
    .await
}

async fn prune(fleet: &TestFleet, dry_run: bool) -> serde_json::Value {
    let response =
        saga_common::testing::prune(&fleet.client, &fleet.orchestrator.base, dry_run).await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn finished_orders_go_with_their_transitions_and_a_saga_in_flight_keeps_everything() {
    let fleet = spawn_fleet_with(FleetOptions {
        with_payment: false,
        with_inventory: false,
        retention: RetentionSettings {
            enabled: false,
            ..RetentionSettings::default()
        },
        ..FleetOptions::default()
    })
    .await;
    let completed = uuid_v7_ago(31 * DAY);
    let failed = uuid_v7_ago(31 * DAY);
    let in_flight = uuid_v7_ago(31 * DAY);
    let young = uuid_v7_ago(29 * DAY);
    let failed_lately = uuid_v7_ago(31 * DAY);
    execute(
        &fleet.orchestrator.db_url,
        &[
            order(completed, "COMPLETED", 31 * DAY, "31 days"),
            order(failed, "FAILED", 31 * DAY, "31 days"),
            order(in_flight, "AWAITING_STOCK", 31 * DAY, "31 days"),
            order(young, "COMPLETED", 29 * DAY, "29 days"),
            order(failed_lately, "FAILED", 31 * DAY, "1 day"),
        ]
        .concat(),
    )
    .await;

    let dry = prune(&fleet, true).await;
    let rule = |report: &serde_json::Value, name: &str| {
        report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|rule| rule["rule"] == name)
            .unwrap()["removed"]
            .clone()
    };
    assert_eq!(rule(&dry, "orders")["orders"], 2, "{dry}");
    assert_eq!(rule(&dry, "outbox")["outbox"], 4, "{dry}");
    assert_eq!(rows_of(&fleet, "orders", completed).await, 1, "dry");

    let run = prune(&fleet, false).await;
    assert_eq!(rule(&run, "orders")["orders"], 2, "{run}");
    assert_eq!(rule(&run, "orders")["saga_transitions"], 4, "{run}");
    // Published and 31 days old: all but the in-flight saga's row, which a resend may copy.
    assert_eq!(rule(&run, "outbox")["outbox"], 4, "{run}");
    for (order_id, orders, outbox) in [
        (completed, 0, 0),
        (failed, 0, 0),
        (in_flight, 1, 1),
        (young, 1, 0),
        (failed_lately, 1, 0),
    ] {
        assert_eq!(rows_of(&fleet, "orders", order_id).await, orders);
        assert_eq!(
            rows_of(&fleet, "saga_transitions", order_id).await,
            orders * 2
        );
        assert_eq!(rows_of(&fleet, "outbox", order_id).await, outbox);
    }
    let tuned = number(
        &fleet.orchestrator.db_url,
        "SELECT count(*) AS n FROM pg_class WHERE relname IN ('orders', 'saga_transitions') \
         AND 'autovacuum_vacuum_scale_factor=0.02' = ANY(reloptions)",
    )
    .await;
    assert_eq!(tuned, 2, "orders and transitions are vacuumed sooner");
}

const CUSTOMERS: usize = 4;
const PRODUCTS: usize = 3;
const ORDERS: usize = 240;
const HISTORY: Duration = Duration::from_secs(20);

#[tokio::test]
async fn pruning_all_along_beside_a_stream_of_orders_loses_nothing() {
    let fleet = spawn_fleet_with(FleetOptions {
        // Every second, short windows and tiny batches: pruning runs all through the stream.
        // The windows still outlast any saga and message of the stream on a loaded machine: a
        // copy older than `inbox_window` is refused, and a payment pruned while its saga is in
        // flight could not be refunded.
        retention: RetentionSettings {
            enabled: true,
            schedule: "* * * * * *".into(),
            inbox_window: HISTORY,
            published_outbox: Duration::ZERO,
            history: HISTORY,
            batch_size: 25,
            batch_pause: Duration::from_millis(1),
            max_batches_per_run: 20,
        },
        ..FleetOptions::default()
    })
    .await;
    // Balances and stock that run out part-way, so orders complete, are declined and are
    // refunded for want of stock.
    for customer in 0..CUSTOMERS {
        fleet.set_balance(&format!("c{customer}"), 3_000).await;
    }
    for product in 0..PRODUCTS {
        fleet.set_stock(&format!("p{product}"), 60).await;
    }
    let mut events = Tap::bind(
        &fleet.vhost.amqp_url,
        topology::EVENTS_EXCHANGE,
        &[
            contracts::OrderCompleted::TYPE,
            contracts::OrderFailed::TYPE,
        ],
    )
    .await;

    let mut placed: HashMap<Uuid, (String, String, i64, i64)> = HashMap::new();
    for wave in 0..ORDERS / 12 {
        let mut waiting = Vec::new();
        for i in 0..12 {
            let n = wave * 12 + i;
            let (customer, product) = (format!("c{}", n % CUSTOMERS), format!("p{}", n % PRODUCTS));
            let (quantity, price) = (1 + (n % 2) as i64, 25);
            let body = order_body(&customer, &product, quantity, price);
            waiting.push((customer, product, quantity, price, body));
        }
        for (customer, product, quantity, price, body) in waiting {
            let order_id = fleet.place(&body).await;
            placed.insert(order_id, (customer, product, quantity, quantity * price));
        }
        // A steady stream over several pruning runs rather than one burst.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut completed = HashSet::new();
    let mut failed = HashSet::new();
    while completed.len() + failed.len() < ORDERS {
        let event = events.next().await;
        match event.message_type.as_str() {
            t if t == contracts::OrderCompleted::TYPE => completed.insert(event.saga_id),
            _ => failed.insert(event.saga_id),
        };
    }
    assert!(
        completed.is_disjoint(&failed),
        "an order both completed and failed"
    );
    assert!(
        completed
            .iter()
            .chain(&failed)
            .all(|id| placed.contains_key(id))
    );
    assert!(!completed.is_empty() && !failed.is_empty(), "both outcomes");

    // Money: what left the accounts is what the completed orders cost.
    let mut spent = 0;
    for customer in 0..CUSTOMERS {
        spent += 3_000 - fleet.balance(&format!("c{customer}")).await;
    }
    let cost: i64 = completed.iter().map(|id| placed[id].3).sum();
    assert_eq!(spent, cost, "money conserved");
    // Stock: what is held is what the completed orders took; none appeared or vanished.
    for product in 0..PRODUCTS {
        let name = format!("p{product}");
        let (available, reserved) = fleet.stock(&name).await;
        let taken: i64 = completed
            .iter()
            .filter(|id| placed[*id].1 == name)
            .map(|id| placed[id].2)
            .sum();
        assert_eq!((available + reserved, reserved), (60, taken), "{name}");
    }

    // The pruner kept up: every finished order, its records and the published rows go.
    for (url, table) in [
        (&fleet.orchestrator.db_url, "orders"),
        (&fleet.orchestrator.db_url, "saga_transitions"),
        (&fleet.orchestrator.db_url, "outbox"),
        (&fleet.payment.db_url, "payments"),
        (&fleet.payment.db_url, "outbox"),
        (&fleet.inventory.db_url, "reservations"),
        (&fleet.inventory.db_url, "outbox"),
    ] {
        let sql = format!("SELECT count(*) AS n FROM {table}");
        eventually(
            &format!("{table} pruned"),
            HISTORY + PATIENCE * 2,
            || async { (number(url, &sql).await == 0).then_some(()) },
        )
        .await;
    }
}
