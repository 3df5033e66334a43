//! The rate limits through the real service: anonymous callers are counted per address (the
//! operator, whom the test helpers' client speaks as, is never limited).

use reqwest::StatusCode;
use serde_json::Value;

use saga_common::configuration::RateLimitSettings;

use crate::helpers::spawn_app_with;

fn tight(enabled: bool) -> RateLimitSettings {
    RateLimitSettings {
        enabled,
        per_address_per_second: 1,
        per_address_burst: 2,
        ..RateLimitSettings::default()
    }
}

#[tokio::test]
async fn an_address_over_its_burst_gets_429_with_retry_after_but_probes_and_docs_still_answer() {
    let app = spawn_app_with(|settings| settings.rate_limit = tight(true)).await;
    // The readiness polling of spawn_app is exempt, so the whole burst is left. Without a token
    // the route answers 401, but only after the limiter has counted the request.
    let anonymous = |app: &crate::helpers::TestApp| {
        app.anonymous
            .get(format!("{}/api/accounts/nobody", app.address))
            .send()
    };
    for _ in 0..2 {
        let response = anonymous(&app).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let refused = anonymous(&app).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert!(refused.headers().contains_key("x-correlation-id"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(body["message"].is_string());

    for path in ["/health/live", "/health/ready", "/api/docs/openapi.json"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn disabled_limits_never_refuse() {
    let app = spawn_app_with(|settings| settings.rate_limit = tight(false)).await;
    for _ in 0..10 {
        let response = app
            .anonymous
            .get(format!("{}/api/accounts/nobody", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}
