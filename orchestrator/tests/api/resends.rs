//! Resends while a participant is down: they back off, they are one timeline entry with a
//! count, and they leave one copy of each command in the participant's queue; the saga ends as
//! soon as the participant is back.

use chrono::{DateTime, Utc};
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;
use uuid::Uuid;

use orchestrator::configuration::SagaSettings;
use orchestrator::saga::plan::backoff;
use orchestrator::saga::timeouts::{SweepReport, sweep};
use saga_common::messaging::Probe;
use saga_common::messaging::outbox::RelayWakeup;
use saga_common::messaging::topology::PAYMENT_COMMANDS;
use saga_common::testing::{PATIENCE, TestVhost, eventually};
use sea_orm_migration::MigratorTrait;

use crate::helpers::{ADMIN_TOKEN, TestFleet, database, order_body, query_one};
use crate::timeouts::{expire, fleet_without_payment, last_step, manual_sweeps};

/// A probe on a connection of the test's own into the fleet's vhost (the sweep the test runs
/// has no service session to ask through).
async fn probe(vhost: &TestVhost) -> (lapin::Connection, Probe) {
    let connection =
        lapin::Connection::connect(&vhost.amqp_url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let probe = Probe::default();
    probe.set(Some(connection.create_channel().await.unwrap()));
    (connection, probe)
}

/// `(resends, deadline_at)` of the saga as stored.
async fn stored(db: &DatabaseConnection, order_id: Uuid) -> (i32, DateTime<Utc>) {
    let row = query_one(
        db,
        "SELECT json_build_object('resends', resends, 'deadline_at', deadline_at) AS row \
         FROM orders WHERE order_id = $1",
        vec![order_id.into()],
    )
    .await;
    (
        i32::try_from(row["resends"].as_i64().unwrap()).unwrap(),
        row["deadline_at"].as_str().unwrap().parse().unwrap(),
    )
}

async fn wait_for_copies(fleet: &TestFleet, queue: &str, copies: u32) {
    eventually(
        &format!("{copies} message(s) in {queue}"),
        PATIENCE,
        || async { (fleet.vhost.message_count(queue).await == copies).then_some(()) },
    )
    .await;
}

fn entries(timeline: &Value) -> Vec<Value> {
    timeline["transitions"].as_array().unwrap().clone()
}

/// Payment comes back with `customer`'s account.
async fn start_payment_with_account(fleet: &mut TestFleet, customer: &str, balance: i64) {
    let payment_db = Database::connect(&fleet.payment.db_url).await.unwrap();
    payment::migration::Migrator::up(&payment_db, None)
        .await
        .unwrap();
    payment_db
        .execute_unprepared(&format!(
            "INSERT INTO accounts (customer_id, balance_cents) VALUES ('{customer}', {balance})"
        ))
        .await
        .unwrap();
    fleet.start_payment().await;
}

#[tokio::test]
async fn a_compensating_saga_backs_off_and_leaves_one_copy_while_payment_is_down() {
    let settings = SagaSettings {
        compensation_timeout_ms: 1_000,
        max_resend_interval_ms: 5_000,
        ..manual_sweeps(3)
    };
    let mut fleet = fleet_without_payment(settings.clone()).await;
    fleet.set_stock("lamp", 1).await;
    let order_id = fleet.place(&order_body("ann", "lamp", 1, 100)).await;
    let db = database(&fleet.orchestrator.db_url).await;
    let (_connection, probe) = probe(&fleet.vhost).await;
    wait_for_copies(&fleet, PAYMENT_COMMANDS, 1).await;

    // An operator gives up on the charge: the refund joins it in the queue (published at once
    // through the service's own relay wake-up, which the sweeps below do not have).
    let compensated = fleet
        .client
        .post(format!(
            "{}/api/sagas/{order_id}/compensate",
            fleet.orchestrator.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(
        compensated.status().is_success(),
        "{}",
        compensated.status()
    );
    wait_for_copies(&fleet, PAYMENT_COMMANDS, 2).await;

    for n in 1..=4 {
        expire(&fleet, order_id).await;
        let before = Utc::now();
        let report = sweep(&db, &settings, &RelayWakeup::default(), &probe)
            .await
            .unwrap();
        let after = Utc::now();

        assert_eq!(
            report,
            SweepReport {
                held: 1,
                ..SweepReport::default()
            },
            "attempt {n}: payment has no consumer, its refund waits"
        );
        let (resends, deadline) = stored(&db, order_id).await;
        assert_eq!(resends, n, "each attempt is counted");
        // 2 s, 4 s, then the 5 s cap.
        let wait = chrono::Duration::milliseconds(i64::try_from(backoff(1_000, n, 5_000)).unwrap());
        assert!(
            before + wait <= deadline && deadline <= after + wait,
            "attempt {n}: deadline {deadline} is not {wait} after the sweep ({before}..{after})"
        );
    }
    // Nothing new was published: still the charge and the refund, once each.
    let outbox_copies = query_one(
        &db,
        "SELECT to_json(count(*)) AS row FROM outbox WHERE saga_id = $1",
        vec![order_id.into()],
    )
    .await;
    assert_eq!(outbox_copies, 2, "no copy of the refund was written");
    assert_eq!(fleet.vhost.message_count(PAYMENT_COMMANDS).await, 2);

    let timeline = entries(&fleet.timeline(order_id).await);
    let triggers: Vec<&str> = timeline
        .iter()
        .map(|t| t["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(
        triggers,
        [
            "order.placed",
            "operator.compensate",
            "deadline.participant_down"
        ]
    );
    let held = &timeline[2];
    assert_eq!(held["repeat_count"], 4);
    assert_eq!(held["from_state"], "REFUNDING_PAYMENT");
    assert_eq!(held["to_state"], "REFUNDING_PAYMENT");
    let first: DateTime<Utc> = held["occurred_at"].as_str().unwrap().parse().unwrap();
    let last: DateTime<Utc> = held["last_repeated_at"].as_str().unwrap().parse().unwrap();
    assert!(last > first, "{first} .. {last}");
    assert_eq!(timeline[0]["repeat_count"], 1);
    assert_eq!(timeline[0]["last_repeated_at"], Value::Null);

    // Payment comes back: the waiting charge and refund end the saga without another sweep.
    start_payment_with_account(&mut fleet, "ann", 1_000).await;
    let order = fleet.wait_final(order_id).await;
    assert_eq!(order["status"], "FAILED");
    assert_eq!(order["failure_reason"], "timed_out");
    assert_eq!(fleet.balance("ann").await, 1_000, "charged, then refunded");
}

#[tokio::test]
async fn a_resend_goes_out_while_the_participant_consumes() {
    let settings = manual_sweeps(3);
    let fleet = fleet_without_payment(settings.clone()).await;
    fleet.set_stock("lamp", 2).await;
    let orders = [
        fleet.place(&order_body("ann", "lamp", 1, 100)).await,
        fleet.place(&order_body("bob", "lamp", 1, 100)).await,
    ];
    let db = database(&fleet.orchestrator.db_url).await;
    let (connection, probe) = probe(&fleet.vhost).await;
    // A slow consumer: it takes one charge and never answers; the other waits in the queue.
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let _consumer = channel
        .basic_consume(
            PAYMENT_COMMANDS.into(),
            "slow-payment".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    wait_for_copies(&fleet, PAYMENT_COMMANDS, 1).await;

    for order_id in orders {
        expire(&fleet, order_id).await;
    }
    let report = sweep(&db, &settings, &RelayWakeup::default(), &probe)
        .await
        .unwrap();

    assert_eq!(
        report,
        SweepReport {
            resent: 2,
            ..SweepReport::default()
        },
        "a queue with a consumer is not a participant down, however many messages wait"
    );
    for order_id in orders {
        let step = last_step(&fleet.timeline(order_id).await).clone();
        assert_eq!(step["trigger"], "deadline.passed");
        assert_eq!(step["commands"][0], "payment.charge");
    }
}

#[tokio::test]
async fn a_saga_stuck_on_payment_keeps_a_short_timeline_and_ends_once_payment_is_back() {
    // The scheduled sweep, every second, asking the broker through the orchestrator's session.
    let settings = SagaSettings {
        awaiting_payment_timeout_ms: 1_000,
        compensation_timeout_ms: 100,
        max_resend_interval_ms: 400,
        max_resends: 1,
        ..SagaSettings::default()
    };
    let mut fleet = fleet_without_payment(settings).await;
    fleet.set_stock("lamp", 1).await;
    let order_id = fleet.place(&order_body("cy", "lamp", 1, 300)).await;

    // One forward attempt held, then the refund, then its attempts held, again and again.
    eventually("three held refunds in one entry", PATIENCE, || async {
        let timeline = fleet.timeline(order_id).await;
        let step = last_step(&timeline);
        (step["trigger"] == "deadline.participant_down"
            && step["to_state"] == "REFUNDING_PAYMENT"
            && step["repeat_count"].as_i64() >= Some(3))
        .then_some(())
    })
    .await;

    let timeline = entries(&fleet.timeline(order_id).await);
    let triggers: Vec<&str> = timeline
        .iter()
        .map(|t| t["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(
        triggers,
        [
            "order.placed",
            "deadline.participant_down",
            "deadline.resends_exhausted",
            "deadline.participant_down"
        ]
    );
    assert_eq!(
        fleet.vhost.message_count(PAYMENT_COMMANDS).await,
        2,
        "the charge and the refund, each once"
    );

    start_payment_with_account(&mut fleet, "cy", 1_000).await;
    let order = fleet.wait_final(order_id).await;
    assert_eq!(order["failure_reason"], "timed_out");
    assert_eq!(fleet.balance("cy").await, 1_000);
}

#[tokio::test]
async fn the_timeline_schema_documents_the_count_and_the_last_time() {
    let fleet = fleet_without_payment(manual_sweeps(3)).await;
    let spec: Value = fleet
        .get(format!("{}/api/docs/openapi.json", fleet.orchestrator.base))
        .await
        .json()
        .await
        .unwrap();
    let entry = &spec["components"]["schemas"]["TimelineEntry"];
    assert_eq!(entry["properties"]["repeat_count"]["type"], "integer");
    assert!(
        entry["properties"]["last_repeated_at"].is_object(),
        "{entry}"
    );
    let required = entry["required"].as_array().unwrap();
    assert!(required.contains(&Value::from("repeat_count")), "{entry}");
}
