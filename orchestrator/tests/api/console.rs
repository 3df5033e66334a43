//! The operator console's backend: the page at `/console`, the overview and the proxy to the
//! participants (docs/console.md), against a whole fleet with the notification service.

use lapin::BasicProperties;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use saga_common::contracts::{self, Payload};
use saga_common::messaging::topology;
use saga_common::testing::{PATIENCE, eventually, publish_raw};

use crate::helpers::{TestFleet, order_body, spawn_console_fleet, spawn_fleet};

#[tokio::test]
async fn the_console_page_is_html_under_a_strict_csp() {
    let fleet = spawn_console_fleet().await;
    fleet.wait_ready(&fleet.notification).await;

    let response = fleet
        .anonymous
        .get(format!("{}/console", fleet.orchestrator.base))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}

fn overview_url(fleet: &TestFleet) -> String {
    format!("{}/api/console/overview", fleet.orchestrator.base)
}

fn proxied(fleet: &TestFleet, service: &str, path: &str) -> String {
    format!(
        "{}/api/console/services/{service}/{path}",
        fleet.orchestrator.base
    )
}

async fn overview(fleet: &TestFleet) -> Value {
    let response = fleet.get(overview_url(fleet)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn sum(list: &Value) -> i64 {
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_i64().unwrap())
        .sum()
}

/// Places `count` orders that complete and waits for each; returns their ids.
async fn completed_orders(fleet: &TestFleet, count: usize) -> Vec<Uuid> {
    fleet.set_balance("c-1", 100_000).await;
    fleet.set_stock("p-1", 100).await;
    let mut ids = Vec::new();
    for _ in 0..count {
        let id = fleet.place(&order_body("c-1", "p-1", 1, 500)).await;
        assert_eq!(fleet.wait_final(id).await["status"], "COMPLETED");
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn the_console_api_needs_the_operator_token() {
    let fleet = spawn_fleet().await;
    for url in [
        overview_url(&fleet),
        proxied(&fleet, "payment", "api/admin/dead-letters"),
    ] {
        let response = fleet.anonymous.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{url}");
    }
}

#[tokio::test]
async fn the_overview_counts_the_sagas_and_reads_every_service() {
    let fleet = spawn_console_fleet().await;
    completed_orders(&fleet, 2).await;

    let read = eventually(
        "an overview with both sagas and every service ready",
        PATIENCE,
        || async {
            let read = overview(&fleet).await;
            let ready = read["services"]
                .as_array()
                .unwrap()
                .iter()
                .all(|service| service["ready"] == true);
            (ready && sum(&read["per_minute"]["completed"]) == 2).then_some(read)
        },
    )
    .await;

    let per_minute = &read["per_minute"];
    for series in ["started", "completed", "failed"] {
        assert_eq!(per_minute[series].as_array().unwrap().len(), 16, "{series}");
    }
    assert_eq!(sum(&per_minute["started"]), 2);
    assert_eq!(sum(&per_minute["failed"]), 0);
    assert!(per_minute["from"].is_string());
    assert!(read["duration"]["p50_ms"].is_i64(), "{}", read["duration"]);
    assert!(read["duration"]["p99_ms"].is_i64(), "{}", read["duration"]);
    for state in [
        "AWAITING_PAYMENT",
        "AWAITING_STOCK",
        "RELEASING_STOCK",
        "REFUNDING_PAYMENT",
    ] {
        assert!(read["in_flight"][state].is_i64(), "{state}");
    }
    assert!(read["overdue"].is_i64());
    assert!(read["rejected"]["overloaded"].is_i64());
    assert!(read["rejected"]["rate_limited"].is_i64());
    assert_eq!(read["today"]["placed"], 2);
    assert_eq!(read["today"]["completed"], 2);

    let services = read["services"].as_array().unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["orchestrator", "payment", "inventory", "notification"]
    );
    for service in services {
        assert_eq!(service["checks"]["database"], "up", "{service}");
        assert_eq!(service["checks"]["rabbitmq"], "up", "{service}");
        // The services of a test process share one metrics recorder, and so one
        // `amqp_connection_up`, which another test's fleet stopping sets to 0: only its presence.
        assert!(service["amqp_connected"].is_boolean(), "{service}");
        assert!(service["outbox"]["pending"].is_i64(), "{service}");
        assert_eq!(service["error"], Value::Null, "{service}");
    }
    assert_eq!(
        services[1]["dead_letters"][0]["queue"],
        "payment.commands.dlq"
    );
}

#[tokio::test]
async fn a_participant_that_does_not_answer_is_shown_not_ready_with_the_reason() {
    // Without the notification service: its configured URL has nobody behind it.
    let fleet = spawn_fleet().await;

    let read = overview(&fleet).await;

    let notification = &read["services"][3];
    assert_eq!(notification["name"], "notification");
    assert_eq!(notification["ready"], false);
    assert_eq!(notification["checks"], Value::Null);
    assert_eq!(notification["amqp_connected"], Value::Null);
    let error = notification["error"].as_str().unwrap();
    assert!(error.contains("could not be reached"), "{error}");
    assert_eq!(read["services"][1]["ready"], true);
}

#[tokio::test]
async fn the_proxy_answers_what_the_participants_answer() {
    let fleet = spawn_console_fleet().await;
    let order = completed_orders(&fleet, 1).await[0];

    let payments: Value = fleet
        .get(proxied(
            &fleet,
            "payment",
            &format!("api/payments?order_id={order}"),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(payments, json!(fleet.payments(order).await));
    assert_eq!(payments.as_array().unwrap().len(), 1);

    let reservations: Value = fleet
        .get(proxied(
            &fleet,
            "inventory",
            &format!("api/reservations?order_id={order}"),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reservations, json!(fleet.reservations(order).await));

    let notifications = fleet
        .get(proxied(
            &fleet,
            "notification",
            &format!("api/notifications?order_id={order}"),
        ))
        .await;
    assert_eq!(notifications.status(), StatusCode::OK);
    let direct: Value = fleet
        .get(format!(
            "{}/api/notifications?order_id={order}",
            fleet.notification.base
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(notifications.json::<Value>().await.unwrap(), direct);

    // A participant's refusal comes back as it was.
    let refused = fleet
        .get(proxied(&fleet, "payment", "api/payments?order_id=nope"))
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["details"][0]["field"],
        "order_id"
    );
}

#[tokio::test]
async fn the_proxy_refuses_what_is_not_on_its_list_and_says_when_a_peer_is_down() {
    let fleet = spawn_fleet().await;
    for (method, service, path) in [
        (Method::GET, "payment", "api/accounts/c-1"),
        (Method::PUT, "payment", "api/accounts/c-1"),
        (Method::GET, "payment", "metrics"),
        (Method::GET, "inventory", "api/payments"),
        (Method::GET, "orchestrator", "api/admin/dead-letters"),
        (Method::GET, "elsewhere", "api/admin/dead-letters"),
        (Method::POST, "payment", "api/admin/retention/prune"),
    ] {
        let response = fleet
            .client
            .request(method.clone(), proxied(&fleet, service, path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{method} {service} {path}"
        );
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            "not_found"
        );
    }

    let down = fleet
        .get(proxied(&fleet, "notification", "api/notifications"))
        .await;
    assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        down.json::<Value>().await.unwrap()["error"],
        "peer_unavailable"
    );
}

#[tokio::test]
async fn dead_letters_are_grouped_replayed_and_deleted_through_the_proxy() {
    let fleet = spawn_fleet().await;
    for id in ["bad-1", "bad-2"] {
        publish_raw(
            &fleet.vhost.amqp_url,
            topology::COMMANDS_EXCHANGE,
            contracts::ChargePayment::TYPE,
            b"not json",
            BasicProperties::default().with_message_id(id.into()),
        )
        .await;
    }
    let groups = eventually("two dead letters in one group", PATIENCE, || async {
        let groups: Value = fleet
            .get(proxied(&fleet, "payment", "api/admin/dead-letters/groups"))
            .await
            .json()
            .await
            .ok()?;
        (groups["total"] == 2).then_some(groups)
    })
    .await;
    assert_eq!(groups["queue"], "payment.commands.dlq");
    assert_eq!(groups["groups"][0]["reason"], "malformed_message");
    assert_eq!(groups["groups"][0]["count"], 2);

    let deleted = fleet
        .client
        .delete(proxied(&fleet, "payment", "api/admin/dead-letters/bad-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(
        deleted.json::<Value>().await.unwrap(),
        json!({"message_id": "bad-1", "deleted": 1})
    );

    let replayed = fleet
        .client
        .post(proxied(&fleet, "payment", "api/admin/dead-letters/replay"))
        .header("X-Correlation-Id", "console-replay-1")
        .json(&json!({"reason": "malformed_message"}))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::OK);
    assert_eq!(
        replayed.json::<Value>().await.unwrap(),
        json!({"replayed": 1, "not_found": [], "failed": [], "refused": []})
    );

    // A bad body is the participant's 422, naming the field.
    let refused = fleet
        .client
        .post(proxied(&fleet, "payment", "api/admin/dead-letters/replay"))
        .json(&json!({"reason": "malformed_message", "all": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["details"][0]["field"],
        "reason"
    );
}
