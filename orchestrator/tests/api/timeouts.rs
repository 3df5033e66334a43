use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use uuid::Uuid;

use orchestrator::configuration::SagaSettings;
use orchestrator::saga::facts;
use orchestrator::saga::timeouts::{SweepReport, sweep};
use saga_common::messaging::Probe;
use saga_common::messaging::outbox::RelayWakeup;
use saga_common::testing::{PATIENCE, eventually, lifecycle_lines};
use sea_orm_migration::MigratorTrait;

use crate::helpers::{FleetOptions, TestFleet, database, order_body, query_one, spawn_fleet_with};

/// Deadlines that only the test triggers: the scheduled sweep runs once a year.
pub(crate) fn manual_sweeps(max_resends: i32) -> SagaSettings {
    SagaSettings {
        max_resends,
        sweep_schedule: "0 0 0 1 1 *".into(),
        ..SagaSettings::default()
    }
}

pub(crate) async fn fleet_without_payment(saga: SagaSettings) -> TestFleet {
    spawn_fleet_with(FleetOptions {
        saga,
        with_payment: false,
        ..FleetOptions::default()
    })
    .await
}

pub(crate) async fn expire(fleet: &TestFleet, order_id: Uuid) {
    let db = database(&fleet.orchestrator.db_url).await;
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "UPDATE orders SET deadline_at = now() - interval '1 second' WHERE order_id = $1",
        [order_id.into()],
    ))
    .await
    .unwrap();
}

async fn count(db: &sea_orm::DatabaseConnection, sql: &str, id: Uuid) -> i64 {
    query_one(
        db,
        &format!("SELECT to_json(count(*)) AS row FROM {sql}"),
        vec![id.into()],
    )
    .await
    .as_i64()
    .unwrap()
}

pub(crate) fn last_step(timeline: &Value) -> &Value {
    timeline["transitions"].as_array().unwrap().last().unwrap()
}

#[tokio::test]
async fn a_saga_past_its_deadline_has_its_command_resent_with_the_same_id() {
    let settings = manual_sweeps(3);
    let fleet = fleet_without_payment(settings.clone()).await;
    fleet.set_stock("lamp", 1).await;
    let order_id = fleet.place(&order_body("ann", "lamp", 1, 100)).await;
    let db = database(&fleet.orchestrator.db_url).await;

    // Not overdue yet: nothing to do.
    assert_eq!(
        sweep(&db, &settings, &RelayWakeup::default(), &Probe::default())
            .await
            .unwrap(),
        SweepReport::default()
    );
    let gauges = facts::read(&db).await.unwrap();
    assert_eq!(gauges.in_state("AWAITING_PAYMENT"), 1);
    assert_eq!(gauges.overdue, 0);
    expire(&fleet, order_id).await;
    assert_eq!(facts::read(&db).await.unwrap().overdue, 1);
    let report = sweep(&db, &settings, &RelayWakeup::default(), &Probe::default())
        .await
        .unwrap();

    assert_eq!(
        report,
        SweepReport {
            resent: 1,
            ..SweepReport::default()
        }
    );
    assert_eq!(facts::read(&db).await.unwrap().overdue, 0);
    // Said once the sweep committed, for operators.
    let resent = lifecycle_lines().of_order("saga.timeout_resent", order_id);
    assert_eq!(resent.len(), 1, "{resent:?}");
    assert_eq!(resent[0]["state"], "AWAITING_PAYMENT");
    assert_eq!(resent[0]["resends"], 1);
    assert_eq!(resent[0]["level"], 40);
    let charge_id = query_one(
        &db,
        "SELECT to_json(pending_message_id) AS row FROM orders WHERE order_id = $1",
        vec![order_id.into()],
    )
    .await;
    let copies = query_one(
        &db,
        "SELECT to_json(count(*)) AS row FROM outbox WHERE message_id = $1::text::uuid",
        vec![charge_id.as_str().unwrap().to_owned().into()],
    )
    .await;
    assert_eq!(copies, 2, "the charge is queued again under its own id");
    let order = fleet.order(order_id).await;
    assert_eq!(order["status"], "PENDING");
    let timeline = fleet.timeline(order_id).await;
    let step = last_step(&timeline);
    assert_eq!(step["trigger"], "deadline.passed");
    assert_eq!(step["from_state"], "AWAITING_PAYMENT");
    assert_eq!(step["to_state"], "AWAITING_PAYMENT");
    assert_eq!(step["commands"][0], "payment.charge");
    // The new deadline is in the future again.
    assert_eq!(
        sweep(&db, &settings, &RelayWakeup::default(), &Probe::default())
            .await
            .unwrap(),
        SweepReport::default()
    );
}

