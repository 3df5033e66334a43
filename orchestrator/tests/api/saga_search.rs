//! The operator's saga search (`GET /api/sagas` filters and pages) and bulk repair
//! (`POST /api/sagas/bulk/{retry,compensate}`). Payment is not started, so sagas wait in
//! AWAITING_PAYMENT until the test moves them (deadline, state, age) in the database.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ADMIN_TOKEN, TestFleet, database, order_body, query_one};
use crate::operations::{fleet_without_payment, sagas};

async fn place_with_correlation(fleet: &TestFleet, body: &Value, correlation: &str) -> Uuid {
    let response = fleet
        .client
        .post(format!("{}/api/orders", fleet.orchestrator.base))
        .header("X-Correlation-Id", correlation)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    body["order_id"].as_str().unwrap().parse().unwrap()
}

async fn sql(fleet: &TestFleet, statement: &str, order_id: Uuid) {
    let db = database(&fleet.orchestrator.db_url).await;
    let sql = format!("{statement} WHERE order_id = $1 RETURNING to_json(order_id) AS row");
    query_one(&db, &sql, vec![order_id.into()]).await;
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["order_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn bulk(fleet: &TestFleet, action: &str, body: Value) -> reqwest::Response {
    fleet
        .client
        .post(format!(
            "{}/api/sagas/bulk/{action}",
            fleet.orchestrator.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Three sagas: `failed` (ann's, failed out of stock an hour ago), `overdue` (bob's, past its
/// deadline) and `waiting` (bob's, placed last, with a known correlation id).
async fn three_sagas(fleet: &TestFleet) -> (Uuid, Uuid, Uuid) {
    let failed = fleet.place(&order_body("ann", "lamp", 1, 100)).await;
    let overdue = fleet.place(&order_body("bob", "lamp", 1, 100)).await;
    let waiting =
        place_with_correlation(fleet, &order_body("bob", "lamp", 1, 100), "search-corr-1").await;
    sql(
        fleet,
        "UPDATE orders SET saga_state = 'FAILED', failure_reason = 'out_of_stock', \
         deadline_at = NULL, created_at = now() - interval '1 hour'",
        failed,
    )
    .await;
    sql(
        fleet,
        "UPDATE orders SET deadline_at = now() - interval '1 second'",
        overdue,
    )
    .await;
    (failed, overdue, waiting)
}

#[tokio::test]
async fn each_filter_of_the_saga_search_selects_its_sagas_newest_first() {
    let fleet = fleet_without_payment().await;
    let (failed, overdue, waiting) = three_sagas(&fleet).await;
    let [failed, overdue, waiting] = [failed, overdue, waiting].map(|id| id.to_string());
    let (failed, overdue, waiting) = (failed.as_str(), overdue.as_str(), waiting.as_str());

    let all = sagas(&fleet, "/api/sagas").await;
    assert_eq!(ids(&all), [waiting, overdue, failed]);
    let first = &all[0];
    assert_eq!(first["customer_id"], "bob");
    assert_eq!(first["correlation_id"], "search-corr-1");
    assert_eq!(first["state"], "AWAITING_PAYMENT");
    assert_eq!(first["status"], "PENDING");
    assert!(first["created_at"].is_string());
    assert!(first["deadline_at"].is_string());
    assert_eq!(all[2]["failure_reason"], "out_of_stock");

    let cases: [(&str, Vec<&str>); 13] = [
        ("status=FAILED", vec![failed]),
        ("status=PENDING", vec![waiting, overdue]),
        ("status=COMPLETED", vec![]),
        ("state=FAILED", vec![failed]),
        ("state=AWAITING_PAYMENT", vec![waiting, overdue]),
        ("reason=out_of_stock", vec![failed]),
        ("reason=timed_out", vec![]),
        ("customer_id=bob", vec![waiting, overdue]),
        ("older_than=30m", vec![failed]),
        ("overdue=true", vec![overdue]),
        ("stuck=true", vec![overdue]),
        ("q=search-corr-1", vec![waiting]),
        ("customer_id=annoverdue=true", vec![]),
    ];
    for (query, expected) in cases {
        let found = sagas(&fleet, &format!("/api/sagas?{query}")).await;
        assert_eq!(ids(&found), expected, "{query}");
    }
    let by_id = sagas(&fleet, &format!("/api/sagas?q={overdue}")).await;
    assert_eq!(ids(&by_id), [overdue]);
    assert_eq!(by_id[0]["stuck"], true);
}

#[tokio::test]
async fn the_saga_search_pages_with_a_cursor() {
    let fleet = fleet_without_payment().await;
    let (failed, overdue, waiting) = three_sagas(&fleet).await;
    let url = format!("{}/api/sagas?limit=2", fleet.orchestrator.base);
    let page: Value = fleet.get(url.clone()).await.json().await.unwrap();
    assert_eq!(
        ids(page["items"].as_array().unwrap()),
        [waiting.to_string(), overdue.to_string()]
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let next: Value = fleet
        .get(format!("{url}&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(next["items"].as_array().unwrap()), [failed.to_string()]);
    assert!(next["next_cursor"].is_null());
}

#[tokio::test]
async fn bad_search_parameters_are_each_named_in_one_422() {
    let fleet = fleet_without_payment().await;
    let response = fleet
        .get(format!(
            "{}/api/sagas?state=LOST&status=nope&reason=bored&older_than=5y&overdue=maybe\
             &q=a%20b&cursor=zz&limit=0&customer_id=",
            fleet.orchestrator.base
        ))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    let mut fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "cursor",
            "customer_id",
            "limit",
            "older_than",
            "overdue",
            "q",
            "reason",
            "state",
            "status"
        ]
    );
}

#[tokio::test]
async fn a_dry_run_names_the_matching_sagas_and_changes_nothing() {
    let fleet = fleet_without_payment().await;
    let (_, overdue, waiting) = three_sagas(&fleet).await;
    let response = bulk(
        &fleet,
        "compensate",
        json!({"filter": {"customer_id": "bob"}, "dry_run": true, "limit": 1}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["matched"], 2, "counted beyond the limit");
    assert_eq!(report["matched_capped"], false);
    assert_eq!(report["order_ids"], json!([waiting]), "capped at the limit");
    assert_eq!(report["results"], json!([]));
    // Without `dry_run`, a run is dry too.
    let report: Value = bulk(&fleet, "retry", json!({"filter": {"overdue": true}}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["order_ids"], json!([overdue]));
    for order_id in [overdue, waiting] {
        let timeline = fleet.timeline(order_id).await;
        assert_eq!(
            timeline["transitions"].as_array().unwrap().len(),
            1,
            "{timeline}"
        );
    }
    let still = sagas(&fleet, "/api/sagas?customer_id=bob").await;
    assert!(still.iter().all(|s| s["state"] == "AWAITING_PAYMENT"));
}

#[tokio::test]
async fn a_real_run_compensates_exactly_the_matching_stuck_sagas() {
    let fleet = fleet_without_payment().await;
    let (failed, overdue, waiting) = three_sagas(&fleet).await;
    let second = fleet.place(&order_body("cat", "lamp", 1, 100)).await;
    sql(
        &fleet,
        "UPDATE orders SET deadline_at = now() - interval '1 second'",
        second,
    )
    .await;

    let response = bulk(
        &fleet,
        "compensate",
        json!({"filter": {"overdue": true}, "dry_run": false}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["done"], 2);
    assert_eq!(report["skipped"], 0);
    assert_eq!(
        report["results"],
        json!([
            {"order_id": second, "outcome": "done", "reason": null},
            {"order_id": overdue, "outcome": "done", "reason": null},
        ])
    );
    for order_id in [second, overdue] {
        let found = sagas(&fleet, &format!("/api/sagas?q={order_id}")).await;
        assert_eq!(found[0]["state"], "REFUNDING_PAYMENT");
        assert_eq!(found[0]["failure_reason"], "timed_out");
        let timeline = fleet.timeline(order_id).await;
        assert_eq!(timeline["transitions"][1]["trigger"], "operator.compensate");
    }
    // Each action is in the log as a single one's is.
    let lines = saga_common::testing::lifecycle_lines();
    for order_id in [second, overdue] {
        let compensating = lines.of_order("saga.operator_compensating", order_id);
        assert_eq!(compensating.len(), 1, "{compensating:?}");
    }
    let untouched = sagas(&fleet, &format!("/api/sagas?q={waiting}")).await;
    assert_eq!(untouched[0]["state"], "AWAITING_PAYMENT");

    // The single-saga rules hold: a final saga is skipped, with the reason.
    let report: Value = bulk(
        &fleet,
        "retry",
        json!({"filter": {"q": failed.to_string()}, "dry_run": false}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(report["done"], 0);
    assert_eq!(report["skipped"], 1);
    assert_eq!(report["results"][0]["outcome"], "skipped");
    assert_eq!(report["results"][0]["reason"], "the saga is already FAILED");
}

#[tokio::test]
async fn a_real_run_needs_a_filter_and_good_fields() {
    let fleet = fleet_without_payment().await;
    let order_id = fleet.place(&order_body("bob", "lamp", 1, 100)).await;
    for body in [
        json!({"dry_run": false}),
        json!({"filter": {}, "dry_run": false}),
    ] {
        let response = bulk(&fleet, "compensate", body.clone()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "filter_required");
    }
    let cases = [
        (json!({"filter": {"state": "LOST"}}), "state"),
        (
            json!({"filter": {"stat": "FAILED"}, "dry_run": false}),
            "filter",
        ),
        (json!({"filter": {"overdue": true}, "limit": 1001}), "limit"),
        (json!({"filter": {"overdue": true}, "limit": 0}), "limit"),
    ];
    for (body, field) in cases {
        let response = bulk(&fleet, "retry", body.clone()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let error: Value = response.json().await.unwrap();
        assert!(
            error["details"][0]["field"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{body}: {error}"
        );
    }
    let timeline = fleet.timeline(order_id).await;
    assert_eq!(timeline["transitions"].as_array().unwrap().len(), 1);
}
