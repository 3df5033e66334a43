//! The orchestrator's own background tasks stop on the service's shutdown signal: the order
//! intake (after writing what it accepted) and the timeout worker.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use uuid::Uuid;

use orchestrator::configuration::{IntakeSettings, SagaSettings};
use orchestrator::orders::intake::{Intake, IntakeError, Placed, Placement};
use orchestrator::orders::model::{Order, OrderItem};
use orchestrator::saga::SagaState;
use orchestrator::saga::plan::{self, ORDER_PLACED, Trigger};
use orchestrator::saga::store as sagas;
use saga_common::messaging::outbox::RelayWakeup;
use saga_common::shutdown::Shutdown;
use saga_common::testing::{PATIENCE, create_database, eventually};
use sea_orm_migration::MigratorTrait;

async fn orchestrator_database() -> DatabaseConnection {
    saga_common::testing::init_test_telemetry();
    let db = Database::connect(create_database("orchestrator").await)
        .await
        .unwrap();
    orchestrator::migration::Migrator::up(&db, None)
        .await
        .unwrap();
    db
}

fn placement(settings: &SagaSettings) -> Placement {
    let now = Utc::now();
    let order = Order {
        order_id: Uuid::now_v7(),
        customer_id: "lee".into(),
        items: vec![OrderItem {
            product_id: "p".into(),
            quantity: 1,
            unit_price_cents: 10,
        }],
        total_cents: 10,
        state: SagaState::AwaitingPayment,
        correlation_id: "c".into(),
        idempotency_key: None,
        created_at: now,
        updated_at: now,
        traceparent: None,
    };
    let trigger = Trigger {
        kind: ORDER_PLACED,
        message_id: Uuid::now_v7(),
        correlation_id: "c",
        parent: None,
    };
    let first = plan::start(&order.new_saga(), &trigger, settings, now).unwrap();
    Placement { order, first }
}

async fn count(db: &DatabaseConnection, table: &str) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT count(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

#[tokio::test]
async fn the_intake_writes_what_it_accepted_then_stops_on_the_signal() {
    let db = orchestrator_database().await;
    let settings = SagaSettings::default();
    let (intake, writer) = Intake::new(&IntakeSettings::default(), None);
    // Accepted before the writer runs: queued, not yet written.
    let queued: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn({
                let (intake, placement) = (intake.clone(), placement(&settings));
                async move { intake.place(placement).await }
            })
        })
        .collect();
    let stop = Shutdown::new();
    stop.trigger();
    let task = writer.spawn(
        db.clone(),
        RelayWakeup::default(),
        stop,
        Duration::from_millis(500),
    );

    // This test still holds a handle: only the signal can end the task.
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the intake to stop after the signal")
        .unwrap();
    for placed in queued {
        assert!(matches!(placed.await.unwrap(), Ok(Placed::Inserted)));
    }
    assert_eq!(count(&db, "orders").await, 5);
    assert_eq!(count(&db, "saga_transitions").await, 5);
    assert_eq!(count(&db, "outbox").await, 5);
    assert!(matches!(
        intake.place(placement(&settings)).await,
        Err(IntakeError::Stopped)
    ));
}

#[tokio::test]
async fn the_timeout_worker_sweeps_until_the_signal_then_stops() {
    let db = orchestrator_database().await;
    let settings = SagaSettings {
        max_resends: 0,
        sweep_schedule: "*/1 * * * * *".into(),
        ..SagaSettings::default()
    };
    // A saga already past its deadline, with no resend left: the sweep compensates it.
    let placement = placement(&settings);
    let mut step = placement.first.step.clone();
    step.deadline_at = Some(Utc::now() - chrono::Duration::seconds(1));
    orchestrator::orders::store::insert_all(&db, &[(&placement.order, &step)])
        .await
        .unwrap();
    let stop = Shutdown::new();
    let task = orchestrator::saga::timeouts::start(
        db.clone(),
        settings,
        RelayWakeup::default(),
        Default::default(),
        stop.clone(),
    )
    .await
    .unwrap();

    let order_id = placement.order.order_id;
    eventually("the sweep to compensate the overdue saga", PATIENCE, || {
        let db = db.clone();
        async move {
            let saga = sagas::find(&db, order_id).await.unwrap()?;
            matches!(saga.state, SagaState::RefundingPayment(_)).then_some(())
        }
    })
    .await;
    assert!(!task.is_finished(), "the worker runs until the signal");

    stop.trigger();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the timeout worker to stop after the signal")
        .unwrap();
}