#[tokio::test]
async fn a_saga_out_of_resends_compensates_instead() {
    let settings = manual_sweeps(0);
    let fleet = fleet_without_payment(settings.clone()).await;
    fleet.set_stock("lamp", 1).await;
    let order_id = fleet.place(&order_body("ann", "lamp", 1, 100)).await;
    let db = database(&fleet.orchestrator.db_url).await;

    expire(&fleet, order_id).await;
    let report = sweep(&db, &settings, &RelayWakeup::default(), &Probe::default())
        .await
        .unwrap();

    assert_eq!(
        report,
        SweepReport {
            compensated: 1,
            ..SweepReport::default()
        }
    );
    let step = last_step(&fleet.timeline(order_id).await).clone();
    assert_eq!(step["trigger"], "deadline.resends_exhausted");
    assert_eq!(step["to_state"], "REFUNDING_PAYMENT");
    assert_eq!(step["commands"][0], "payment.refund");
    assert_eq!(
        count(
            &db,
            "outbox WHERE saga_id = $1 AND message_type = 'payment.refund'",
            order_id
        )
        .await,
        1
    );
}

#[tokio::test]
async fn two_sweepers_at_once_never_handle_one_saga_twice() {
    let settings = manual_sweeps(3);
    let fleet = fleet_without_payment(settings.clone()).await;
    fleet.set_stock("lamp", 100).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(fleet.place(&order_body("ann", "lamp", 1, 100)).await);
    }
    for id in &ids {
        expire(&fleet, *id).await;
    }
    let (db_a, db_b) = (
        database(&fleet.orchestrator.db_url).await,
        database(&fleet.orchestrator.db_url).await,
    );

    let (wakeup, probe) = (RelayWakeup::default(), Probe::default());
    let (a, b) = tokio::join!(
        sweep(&db_a, &settings, &wakeup, &probe),
        sweep(&db_b, &settings, &wakeup, &probe)
    );

    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.resent + b.resent, 20);
    for id in ids {
        let resends = query_one(
            &db_a,
            "SELECT to_json(resends) AS row FROM orders WHERE order_id = $1",
            vec![id.into()],
        )
        .await;
        assert_eq!(resends, 1, "saga {id} handled twice or never");
    }
}

#[tokio::test]
async fn a_participant_down_past_the_deadline_is_compensated_and_late_replies_change_nothing() {
    let settings = SagaSettings {
        awaiting_payment_timeout_ms: 300,
        compensation_timeout_ms: 300,
        max_resends: 1,
        ..SagaSettings::default()
    };
    let mut fleet = fleet_without_payment(settings).await;
    fleet.set_stock("lamp", 3).await;
    let order_id = fleet.place(&order_body("bea", "lamp", 1, 700)).await;

    // The worker resends once, then gives up and starts refunding; payment is still down.
    eventually("compensation to start", PATIENCE, || async {
        let timeline = fleet.timeline(order_id).await;
        (last_step(&timeline)["to_state"] == "REFUNDING_PAYMENT").then_some(())
    })
    .await;

    // Payment comes back with the customer's account, and finds the charge, its resend and the
    // refund(s) waiting, in whatever order its consumers take them.
    let payment_db = Database::connect(&fleet.payment.db_url).await.unwrap();
    payment::migration::Migrator::up(&payment_db, None)
        .await
        .unwrap();
    payment_db
        .execute_unprepared(
            "INSERT INTO accounts (customer_id, balance_cents) VALUES ('bea', 1000)",
        )
        .await
        .unwrap();
    fleet.start_payment().await;

    let order = fleet.wait_final(order_id).await;
    assert_eq!(order["status"], "FAILED");
    assert_eq!(order["failure_reason"], "timed_out");
    assert_eq!(
        fleet.balance("bea").await,
        1_000,
        "no money kept for a failed order"
    );
    let payments = fleet.payments(order_id).await;
    assert_eq!(payments.len(), 1);
    assert_ne!(payments[0]["status"], "CHARGED");
    assert_eq!(fleet.stock("lamp").await, (3, 0));

    // Whatever arrives late (the resent charge's reply) leaves the order as it is.
    let saga_db = database(&fleet.orchestrator.db_url).await;
    eventually("every payment reply to be consumed", PATIENCE, || async {
        let pending = query_one(
            &payment_db,
            "SELECT to_json(count(*)) AS row FROM outbox_pending",
            vec![],
        )
        .await;
        let handled = query_one(
            &saga_db,
            "SELECT to_json(count(*)) AS row FROM inbox",
            vec![],
        )
        .await;
        let sent = query_one(
            &payment_db,
            "SELECT to_json(count(DISTINCT message_id)) AS row FROM outbox",
            vec![],
        )
        .await;
        (pending == 0 && handled == sent).then_some(())
    })
    .await;
    let order = fleet.order(order_id).await;
    assert_eq!(order["failure_reason"], "timed_out");
    assert_eq!(fleet.balance("bea").await, 1_000);
}

