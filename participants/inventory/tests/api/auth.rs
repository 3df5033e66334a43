//! Stock and reservations are the operator's: 401 without or with a refused bearer, 403 for a
//! customer token, open to the operator token.

use reqwest::StatusCode;
use serde_json::{Value, json};

use saga_common::testing::customer_token;

use crate::helpers::spawn_app;

#[tokio::test]
async fn products_and_reservations_are_for_the_operator_only() {
    let app = spawn_app().await;
    let customer = customer_token("c-1");
    for (method, path) in [
        (reqwest::Method::PUT, "/api/products/mug"),
        (reqwest::Method::GET, "/api/products/mug"),
        (reqwest::Method::GET, "/api/reservations"),
    ] {
        let url = format!("{}{path}", app.address);
        let body = json!({"stock": 5});
        for (token, status, code) in [
            (None, StatusCode::UNAUTHORIZED, "unauthorized"),
            (Some("garbage"), StatusCode::UNAUTHORIZED, "unauthorized"),
            (Some(customer.as_str()), StatusCode::FORBIDDEN, "forbidden"),
        ] {
            let mut request = app.anonymous.request(method.clone(), &url).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), status, "{method} {path} {token:?}");
            if status == StatusCode::UNAUTHORIZED {
                assert!(
                    response.headers()["www-authenticate"]
                        .to_str()
                        .unwrap()
                        .starts_with("Bearer")
                );
            }
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"], code);
        }
    }
    // The operator (the helpers' client) sets the stock and reads it back.
    let put = app.put_product("mug", &json!({"stock": 5})).await;
    assert_eq!(put.status(), StatusCode::CREATED);
}
