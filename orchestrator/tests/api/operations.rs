//! Operator endpoints on sagas: stuck listing, retry, compensate, behind the admin token.

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use orchestrator::configuration::SagaSettings;

use crate::helpers::{
    ADMIN_TOKEN, FleetOptions, TestFleet, database, order_body, query_one, spawn_fleet_with,
};

pub async fn operator(fleet: &TestFleet, method: reqwest::Method, path: &str) -> reqwest::Response {
    fleet
        .client
        .request(method, format!("{}{path}", fleet.orchestrator.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

/// The items of a saga search, which must answer 200.
pub async fn sagas(fleet: &TestFleet, path: &str) -> Vec<Value> {
    let response = operator(fleet, reqwest::Method::GET, path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let page: Value = response.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

pub async fn fleet_without_payment() -> TestFleet {
    spawn_fleet_with(FleetOptions {
        // Only the test moves deadlines; the scheduled sweep runs once a year.
        saga: SagaSettings {
            sweep_schedule: "0 0 0 1 1 *".into(),
            ..SagaSettings::default()
        },
        with_payment: false,
        ..FleetOptions::default()
    })
    .await
}

#[tokio::test]
async fn operator_routes_need_the_admin_token() {
    let fleet = fleet_without_payment().await;
    let base = &fleet.orchestrator.base;
    let anonymous = fleet
        .anonymous
        .get(format!("{base}/api/sagas"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    let wrong = fleet
        .client
        .post(format!("{base}/api/sagas/{}/retry", Uuid::now_v7()))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_operator_sees_a_stuck_saga_retries_it_and_then_compensates_it() {
    let fleet = fleet_without_payment().await;
    fleet.set_stock("lamp", 1).await;
    let order_id = fleet.place(&order_body("eve", "lamp", 1, 100)).await;

    let in_progress = sagas(&fleet, "/api/sagas?status=PENDING").await;
    assert_eq!(in_progress.len(), 1);
    assert_eq!(in_progress[0]["state"], "AWAITING_PAYMENT");
    assert_eq!(in_progress[0]["stuck"], false);
    let stuck = sagas(&fleet, "/api/sagas?stuck=true").await;
    assert!(stuck.is_empty());

    let db = database(&fleet.orchestrator.db_url).await;
    query_one(
        &db,
        "UPDATE orders SET deadline_at = now() - interval '1 second' WHERE order_id = $1 RETURNING to_json(order_id) AS row",
        vec![order_id.into()],
    )
    .await;
    let stuck = sagas(&fleet, "/api/sagas?stuck=true").await;
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0]["order_id"], order_id.to_string());
    assert_eq!(stuck[0]["stuck"], true);

    let retried = operator(
        &fleet,
        reqwest::Method::POST,
        &format!("/api/sagas/{order_id}/retry"),
    )
    .await;
    assert_eq!(retried.status(), StatusCode::OK);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["resends"], 1);
    assert_eq!(
        retried["stuck"], false,
        "a retry gives the saga a new deadline"
    );

    let compensated = operator(
        &fleet,
        reqwest::Method::POST,
        &format!("/api/sagas/{order_id}/compensate"),
    )
    .await;
    assert_eq!(compensated.status(), StatusCode::OK);
    let compensated: Value = compensated.json().await.unwrap();
    assert_eq!(compensated["state"], "REFUNDING_PAYMENT");
    assert_eq!(compensated["failure_reason"], "timed_out");

    let timeline = fleet.timeline(order_id).await;
    let triggers: Vec<&str> = timeline["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(
        triggers,
        ["order.placed", "operator.retry", "operator.compensate"]
    );
    assert_eq!(timeline["transitions"][1]["commands"][0], "payment.charge");
    assert_eq!(timeline["transitions"][2]["commands"][0], "payment.refund");
    // Each action is in the log, where it left the saga.
    let lines = saga_common::testing::lifecycle_lines();
    let retried = lines.of_order("saga.operator_retried", order_id);
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(retried[0]["state"], "AWAITING_PAYMENT");
    let compensating = lines.of_order("saga.operator_compensating", order_id);
    assert_eq!(compensating.len(), 1, "{compensating:?}");
    assert_eq!(compensating[0]["state"], "REFUNDING_PAYMENT");
}

#[tokio::test]
async fn operator_actions_on_unknown_or_final_sagas_are_refused() {
    let fleet = spawn_fleet_with(FleetOptions::default()).await;
    let missing = operator(
        &fleet,
        reqwest::Method::POST,
        &format!("/api/sagas/{}/retry", Uuid::now_v7()),
    )
    .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let malformed = operator(&fleet, reqwest::Method::POST, "/api/sagas/nope/compensate").await;
    assert_eq!(malformed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_filter = operator(&fleet, reqwest::Method::GET, "/api/sagas?stuck=maybe").await;
    assert_eq!(bad_filter.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Declined at once (no account): final.
    let order_id = fleet.place(&order_body("nobody", "lamp", 1, 100)).await;
    fleet.wait_final(order_id).await;
    let refused = operator(
        &fleet,
        reqwest::Method::POST,
        &format!("/api/sagas/{order_id}/compensate"),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "saga_final");
}
