//! Notifications: the confirmation of an order whose customer had no address yet is listed
//! SKIPPED; once the customer gives one (payment's account), a resend from the page queues it
//! to that address, and the fleet's SMTP server receives it.

use serde_json::{Value, json};
use uuid::Uuid;

use saga_common::testing::{PATIENCE, eventually, number};

use crate::browser::{Browser, turn};
use crate::helpers::{TestFleet, order_body, spawn_console_fleet};

const EMAIL: &str = "eve@example.com";

/// The notification service's notifications of `order_id`.
async fn notifications(fleet: &TestFleet, order_id: Uuid) -> Vec<Value> {
    let page: Value = fleet
        .get(format!(
            "{}/api/notifications?order_id={order_id}",
            fleet.notification.base
        ))
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn an_orders_notification_is_listed_and_resent() {
    let _turn = turn().await;
    let fleet = spawn_console_fleet().await;
    fleet.set_balance("note-eve", 10_000).await;
    fleet.set_stock("note-lamp", 10).await;
    let order_id = fleet
        .place(&order_body("note-eve", "note-lamp", 1, 100))
        .await;
    assert_eq!(fleet.wait_final(order_id).await["status"], "COMPLETED");
    let skipped = eventually("the order's notification", PATIENCE, || async {
        notifications(&fleet, order_id).await.into_iter().next()
    })
    .await;
    assert_eq!(skipped["status"], "SKIPPED", "no address yet: {skipped}");
    let id = skipped["id"].as_str().unwrap().to_owned();
    // The address arrives through payment's account event.
    let response = fleet
        .client
        .put(format!("{}/api/accounts/note-eve", fleet.payment.base))
        .json(&json!({"balance_cents": 10_000, "email": EMAIL}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let known = format!("SELECT count(*) AS n FROM recipients WHERE email = '{EMAIL}'");
    eventually(
        "the notification service to know the address",
        PATIENCE,
        || async { (number(&fleet.notification.db_url, &known).await == 1).then_some(()) },
    )
    .await;

    let browser = Browser::start().await;
    browser.sign_in(&fleet.orchestrator.base).await;
    browser.click("nav#nav a[data-nav=notifications]").await;
    browser.wait_page("notifications").await;
    let row = format!("#notification-table tbody tr[data-notification-id='{id}']");
    let listed = browser.text(&row).await;
    for expected in ["order_confirmed", "SKIPPED", &order_id.to_string()] {
        assert!(listed.contains(expected), "{expected:?} not in {listed:?}");
    }
    browser.click(&format!("{row} button.resend")).await;
    browser.confirm().await;
    browser
        .wait_text("#notification-result", "the resend", |t| {
            t.contains("PENDING")
        })
        .await;
    browser.wait_page("notifications").await;
    let resent = notifications(&fleet, order_id).await;
    assert_eq!(resent.len(), 1);
    assert_ne!(resent[0]["status"], "SKIPPED", "{}", resent[0]);
    assert_eq!(resent[0]["recipient"], EMAIL);
    browser
        .wait_text(&row, "the address", |t| t.contains(EMAIL))
        .await;
    // The fleet's SMTP server takes it: SENT in the service, a mail in the Maildir, and SENT on
    // the page once it reloads the list.
    let sent =
        format!("SELECT count(*) AS n FROM notifications WHERE id = '{id}' AND status = 'SENT'");
    eventually("the resent notification to be SENT", PATIENCE, || async {
        (number(&fleet.notification.db_url, &sent).await == 1).then_some(())
    })
    .await;
    let mails = fleet.mail_catcher.as_ref().unwrap().wait_for(1).await;
    assert!(mails[0].raw.contains(EMAIL), "{}", mails[0].raw);
    browser.click("#n-apply").await;
    browser.wait_page("notifications").await;
    browser
        .wait_text(&row, "SENT on the page", |t| t.contains("SENT"))
        .await;
    browser.screenshot("notifications").await;
}