#[tokio::test]
async fn stock_that_never_answers_is_released_and_the_charge_refunded() {
    let settings = SagaSettings {
        awaiting_stock_timeout_ms: 300,
        compensation_timeout_ms: 300,
        max_resends: 1,
        ..SagaSettings::default()
    };
    let mut fleet = spawn_fleet_with(FleetOptions {
        saga: settings,
        with_inventory: false,
        ..FleetOptions::default()
    })
    .await;
    fleet.set_balance("cid", 5_000).await;
    let order_id = fleet.place(&order_body("cid", "sofa", 2, 1_000)).await;

    eventually("the release to be under way", PATIENCE, || async {
        let timeline = fleet.timeline(order_id).await;
        (last_step(&timeline)["to_state"] == "RELEASING_STOCK").then_some(())
    })
    .await;
    assert_eq!(
        fleet.balance("cid").await,
        3_000,
        "charged while stock was away"
    );

    // Inventory returns with the product in stock and finds reserve(s) and release(s) queued.
    let inventory_db = Database::connect(&fleet.inventory.db_url).await.unwrap();
    inventory::migration::Migrator::up(&inventory_db, None)
        .await
        .unwrap();
    inventory_db
        .execute_unprepared("INSERT INTO products (product_id, available) VALUES ('sofa', 10)")
        .await
        .unwrap();
    fleet.start_inventory().await;

    let order = fleet.wait_final(order_id).await;
    assert_eq!(order["failure_reason"], "timed_out");
    assert_eq!(fleet.balance("cid").await, 5_000, "refunded");
    assert_eq!(fleet.stock("sofa").await, (10, 0), "nothing kept reserved");
    let mut states: Vec<String> = fleet.timeline(order_id).await["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to_state"].as_str().unwrap().to_owned())
        .collect();
    states.dedup(); // resends stay in their state
    assert!(states.ends_with(&[
        "RELEASING_STOCK".to_owned(),
        "REFUNDING_PAYMENT".to_owned(),
        "FAILED".to_owned()
    ]));
}

/// The trace id of a `traceparent` (its second field).
fn trace_id_of(traceparent: &Value) -> String {
    let text = traceparent.as_str().unwrap_or_default();
    assert_eq!(text.len(), 55, "a W3C traceparent: {traceparent}");
    text.split('-').nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn a_compensation_the_sweep_starts_continues_the_orders_trace() {
    let settings = manual_sweeps(0);
    let fleet = fleet_without_payment(settings.clone()).await;
    fleet.set_stock("lamp", 1).await;
    let order_id = fleet.place(&order_body("ann", "lamp", 1, 100)).await;
    let db = database(&fleet.orchestrator.db_url).await;
    let sql = |what: &str| {
        format!(
            "SELECT to_json({what}) AS row FROM {}",
            "outbox WHERE saga_id = $1 AND message_type = $2"
        )
    };
    let placed = query_one(
        &db,
        "SELECT to_json(traceparent) AS row FROM orders WHERE order_id = $1",
        vec![order_id.into()],
    )
    .await;
    let charge = query_one(
        &db,
        &sql("body::json->'traceparent'"),
        vec![order_id.into(), "payment.charge".into()],
    )
    .await;
    assert_eq!(
        placed, charge,
        "the order keeps the context its first step wrote"
    );

    expire(&fleet, order_id).await;
    sweep(&db, &settings, &RelayWakeup::default(), &Probe::default())
        .await
        .unwrap();

    let refund = query_one(
        &db,
        &sql("body::json->'traceparent'"),
        vec![order_id.into(), "payment.refund".into()],
    )
    .await;
    assert_eq!(
        trace_id_of(&refund),
        trace_id_of(&placed),
        "one order, one trace"
    );
    assert_ne!(
        refund, placed,
        "the refund's parent is the sweep's transition span"
    );
}
