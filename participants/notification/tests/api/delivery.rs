//! What is mailed for each event, exactly once, and what happens when the SMTP server is away.

use saga_common::contracts::OrderFailureReason;
use saga_common::messaging::topology;
use saga_common::testing::{PATIENCE, eventually, peeked_header, scrape};

use crate::helpers::{OPS, completed, failed, invalid_completed, low_stock, spawn_app};
use saga_common::testing::{MailCatcher, free_port};

#[tokio::test]
async fn an_order_confirmation_lists_the_lines_and_total_in_both_parts_with_the_ids_in_headers() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    app.give_address("c-1", Some("ada@example.com")).await;

    let (order_id, event) = completed("c-1");
    app.publish(&event).await;

    let mails = smtp.wait_for(1).await;
    let mail = &mails[0];
    assert_eq!(mail.header("To").as_deref(), Some("ada@example.com"));
    assert_eq!(
        mail.header("Subject"),
        Some(format!("Your order {order_id} is confirmed"))
    );
    assert_eq!(mail.header("X-Order-Id"), Some(order_id.to_string()));
    assert_eq!(
        mail.header("X-Correlation-Id"),
        Some(format!("corr-{order_id}"))
    );
    assert!(mail.raw.contains("multipart/alternative"));
    for expected in [
        "2 x p-1 at 12.50 = 25.00",
        "1 x p-2 at 10.50 = 10.50",
        "Total: 35.50",
    ] {
        assert!(mail.text.contains(expected), "{expected} in {}", mail.text);
    }
    for expected in [
        "<td>p-1</td><td>2</td>",
        "<td>12.50</td><td>25.00</td>",
        "<th>35.50</th>",
    ] {
        assert!(mail.html.contains(expected), "{expected} in {}", mail.html);
    }
    let row = app
        .wait_status(&format!("?order_id={order_id}"), "SENT")
        .await;
    assert_eq!(row["kind"], "order_confirmed");
    assert_eq!(row["recipient"], "ada@example.com");
    assert_eq!(row["attempts"], 1);
    // The services of this test process share one recorder: at least this test's counts.
    let metrics = scrape(&app.address).await;
    assert!(
        metrics.value(
            "notifications_total",
            &[("kind", "order_confirmed"), ("status", "sent")]
        ) >= 1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_order_notice_says_why_in_words() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    app.give_address("c-2", Some("bob@example.com")).await;
    let cases = [
        (
            OrderFailureReason::PaymentDeclined,
            "Your payment was declined",
        ),
        (
            OrderFailureReason::OutOfStock,
            "out of stock, and the charge was refunded",
        ),
        (OrderFailureReason::TimedOut, "timed out"),
    ];
    let mut orders = Vec::new();
    for (reason, words) in cases {
        let (order_id, event) = failed("c-2", reason);
        app.publish(&event).await;
        orders.push((order_id, words));
    }
    let mails = smtp.wait_for(3).await;
    for (order_id, words) in orders {
        let mail = mails
            .iter()
            .find(|m| m.header("X-Order-Id") == Some(order_id.to_string()))
            .unwrap_or_else(|| panic!("no mail for {order_id}"));
        assert_eq!(
            mail.header("Subject"),
            Some(format!("Your order {order_id} could not be completed"))
        );
        assert!(mail.text.contains(words), "{words} in {}", mail.text);
        assert!(mail.html.contains(words), "{words} in {}", mail.html);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_low_stock_alert_goes_to_the_shop() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    app.publish(&low_stock("p-7", 4, 5)).await;
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].header("To").as_deref(), Some(OPS));
    assert_eq!(mails[0].header("X-Product-Id").as_deref(), Some("p-7"));
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Low stock: p-7 (4 left)")
    );
    assert!(mails[0].text.contains("Available: 4"));
    assert!(mails[0].text.contains("Threshold: 5"));
    let row = app.wait_status("?product_id=p-7", "SENT").await;
    assert_eq!(row["kind"], "low_stock");
    app.stop().await;
}

