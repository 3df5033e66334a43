use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{order_body, spawn_fleet};

#[tokio::test]
async fn an_accepted_order_answers_202_with_location_and_pending_status() {
    let fleet = spawn_fleet().await;
    let response = fleet.post_order(&order_body("erin", "mug", 3, 250)).await;

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/orders/{}", body["order_id"].as_str().unwrap())
    );
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["customer_id"], "erin");
    assert_eq!(body["total_cents"], 750);
    assert_eq!(body["items"][0]["product_id"], "mug");
    assert!(body["created_at"].is_string());

    let fetched = fleet
        .get(format!("{}{location}", fleet.orchestrator.base))
        .await;
    assert_eq!(fetched.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_return_the_same_order() {
    let fleet = spawn_fleet().await;
    let body = order_body("frank", "mug", 1, 100);

    let first = fleet.post_order_with_key(&body, "key-1").await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let second = fleet.post_order_with_key(&body, "key-1").await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let second: Value = second.json().await.unwrap();

    // The same order as it is now: its saga may have moved on between the two requests (frank
    // cannot pay: his charge is declined at once), which changes its status fields and nothing
    // else.
    let without_status = |mut order: Value| {
        if let Some(fields) = order.as_object_mut() {
            for moving in ["status", "failure_reason", "updated_at"] {
                fields.remove(moving);
            }
        }
        order
    };
    assert_eq!(without_status(first), without_status(second));
    let page: Value = fleet
        .get(format!(
            "{}/api/orders?customer_id=frank",
            fleet.orchestrator.base
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "a second saga was started"
    );
}

#[tokio::test]
async fn requests_racing_with_one_idempotency_key_start_one_saga_and_all_get_it() {
    let fleet = spawn_fleet().await;
    let body = order_body("rita", "mug", 1, 100);

    // At once: some share the intake's batch (the insert skips all but one), some land in the
    // next (the key is taken by a committed order).
    let answers = futures_util::future::join_all(
        (0..20).map(|_| fleet.post_order_with_key(&body, "key-race")),
    )
    .await;

    let mut ids = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
        let order: Value = answer.json().await.unwrap();
        ids.push(order["order_id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every request got the one order: {ids:?}");
    let page: Value = fleet
        .get(format!(
            "{}/api/orders?customer_id=rita",
            fleet.orchestrator.base
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "one saga");
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_body_is_rejected() {
    let fleet = spawn_fleet().await;
    let first = fleet
        .post_order_with_key(&order_body("gina", "mug", 1, 100), "key-2")
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);

    let conflict = fleet
        .post_order_with_key(&order_body("gina", "mug", 2, 100), "key-2")
        .await;
    assert_eq!(conflict.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = conflict.json().await.unwrap();
    assert_eq!(error["error"], "idempotency_key_reused");

    let page: Value = fleet
        .get(format!(
            "{}/api/orders?customer_id=gina",
            fleet.orchestrator.base
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn orders_are_listed_newest_first_with_a_cursor_and_filters() {
    let fleet = spawn_fleet().await;
    fleet.set_balance("hank", 1_000_000).await;
    fleet.set_stock("cup", 100).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(fleet.place(&order_body("hank", "cup", 1, 10)).await);
    }
    let other = fleet.place(&order_body("ivy", "cup", 1, 10)).await;
    for id in ids.iter().chain([&other]) {
        fleet.wait_final(*id).await;
    }

    let url = |query: &str| format!("{}/api/orders?{query}", fleet.orchestrator.base);
    let first: Value = fleet
        .get(url("customer_id=hank&limit=2"))
        .await
        .json()
        .await
        .unwrap();
    let first_ids: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(first_ids, [ids[2].to_string(), ids[1].to_string()]);
    let cursor = first["next_cursor"].as_str().unwrap();

    let second: Value = fleet
        .get(url(&format!("customer_id=hank&limit=2&cursor={cursor}")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["order_id"], ids[0].to_string());
    assert_eq!(second["next_cursor"], Value::Null);

    let completed: Value = fleet
        .get(url("status=COMPLETED"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(completed["items"].as_array().unwrap().len(), 3);
    let failed: Value = fleet.get(url("status=FAILED")).await.json().await.unwrap();
    assert_eq!(
        failed["items"].as_array().unwrap().len(),
        1,
        "ivy has no account"
    );
    assert_eq!(failed["items"][0]["order_id"], other.to_string());
}

#[tokio::test]
async fn the_correlation_id_is_echoed_and_travels_with_the_messages() {
    let fleet = spawn_fleet().await;
    fleet.set_balance("jack", 1_000).await;
    fleet.set_stock("cup", 1).await;
    let response = fleet
        .client
        .post(format!("{}/api/orders", fleet.orchestrator.base))
        .header("X-Correlation-Id", "trace-42")
        .json(&order_body("jack", "cup", 1, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-correlation-id"], "trace-42");
    let order_id: uuid::Uuid = response.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    fleet.wait_final(order_id).await;

    // Every message of this saga, in every service's outbox, carries it.
    for service in [&fleet.orchestrator, &fleet.payment, &fleet.inventory] {
        let db = crate::helpers::database(&service.db_url).await;
        let found = crate::helpers::query_one(
            &db,
            "SELECT json_build_object('total', count(*), 'tagged', \
             count(*) FILTER (WHERE body::jsonb->>'correlation_id' = 'trace-42')) AS row \
             FROM outbox WHERE saga_id = $1",
            vec![order_id.into()],
        )
        .await;
        assert!(found["total"].as_i64().unwrap() > 0);
        assert_eq!(found["total"], found["tagged"]);
    }

    let generated = fleet.post_order(&json!({"customer_id": "jack", "items": [{"product_id": "cup", "quantity": 1, "unit_price_cents": 1}]})).await;
    assert!(!generated.headers()["x-correlation-id"].is_empty());
}
