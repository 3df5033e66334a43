//! Sign-in: a refused token shows its error on the sign-in page, the right one opens the
//! overview, which shows every service of the fleet ready.

use crate::browser::{Browser, turn};
use crate::helpers::ADMIN_TOKEN;
use crate::helpers::{order_body, spawn_console_fleet};

#[tokio::test]
async fn a_refused_token_shows_an_error_and_the_right_one_opens_the_overview() {
    let _turn = turn().await;
    let fleet = spawn_console_fleet().await;
    // Something for the chart and today's summary to show.
    fleet.set_balance("signin-ann", 10_000).await;
    fleet.set_stock("signin-lamp", 10).await;
    let order_id = fleet
        .place(&order_body("signin-ann", "signin-lamp", 1, 500))
        .await;
    assert_eq!(fleet.wait_final(order_id).await["status"], "COMPLETED");
    let browser = Browser::start().await;

    browser
        .goto(&format!("{}/console", fleet.orchestrator.base))
        .await;
    browser.wait_for("form#signin #token").await;
    browser.fill("#token", "not-the-operator-token").await;
    browser.click("#signin-submit").await;

    let error = browser
        .wait_text("#signin-error", "the refusal", |text| {
            !text.trim().is_empty()
        })
        .await;
    assert_eq!(browser.count("form#signin").await, 1, "the form stays");
    let page = browser
        .js(
            "return document.querySelector('main#page').dataset.page",
            vec![],
        )
        .await;
    assert_eq!(page, "signin", "refused with {error:?}");
    assert_eq!(
        browser
            .js(
                "return sessionStorage.getItem('saga-console-token')",
                vec![]
            )
            .await,
        serde_json::Value::Null,
        "a refused token is not kept"
    );

    browser.fill("#token", ADMIN_TOKEN).await;
    browser.click("#signin-submit").await;
    browser.wait_page("overview").await;
    browser.wait_for("#overview-chart svg").await;
    for service in ["orchestrator", "payment", "inventory", "notification"] {
        let row = format!("#overview-services tr[data-service={service}]");
        browser
            .wait_text(&row, "the service ready", |text| {
                let text = text.to_lowercase();
                text.contains("ready") && !text.contains("not ready")
            })
            .await;
    }
    assert_eq!(
        browser
            .js(
                "return document.querySelector('nav#nav a[aria-current=page]').dataset.nav",
                vec![]
            )
            .await,
        "overview"
    );
    browser.screenshot("overview").await;
}
