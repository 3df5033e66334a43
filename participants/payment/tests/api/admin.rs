//! `/api/admin/dead-letters`: the token, listing, grouping by reason, deleting, and replaying a
//! fixed message or a whole group.

use lapin::BasicProperties;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use saga_common::contracts::{self, Payload};
use saga_common::messaging::topology;
use saga_common::testing::{ADMIN_TOKEN, PATIENCE, eventually, execute, publish_raw};

use crate::helpers::{TestApp, charge, spawn_app, spawn_app_with};

/// The four admin routes, as (method, path, body).
fn admin_routes() -> [(reqwest::Method, &'static str, Option<Value>); 4] {
    [
        (reqwest::Method::GET, "/api/admin/dead-letters", None),
        (reqwest::Method::GET, "/api/admin/dead-letters/groups", None),
        (
            reqwest::Method::POST,
            "/api/admin/dead-letters/replay",
            Some(json!({"all": true})),
        ),
        (
            reqwest::Method::DELETE,
            "/api/admin/dead-letters/some-id",
            None,
        ),
    ]
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .anonymous
        .request(method, format!("{}{path}", app.address));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn admin_routes_answer_401_without_the_right_bearer_token() {
    let app = spawn_app().await;
    let wrong = format!("Bearer {ADMIN_TOKEN}x");
    let basic = format!("Basic {ADMIN_TOKEN}");
    for (method, path, body) in admin_routes() {
        for authorization in [None, Some(wrong.as_str()), Some(basic.as_str())] {
            let response = call(&app, method.clone(), path, body.as_ref(), authorization).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {authorization:?}"
            );
            assert!(
                response
                    .headers()
                    .get("www-authenticate")
                    .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer"))
            );
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"], "unauthorized");
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    // The right token opens the door (and lowercase `bearer` is the same scheme).
    let listed = call(
        &app,
        reqwest::Method::GET,
        "/api/admin/dead-letters",
        None,
        Some(&format!("bearer {ADMIN_TOKEN}")),
    )
    .await;
    assert_eq!(listed.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_a_configured_token_the_admin_routes_are_refused_not_open() {
    let app = spawn_app_with(|settings| settings.auth = Default::default()).await;
    for (method, path, body) in admin_routes() {
        for authorization in [None, Some("Bearer "), Some("Bearer anything")] {
            let response = call(&app, method.clone(), path, body.as_ref(), authorization).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"], "admin_disabled");
        }
    }
}

#[tokio::test]
async fn dead_letters_are_listed_page_by_page_then_deleted_by_id() {
    let app = spawn_app().await;
    let ids = ["dead-1", "dead-2", "dead-3"];
    for id in ids {
        publish_raw(
            &app.vhost.amqp_url,
            topology::COMMANDS_EXCHANGE,
            contracts::ChargePayment::TYPE,
            format!("not json {id}").as_bytes(),
            BasicProperties::default().with_message_id(id.into()),
        )
        .await;
    }
    app.dead_letters(3).await;

    let first: Value = app
        .list_dead_letters("?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["queue"], "payment.commands.dlq");
    assert_eq!(first["total"], 3);
    assert_eq!(first["next_offset"], 2);
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["message_id"], "dead-1");
    assert_eq!(items[0]["reason"], "malformed_message");
    assert_eq!(items[0]["payload"], "not json dead-1");
    assert_eq!(items[0]["payload_format"], "text");
    assert_eq!(items[0]["routing_key"], contracts::ChargePayment::TYPE);
    assert_eq!(items[0]["headers"]["x-service"], "payment");
    assert_eq!(items[0]["attempts"], 1);
    let second: Value = app
        .list_dead_letters("?offset=2&limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"][0]["message_id"], "dead-3");
    assert_eq!(second["next_offset"], Value::Null);

    let deleted = app.delete_dead_letter("dead-2").await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(deleted, json!({"message_id": "dead-2", "deleted": 1}));
    let again = app.delete_dead_letter("dead-2").await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "not_found");
    let rest = app.dead_letters(2).await;
    let left: Vec<&Value> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["message_id"])
        .collect();
    assert_eq!(left, [&json!("dead-1"), &json!("dead-3")]);
}

#[tokio::test]
async fn bad_admin_requests_are_refused_with_the_field_at_fault() {
    let app = spawn_app().await;
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=501", "limit"),
        ("?limit=ten", "limit"),
        ("?offset=-1", "offset"),
    ] {
        let response = app.list_dead_letters(query).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["details"][0]["field"], field, "{query}");
    }
    for body in [
        json!({}),
        json!({"message_ids": []}),
        json!({"all": false}),
        json!({"all": true, "message_ids": ["a"]}),
        json!({"everything": true}),
        json!({"reason": ""}),
    ] {
        let response = app.replay_dead_letters(&body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
    }
    for body in [
        json!({"reason": "invalid_payload", "all": true}),
        json!({"reason": "invalid_payload", "message_ids": ["a"]}),
    ] {
        let response = app.replay_dead_letters(&body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["details"][0]["field"], "reason", "{body}");
    }
    let not_json = app
        .client
        .post(format!("{}/api/admin/dead-letters/replay", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/plain")
        .body("all")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// Breaks the table a charge writes to: every charge fails with a database error while the
/// database itself answers, which is the transient failure a retry is for.
async fn break_accounts(app: &TestApp) {
    execute(
        &app.database_url,
        "ALTER TABLE accounts RENAME TO accounts_away",
    )
    .await;
}

async fn mend_accounts(app: &TestApp) {
    execute(
        &app.database_url,
        "ALTER TABLE accounts_away RENAME TO accounts",
    )
    .await;
}

#[tokio::test]
async fn a_charge_that_fails_transiently_is_retried_after_a_delay_and_then_charges_once() {
    // A first retry after a whole second: time enough to see the message wait and mend the table.
    let app = spawn_app_with(|settings| {
        settings.retry.max_attempts = 5;
        settings.retry.base_delay_ms = 1_000;
    })
    .await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    break_accounts(&app).await;
    let order = Uuid::now_v7();

    app.send_command(&charge(order, "c-1", 400)).await;
    let delay_queue = topology::retry_queue(
        topology::PAYMENT_COMMANDS,
        std::time::Duration::from_secs(1),
    );
    eventually(
        "the charge to wait in the delay queue",
        PATIENCE,
        || async { (app.vhost.message_count(&delay_queue).await == 1).then_some(()) },
    )
    .await;
    mend_accounts(&app).await;

    let answer = replies.next().await;
    assert_eq!(answer.message_type, contracts::PaymentCharged::TYPE);
    assert_eq!(answer.saga_id, order);
    assert_eq!(app.balance("c-1").await, 600, "charged exactly once");
    assert_eq!(app.payments(order).await.len(), 1);
    assert_eq!(app.dead_letters(0).await["items"], json!([]));
}

#[tokio::test]
async fn a_charge_failing_past_max_attempts_is_dead_lettered_then_replayed_once_fixed() {
    let app = spawn_app().await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    break_accounts(&app).await;
    let order = Uuid::now_v7();
    let command = charge(order, "c-1", 400);

    app.send_command(&command).await;

    let page = app.dead_letters(1).await;
    let dead = &page["items"][0];
    let id = command.message_id.to_string();
    assert_eq!(dead["message_id"], id.as_str());
    assert_eq!(dead["type"], contracts::ChargePayment::TYPE);
    assert_eq!(dead["reason"], "retries_exhausted");
    assert_eq!(dead["attempts"], 3);
    assert!(
        dead["error"].as_str().unwrap().contains("accounts"),
        "{dead}"
    );
    assert_eq!(dead["exchange"], topology::COMMANDS_EXCHANGE);
    assert_eq!(dead["routing_key"], contracts::ChargePayment::TYPE);
    assert!(dead["first_failed_at"].is_string());
    assert!(dead["last_failed_at"].is_string());
    assert_eq!(
        dead["headers"]["x-original-queue"],
        topology::PAYMENT_COMMANDS
    );
    assert_eq!(dead["payload"]["payload"]["amount_cents"], 400);
    assert_eq!(dead["payload_format"], "json");

    mend_accounts(&app).await;
    assert_eq!(
        app.balance("c-1").await,
        1_000,
        "nothing happened while broken"
    );
    let replayed = app
        .replay_dead_letters(&json!({"message_ids": [id, "not-there"]}))
        .await;
    assert_eq!(replayed.status(), StatusCode::OK);
    let report: Value = replayed.json().await.unwrap();
    assert_eq!(
        report,
        json!({"replayed": 1, "not_found": ["not-there"], "failed": [], "refused": []})
    );

    let answer = replies.next().await;
    assert_eq!(answer.message_type, contracts::PaymentCharged::TYPE);
    assert_eq!(answer.causation_id, Some(command.message_id));
    assert_eq!(app.balance("c-1").await, 600);
    assert_eq!(app.dead_letters(0).await["total"], 0);
}

#[tokio::test]
async fn a_charge_older_than_the_dedup_window_is_dead_lettered_unapplied_and_not_replayed() {
    let app = spawn_app_with(|settings| {
        settings.retention.inbox_window = std::time::Duration::from_secs(600);
    })
    .await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    let order = Uuid::now_v7();
    let mut old = charge(order, "c-1", 400);
    old.occurred_at = chrono::Utc::now() - chrono::TimeDelta::hours(2);

    app.send_command(&old).await;
    // A charge sent after it is answered: the consumer has dealt with the old one by then.
    let later = Uuid::now_v7();
    app.send_command(&charge(later, "c-1", 100)).await;
    assert_eq!(replies.next().await.saga_id, later);

    let page = app.dead_letters(1).await;
    let dead = &page["items"][0];
    let id = old.message_id.to_string();
    assert_eq!(dead["message_id"], id.as_str());
    assert_eq!(dead["reason"], "outside_dedup_window");
    let error = dead["error"].as_str().unwrap();
    assert!(error.contains("deduplication window of 10m"), "{error}");

    let replayed = app.replay_dead_letters(&json!({"message_ids": [id]})).await;
    assert_eq!(replayed.status(), StatusCode::OK);
    let report: Value = replayed.json().await.unwrap();
    assert_eq!(
        (&report["replayed"], &report["not_found"], &report["failed"]),
        (&json!(0), &json!([]), &json!([]))
    );
    assert_eq!(report["refused"][0]["message_id"], id.as_str(), "{report}");
    assert_eq!(report["refused"][0]["reason"], "outside_dedup_window");
    assert!(
        report["refused"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("occurred 2h")),
        "{report}"
    );

    assert_eq!(
        app.dead_letters(1).await["items"][0]["message_id"],
        id.as_str()
    );
    assert_eq!(app.balance("c-1").await, 900, "only the later charge");
    assert!(app.payments(order).await.is_empty());
}

async fn dead_letter_groups(app: &TestApp) -> Value {
    let response = app
        .client
        .get(format!("{}/api/admin/dead-letters/groups", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn dead_letters_are_grouped_by_reason_and_one_group_is_replayed() {
    let app = spawn_app().await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    for id in ["bad-1", "bad-2"] {
        publish_raw(
            &app.vhost.amqp_url,
            topology::COMMANDS_EXCHANGE,
            contracts::ChargePayment::TYPE,
            b"not json",
            BasicProperties::default().with_message_id(id.into()),
        )
        .await;
    }
    app.dead_letters(2).await;
    break_accounts(&app).await;
    let order = Uuid::now_v7();
    app.send_command(&charge(order, "c-1", 400)).await;
    app.dead_letters(3).await;

    let read = dead_letter_groups(&app).await;
    assert_eq!(read["queue"], "payment.commands.dlq");
    assert_eq!((&read["total"], &read["scanned"]), (&json!(3), &json!(3)));
    let groups = read["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{read}");
    assert_eq!(groups[0]["reason"], "malformed_message");
    assert_eq!(groups[0]["count"], 2);
    assert_eq!(groups[1]["reason"], "retries_exhausted");
    assert_eq!(groups[1]["count"], 1);
    for group in groups {
        let first: chrono::DateTime<chrono::Utc> =
            group["first_seen"].as_str().unwrap().parse().unwrap();
        let last: chrono::DateTime<chrono::Utc> =
            group["last_seen"].as_str().unwrap().parse().unwrap();
        assert!(first <= last, "{group}");
    }

    mend_accounts(&app).await;
    let replayed = app
        .replay_dead_letters(&json!({"reason": "retries_exhausted"}))
        .await;
    assert_eq!(replayed.status(), StatusCode::OK);
    let report: Value = replayed.json().await.unwrap();
    assert_eq!(
        report,
        json!({"replayed": 1, "not_found": [], "failed": [], "refused": []})
    );
    let answer = replies.next().await;
    assert_eq!(answer.message_type, contracts::PaymentCharged::TYPE);
    assert_eq!(answer.saga_id, order);
    assert_eq!(app.balance("c-1").await, 600);

    // The other group stayed, whole.
    app.dead_letters(2).await;
    let left = dead_letter_groups(&app).await;
    assert_eq!(left["groups"].as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left["groups"][0]["reason"], "malformed_message");
    assert_eq!(left["groups"][0]["count"], 2);
}
