//! The operator console's backend: the page at `/console`, the overview and the proxy to the
//! participants (docs/console.md), against a whole fleet with the notification service.

use reqwest::StatusCode;

use crate::helpers::spawn_console_fleet;

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
