//! Sagas: an order placed by the test is found through the search box and opened (its timeline
//! has its three steps, the payment and the reservation are shown); a stuck saga is matched by
//! a dry-run bulk retry that changes nothing, then compensated from its detail page.

use serde_json::Value;
use uuid::Uuid;

use orchestrator::configuration::SagaSettings;

use crate::browser::{Browser, turn};
use crate::helpers::{FleetOptions, TestFleet, order_body, spawn_console_fleet, spawn_fleet_with};
use saga_common::testing::{PATIENCE, eventually};

/// The saga as `GET /api/sagas?q=` lists it (`null` before it is written).
async fn saga(fleet: &TestFleet, order_id: Uuid) -> Value {
    let page: Value = fleet
        .get(format!(
            "{}/api/sagas?q={order_id}",
            fleet.orchestrator.base
        ))
        .await
        .json()
        .await
        .unwrap();
    page["items"][0].clone()
}

#[tokio::test]
async fn an_order_is_found_by_search_and_its_timeline_shows_three_steps() {
    let _turn = turn().await;
    let fleet = spawn_console_fleet().await;
    fleet.set_balance("search-ann", 10_000).await;
    fleet.set_stock("search-lamp", 10).await;
    // Another order, so the search has something to leave out.
    let other = fleet
        .place(&order_body("search-ann", "search-lamp", 1, 100))
        .await;
    let order_id = fleet
        .place(&order_body("search-ann", "search-lamp", 2, 250))
        .await;
    for id in [other, order_id] {
        assert_eq!(fleet.wait_final(id).await["status"], "COMPLETED");
    }
    let browser = Browser::start().await;
    browser.sign_in(&fleet.orchestrator.base).await;

    browser.click("nav#nav a[data-nav=sagas]").await;
    browser.wait_page("sagas").await;
    browser
        .wait_for(&format!("#saga-table tbody tr[data-order-id='{other}']"))
        .await;
    browser.screenshot("sagas").await;

    // A filter the API refuses (422): the message names the field, the control is marked.
    browser.fill("#f-older", "soon").await;
    browser.click("#f-apply").await;
    browser
        .wait_text("main#page [role=alert]", "the field at fault", |t| {
            t.contains("older_than")
        })
        .await;
    browser.wait_for("#f-older[aria-invalid=true]").await;

    browser.fill("#f-older", "").await;
    browser.fill("#f-q", &order_id.to_string()).await;
    browser.click("#f-apply").await;
    browser
        .wait_gone(&format!("#saga-table tbody tr[data-order-id='{other}']"))
        .await;
    let row = format!("#saga-table tbody tr[data-order-id='{order_id}']");
    browser.wait_for(&row).await;
    browser.wait_page("sagas").await;
    assert_eq!(
        browser.count("#saga-table tbody tr[data-order-id]").await,
        1
    );
    browser.click(&format!("{row} a.saga-link")).await;

    browser.wait_page("saga").await;
    browser
        .wait_for(&format!("section#saga-detail[data-order-id='{order_id}']"))
        .await;
    assert_eq!(browser.count("#timeline g[data-step]").await, 3);
    for lane in ["orchestrator", "payment", "inventory"] {
        browser
            .wait_for(&format!("#timeline [data-lane={lane}]"))
            .await;
    }
    let timeline = browser.text("#timeline").await;
    for trigger in ["order.placed", "payment.charged", "inventory.reserved"] {
        assert!(timeline.contains(trigger), "{trigger} not in {timeline:?}");
    }
    assert!(browser.text("#saga-state").await.contains("COMPLETED"));
    assert!(browser.text("#order-lines").await.contains("search-lamp"));
    // What the participants hold: the charge of 5.00 and the reservation of 2.
    let payment = browser.text("#payment-view").await;
    assert!(
        payment.contains("500") || payment.contains("5.00"),
        "{payment:?}"
    );
    let reservation = browser.text("#reservation-view").await;
    assert!(reservation.contains("search-lamp"), "{reservation:?}");
    let compensate = browser.wait_for("#action-compensate").await;
    assert!(!compensate.is_enabled().await.unwrap(), "a final saga");
    browser.screenshot("saga").await;
}

#[tokio::test]
async fn a_stuck_saga_is_matched_by_a_dry_run_then_compensated() {
    let _turn = turn().await;
    let mut fleet = spawn_fleet_with(FleetOptions {
        with_inventory: false,
        // Stuck until the operator acts: no resend or timeout of its own meanwhile.
        saga: SagaSettings {
            awaiting_stock_timeout_ms: 600_000,
            ..SagaSettings::default()
        },
        ..FleetOptions::default()
    })
    .await;
    fleet.set_balance("stuck-bob", 10_000).await;
    let order_id = fleet
        .place(&order_body("stuck-bob", "stuck-lamp", 1, 300))
        .await;
    eventually("the saga to wait for stock", PATIENCE, || async {
        (saga(&fleet, order_id).await["state"] == "AWAITING_STOCK").then_some(())
    })
    .await;
    let before = saga(&fleet, order_id).await;
    let browser = Browser::start().await;
    browser.sign_in(&fleet.orchestrator.base).await;

    // A dry run: how many and which, nothing done.
    browser.click("nav#nav a[data-nav=bulk]").await;
    browser.wait_page("bulk").await;
    browser.choose("#b-state", "AWAITING_STOCK").await;
    browser.choose("#b-action", "retry").await;
    let run = browser.wait_for("#bulk-run").await;
    assert!(
        !run.is_enabled().await.unwrap(),
        "no real run before a dry run"
    );
    browser.click("#bulk-dry-run").await;
    browser
        .wait_text("#bulk-matched", "one match", |text| text.trim() == "1")
        .await;
    let ids = browser.text("ul#bulk-ids").await;
    assert!(ids.contains(&order_id.to_string()), "{ids:?}");
    assert_eq!(browser.count("ul#bulk-ids li").await, 1);
    browser.screenshot("bulk").await;
    let after = saga(&fleet, order_id).await;
    for field in ["state", "version", "resends", "updated_at"] {
        assert_eq!(before[field], after[field], "a dry run changed {field}");
    }

    // Compensated from its page.
    browser
        .goto(&format!(
            "{}/console#/sagas/{order_id}",
            fleet.orchestrator.base
        ))
        .await;
    browser.wait_page("saga").await;
    browser
        .wait_text("#saga-state", "AWAITING_STOCK", |t| {
            t.contains("AWAITING_STOCK")
        })
        .await;
    browser.click("#action-compensate").await;
    browser.confirm().await;
    browser
        .wait_text("#action-result", "the outcome", |t| !t.trim().is_empty())
        .await;
    browser
        .wait_text("#saga-state", "another state", |t| {
            !t.trim().is_empty() && !t.contains("AWAITING_STOCK")
        })
        .await;
    assert_ne!(saga(&fleet, order_id).await["state"], "AWAITING_STOCK");

    // Once inventory answers, the compensation ends the saga.
    fleet.start_inventory().await;
    assert_eq!(fleet.wait_final(order_id).await["status"], "FAILED");
}
