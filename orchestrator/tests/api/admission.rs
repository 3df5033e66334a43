//! Admission control: past the bound on sagas in flight, or with the intake's queue full,
//! `POST /api/orders` answers `503 overloaded` with `Retry-After` and writes nothing; once sagas
//! end, orders are accepted again; readiness stays 200 throughout.

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use reqwest::{Response, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use serde_json::Value;
use uuid::Uuid;

use orchestrator::configuration::AdmissionSettings;
use saga_common::testing::{PATIENCE, eventually};

use crate::helpers::{FleetOptions, TestFleet, database, order_body, spawn_fleet_with};

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            sql,
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Asserts `response` is the refusal: 503, `Retry-After: 1`, code `overloaded`.
async fn assert_overloaded(response: Response) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "overloaded", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

async fn assert_ready(fleet: &TestFleet) {
    let ready = fleet
        .get(format!("{}/health/ready", fleet.orchestrator.base))
        .await;
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn past_the_bound_on_sagas_in_flight_orders_are_refused_until_sagas_end() {
    // Without payment every saga waits for its charge: each order stays in flight.
    let mut fleet = spawn_fleet_with(FleetOptions {
        with_payment: false,
        admission: AdmissionSettings {
            max_in_flight: 5,
            ..AdmissionSettings::default()
        },
        ..FleetOptions::default()
    })
    .await;
    let db = database(&fleet.orchestrator.db_url).await;
    let mut accepted = Vec::new();
    for i in 0..5 {
        accepted.push(
            fleet
                .place(&order_body(&format!("amy-{i}"), "mug", 1, 100))
                .await,
        );
    }

    let body = order_body("amy-5", "mug", 1, 100);
    assert_overloaded(fleet.post_order_with_key(&body, "amy-5-key").await).await;
    assert_ready(&fleet).await;
    // Nothing written: no order, no idempotency key taken, no command.
    assert_eq!(count(&db, "SELECT count(*) AS n FROM orders").await, 5);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM orders WHERE idempotency_key = 'amy-5-key'"
        )
        .await,
        0
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM outbox").await, 5);

    // The sagas end (declined: nobody has an account), and their slots are free again.
    fleet.start_payment().await;
    for order_id in &accepted {
        fleet.wait_final(*order_id).await;
    }
    let retried = fleet.post_order_with_key(&body, "amy-5-key").await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    let retried: Value = retried.json().await.unwrap();
    let order_id: Uuid = retried["order_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(fleet.order(order_id).await["customer_id"], "amy-5");
}

#[tokio::test]
async fn with_the_intake_queue_full_orders_are_refused_at_once_and_the_queued_ones_written() {
    let fleet = spawn_fleet_with(FleetOptions {
        admission: AdmissionSettings {
            max_queued: 2,
            ..AdmissionSettings::default()
        },
        ..FleetOptions::default()
    })
    .await;
    let db = database(&fleet.orchestrator.db_url).await;
    // The intake's one writer blocks on its first order's insert while this lock is held.
    let lock = db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE orders IN SHARE MODE")
        .await
        .unwrap();
    let post = |customer: &str| {
        let (client, url, body) = (
            fleet.client.clone(),
            format!("{}/api/orders", fleet.orchestrator.base),
            order_body(customer, "mug", 1, 100),
        );
        tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap() })
    };
    let first = post("bo-0");
    eventually(
        "the intake's insert waiting on the lock",
        PATIENCE,
        || async {
            let waiting = count(
                &db,
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO orders%'",
            )
            .await;
            (waiting == 1).then_some(())
        },
    )
    .await;

    // The writer holds the first; two wait in the queue; the other two are refused.
    let mut others: FuturesUnordered<_> = (1..5).map(|i| post(&format!("bo-{i}"))).collect();
    for _ in 0..2 {
        let refused = tokio::time::timeout(PATIENCE, others.next())
            .await
            .expect("two refusals while the writer is blocked")
            .unwrap()
            .unwrap();
        assert_overloaded(refused).await;
    }
    assert_ready(&fleet).await;

    lock.rollback().await.unwrap();
    assert_eq!(first.await.unwrap().status(), StatusCode::ACCEPTED);
    while let Some(queued) = others.next().await {
        assert_eq!(queued.unwrap().status(), StatusCode::ACCEPTED);
    }
    assert_eq!(count(&db, "SELECT count(*) AS n FROM orders").await, 3);
}

#[test]
fn the_openapi_document_tells_clients_of_the_overloaded_refusal_and_its_retry_after() {
    use utoipa::OpenApi;
    let spec = serde_json::to_value(orchestrator::api_doc::ApiDoc::openapi()).unwrap();
    let refusal = &spec["paths"]["/api/orders"]["post"]["responses"]["503"];
    assert!(
        refusal["description"]
            .as_str()
            .is_some_and(|d| d.contains("overloaded")),
        "{refusal}"
    );
    assert!(refusal["headers"]["Retry-After"].is_object(), "{refusal}");
}
