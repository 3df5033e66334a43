//! The operator API: filters, pages, authentication, bad input, the API document, metrics at
//! first scrape.

use saga_common::contracts::OrderFailureReason;
use saga_common::testing::scrape;

use crate::helpers::{completed, failed, low_stock, spawn_app};
use saga_common::testing::MailCatcher;

#[tokio::test]
async fn notifications_are_listed_newest_first_by_filter_and_page() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    app.give_address("c-5", Some("eve@example.com")).await;
    let (first, event) = completed("c-5");
    app.publish(&event).await;
    app.wait_status(&format!("?order_id={first}"), "SENT").await;
    let (second, event) = failed("c-5", OrderFailureReason::OutOfStock);
    app.publish(&event).await;
    app.wait_status(&format!("?order_id={second}"), "SENT")
        .await;
    app.publish(&low_stock("p-3", 1, 4)).await;
    app.wait_status("?product_id=p-3", "SENT").await;

    let all = app.page("").await;
    let kinds: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["low_stock", "order_failed", "order_confirmed"]);
    assert_eq!(all["next_cursor"], serde_json::Value::Null);

    let page1 = app.page("?limit=2").await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let page2 = app.page(&format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2["items"][0]["order_id"], first.to_string());
    assert_eq!(page2["next_cursor"], serde_json::Value::Null);

    let by_kind = app.page("?kind=order_failed&status=SENT").await;
    assert_eq!(by_kind["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_kind["items"][0]["order_id"], second.to_string());
    assert_eq!(
        app.page("?status=FAILED").await["items"],
        serde_json::json!([])
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_query_values_and_ids_are_named_and_unknown_ids_are_not_found() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    let response = app
        .get_notifications("?status=LOST&kind=postcard&order_id=x&limit=0&cursor=zz")
        .await;
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "validation_failed");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["order_id", "kind", "status", "limit", "cursor"]);

    let response = app.resend("not-a-uuid").await;
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["details"][0]["field"], "id");
    let response = app.resend(&uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "not_found"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_skipped_notification_is_resent_once_the_customer_has_an_address() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    let (order_id, event) = completed("c-6");
    app.publish(&event).await;
    let row = app
        .wait_status(&format!("?order_id={order_id}"), "SKIPPED")
        .await;
    let id = row["id"].as_str().unwrap().to_owned();
    let response = app.resend(&id).await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "no_address"
    );
    app.give_address("c-6", Some("fay@example.com")).await;
    assert_eq!(app.resend(&id).await.status(), 202);
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].header("To").as_deref(), Some("fay@example.com"));
    app.stop().await;
}

#[tokio::test]
async fn the_operator_api_needs_the_operator_token() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    assert_eq!(app.get("/api/notifications").await.status(), 401);
    let response = app
        .anonymous
        .post(format!(
            "{}/api/notifications/{}/resend",
            app.address,
            uuid::Uuid::now_v7()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn the_api_document_has_the_notification_routes_and_metrics_are_there_from_the_start() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    let doc: serde_json::Value = app
        .get("/api/docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/notifications"]["get"].is_object());
    assert!(doc["paths"]["/api/notifications/{id}/resend"]["post"].is_object());
    let metrics = scrape(&app.address).await;
    for kind in ["order_confirmed", "order_failed", "low_stock"] {
        for status in ["sent", "failed", "skipped"] {
            // Present (the services of this process share a recorder: not necessarily zero).
            assert!(
                metrics
                    .matching("notifications_total", &[("kind", kind), ("status", status)])
                    .next()
                    .is_some(),
                "notifications_total{{kind={kind},status={status}}}"
            );
        }
    }
    assert!(metrics.has("notification_send_attempts_total"));
    app.stop().await;
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_at_start() {
    let mut settings = notification::startup::default_settings();
    settings.notify.ops_email = "nobody".into();
    let Err(error) = notification::startup::Application::build(settings).await else {
        panic!("an ops_email that is no address must be refused");
    };
    assert!(error.to_string().contains("notify.ops_email"), "{error}");
}

#[tokio::test]
async fn finished_notifications_older_than_the_history_are_pruned_and_pending_ones_kept() {
    use saga_common::testing::{execute, number, prune, uuid_v7_ago};
    const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    let smtp = MailCatcher::start().await;
    // A sender that never comes round: the old PENDING row stays PENDING.
    let app = spawn_app(smtp.port, |s| s.notify.sweep_interval_ms = 3_600_000).await;
    let row = |id: uuid::Uuid, subject: &str, status: &str, days: u32| {
        format!(
            "('{id}', 'order_failed', '{subject}', 'c', {recipient}, '{status}', '{{}}', 'corr', \
             now() - interval '{days} days', now() - interval '{days} days', \
             now() + interval '1 day')",
            recipient = if status == "SKIPPED" {
                "NULL"
            } else {
                "'x@example.com'"
            },
        )
    };
    let rows = [
        row(uuid_v7_ago(31 * DAY), "old-sent", "SENT", 31),
        row(uuid_v7_ago(31 * DAY), "old-skipped", "SKIPPED", 31),
        row(uuid_v7_ago(31 * DAY), "old-pending", "PENDING", 31),
        row(uuid_v7_ago(29 * DAY), "recent-sent", "SENT", 29),
    ];
    execute(
        &app.database_url,
        &format!(
            "INSERT INTO notifications (id, kind, subject, customer_id, recipient, status, \
             content, correlation_id, created_at, updated_at, next_attempt_at) VALUES {}",
            rows.join(", ")
        ),
    )
    .await;
    let response = prune(&app.client, &app.address, false).await;
    assert_eq!(response.status(), 200);
    let left = number(
        &app.database_url,
        "SELECT count(*) AS n FROM notifications WHERE subject IN ('old-pending', 'recent-sent')",
    )
    .await;
    let all = number(&app.database_url, "SELECT count(*) AS n FROM notifications").await;
    assert_eq!((left, all), (2, 2));
    app.stop().await;
}