#[tokio::test]
async fn an_order_of_a_customer_without_an_address_is_skipped_and_nothing_is_sent() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    app.give_address("c-none", None).await;
    let (no_address, event) = completed("c-none");
    app.publish(&event).await;
    let (unknown, event) = completed("c-never-seen");
    app.publish(&event).await;
    for order_id in [no_address, unknown] {
        let row = app
            .wait_status(&format!("?order_id={order_id}"), "SKIPPED")
            .await;
        assert_eq!(row["recipient"], serde_json::Value::Null);
        assert_eq!(row["attempts"], 0);
    }
    // A mail sent after the skipped ones: once it is in, nothing else was sent before it.
    app.publish(&low_stock("p-sentinel", 1, 2)).await;
    smtp.wait_for(1).await;
    app.wait_status("?product_id=p-sentinel", "SENT").await;
    assert_eq!(smtp.mails().len(), 1, "only the sentinel was mailed");
    // The services of this test process share one recorder: at least this test's counts.
    let metrics = scrape(&app.address).await;
    assert!(
        metrics.value(
            "notifications_total",
            &[("kind", "order_confirmed"), ("status", "skipped")]
        ) >= 2.0
    );
    app.stop().await;
}

#[tokio::test]
async fn the_same_event_delivered_twice_or_republished_sends_one_mail() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    app.give_address("c-3", Some("cy@example.com")).await;
    let (order_id, event) = completed("c-3");
    app.publish(&event).await;
    app.publish(&event).await;
    // The same order's event under a new message id (a second publication) owes no new mail.
    let mut again = event.clone();
    again.message_id = uuid::Uuid::now_v7();
    app.publish(&again).await;
    app.wait_status(&format!("?order_id={order_id}"), "SENT")
        .await;
    app.publish(&low_stock("p-sentinel", 1, 2)).await;
    app.wait_status("?product_id=p-sentinel", "SENT").await;
    // The copies may be handled on other channels than the sentinel: count once the queue is
    // empty.
    eventually("the queue to drain", PATIENCE, || async {
        (app.vhost.message_count(topology::NOTIFICATION_EVENTS).await == 0).then_some(())
    })
    .await;
    let mails = smtp.wait_for(2).await;
    let for_order = mails
        .iter()
        .filter(|m| m.header("X-Order-Id") == Some(order_id.to_string()))
        .count();
    assert_eq!(for_order, 1);
    assert_eq!(
        app.page(&format!("?order_id={order_id}")).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_mail_the_smtp_server_never_takes_is_retried_then_failed_and_sent_on_resend() {
    let port = free_port();
    let app = spawn_app(port, |_| {}).await;
    app.give_address("c-4", Some("dee@example.com")).await;
    let (order_id, event) = completed("c-4");
    app.publish(&event).await;

    let row = app
        .wait_status(&format!("?order_id={order_id}"), "FAILED")
        .await;
    assert_eq!(row["attempts"], 3, "notify.max_attempts");
    let error = row["last_error"].as_str().unwrap();
    assert!(error.starts_with("smtp:"), "{error}");
    // The services of this test process share one recorder: at least this test's counts.
    let metrics = scrape(&app.address).await;
    assert!(
        metrics.value(
            "notifications_total",
            &[("kind", "order_confirmed"), ("status", "failed")]
        ) >= 1.0
    );
    assert!(
        metrics.value(
            "notification_send_attempts_total",
            &[("kind", "order_confirmed"), ("outcome", "retry")]
        ) >= 2.0
    );
    let failed = app.page("?status=FAILED").await;
    assert_eq!(failed["items"][0]["id"], row["id"]);

    let smtp = MailCatcher::start_on(port).await;
    let response = app.resend(row["id"].as_str().unwrap()).await;
    assert_eq!(response.status(), 202);
    let queued: serde_json::Value = response.json().await.unwrap();
    assert_eq!(queued["status"], "PENDING");
    assert_eq!(queued["attempts"], 0);
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].header("X-Order-Id"), Some(order_id.to_string()));
    let sent = app
        .wait_status(&format!("?order_id={order_id}"), "SENT")
        .await;
    assert_eq!(sent["attempts"], 1);
    assert_eq!(sent["last_error"], serde_json::Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn an_event_that_does_not_fit_its_type_is_dead_lettered_with_its_reason() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    app.publish(&invalid_completed(uuid::Uuid::now_v7())).await;
    let dlq = topology::dead_letter_queue(topology::NOTIFICATION_EVENTS);
    let letters = eventually("a dead letter", PATIENCE, || async {
        let messages = app.vhost.peek(&dlq, 10).await;
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    assert_eq!(
        peeked_header(&letters[0], "x-dead-letter-reason"),
        Some("invalid_payload")
    );
    assert_eq!(app.page("").await["items"].as_array().unwrap().len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_row_committed_but_never_sent_is_sent_by_the_sweep() {
    let smtp = MailCatcher::start().await;
    let app = spawn_app(smtp.port, |_| {}).await;
    // As an instance that crashed between the commit and the send would leave it: PENDING,
    // and nobody woke the sender.
    let order_id = uuid::Uuid::now_v7();
    let content = serde_json::json!({
        "order_id": order_id, "customer_id": "c-9", "reason": "timed_out"
    });
    saga_common::testing::execute(
        &app.database_url,
        &format!(
            "INSERT INTO notifications (id, kind, subject, order_id, customer_id, recipient, \
             status, content, correlation_id) VALUES ('{}', 'order_failed', '{order_id}', \
             '{order_id}', 'c-9', 'gus@example.com', 'PENDING', '{content}', 'corr-crash')",
            uuid::Uuid::now_v7()
        ),
    )
    .await;
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].header("X-Order-Id"), Some(order_id.to_string()));
    assert_eq!(
        mails[0].header("X-Correlation-Id").as_deref(),
        Some("corr-crash")
    );
    app.wait_status(&format!("?order_id={order_id}"), "SENT")
        .await;
    app.stop().await;
}

#[tokio::test]
async fn senders_claiming_at_the_same_time_never_take_one_row_twice() {
    use notification::notifications::store;
    let smtp = MailCatcher::start().await;
    // The service's own sender sweeps once at start, then not for an hour: the rows below are
    // left to the claims of this test, as to several instances.
    let app = spawn_app(smtp.port, |s| s.notify.sweep_interval_ms = 3_600_000).await;
    let rows: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "('{}', 'low_stock', 'p/{i}', 'p', 'ops@shop.test', 'PENDING', '{{}}', 'corr')",
                uuid::Uuid::now_v7()
            )
        })
        .collect();
    saga_common::testing::execute(
        &app.database_url,
        &format!(
            "INSERT INTO notifications (id, kind, subject, product_id, recipient, status, content, \
             correlation_id) VALUES {}",
            rows.join(", ")
        ),
    )
    .await;
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(sea_orm::Database::connect(&app.database_url).await.unwrap());
    }
    let lease = std::time::Duration::from_secs(60);
    let claims = futures_util::future::join_all(
        connections
            .iter()
            .map(|db| async move { store::claim(db, 15, lease).await.unwrap() }),
    )
    .await;
    let mut ids: Vec<uuid::Uuid> = claims.iter().flatten().map(|due| due.id).collect();
    let claimed = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), claimed, "a row claimed twice");
    assert_eq!(
        claimed, 40,
        "4 claims of up to 15 take all 40 rows: {claims:?}"
    );
    // Claimed rows are leased: a claim now finds nothing due.
    assert!(
        store::claim(&connections[0], 15, lease)
            .await
            .unwrap()
            .is_empty()
    );
    for db in connections {
        let _ = db.close().await;
    }
    app.stop().await;
}
