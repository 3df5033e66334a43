//! Orders are a customer's own business: a customer token places orders for its `sub`, lists
//! only its orders, and sees another customer's order exactly as an unknown one (404, same
//! body). The operator sees everything; sagas are the operator's alone.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use saga_common::testing::customer_token;

use crate::helpers::{FleetOptions, TestFleet, order_body, spawn_fleet_with};

async fn fleet() -> TestFleet {
    // No participant: the orders stay PENDING, which is all these tests read.
    spawn_fleet_with(FleetOptions {
        with_payment: false,
        with_inventory: false,
        ..FleetOptions::default()
    })
    .await
}

/// A request with `token` as bearer (none when `None`), never the operator's default.
fn call(
    fleet: &TestFleet,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let request = fleet
        .anonymous
        .request(method, format!("{}{path}", fleet.orchestrator.base));
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

async fn place_as(fleet: &TestFleet, token: &str, body: &Value) -> reqwest::Response {
    call(fleet, reqwest::Method::POST, "/api/orders", Some(token))
        .json(body)
        .send()
        .await
        .unwrap()
}

fn items() -> Value {
    json!([{"product_id": "mug", "quantity": 1, "unit_price_cents": 100}])
}

#[tokio::test]
async fn order_routes_answer_401_without_or_with_a_refused_token() {
    let fleet = fleet().await;
    let id = Uuid::now_v7();
    let routes = [
        (reqwest::Method::POST, "/api/orders".to_owned()),
        (reqwest::Method::GET, "/api/orders".to_owned()),
        (reqwest::Method::GET, format!("/api/orders/{id}")),
        (reqwest::Method::GET, format!("/api/orders/{id}/timeline")),
        (reqwest::Method::GET, "/api/sagas".to_owned()),
        (reqwest::Method::POST, "/api/sagas/bulk/retry".to_owned()),
        (
            reqwest::Method::POST,
            "/api/sagas/bulk/compensate".to_owned(),
        ),
    ];
    for (method, path) in routes {
        for token in [None, Some("not-a-token")] {
            let response = call(&fleet, method.clone(), &path, token)
                .json(&order_body("c-1", "mug", 1, 100))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert!(
                response.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer")
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized");
        }
    }
}

#[tokio::test]
async fn a_customer_may_not_use_the_operator_routes() {
    let fleet = fleet().await;
    let alice = customer_token("alice");
    for (method, path) in [
        (reqwest::Method::GET, "/api/sagas".to_owned()),
        (
            reqwest::Method::POST,
            format!("/api/sagas/{}/retry", Uuid::now_v7()),
        ),
        (reqwest::Method::POST, "/api/sagas/bulk/retry".to_owned()),
        (
            reqwest::Method::POST,
            "/api/sagas/bulk/compensate".to_owned(),
        ),
        (reqwest::Method::GET, "/api/admin/dead-letters".to_owned()),
        (
            reqwest::Method::POST,
            "/api/admin/retention/prune".to_owned(),
        ),
        (reqwest::Method::GET, "/api/console/overview".to_owned()),
        (
            reqwest::Method::GET,
            "/api/console/services/payment/api/admin/dead-letters".to_owned(),
        ),
    ] {
        let response = call(&fleet, method.clone(), &path, Some(&alice))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
    }
}

#[tokio::test]
async fn a_customer_orders_for_itself_and_a_mismatch_is_refused() {
    let fleet = fleet().await;
    let alice = customer_token("alice");
    let placed = place_as(&fleet, &alice, &json!({"items": items()})).await;
    assert_eq!(placed.status(), StatusCode::ACCEPTED);
    let body: Value = placed.json().await.unwrap();
    assert_eq!(body["customer_id"], "alice", "taken from sub");

    let same = place_as(
        &fleet,
        &alice,
        &json!({"customer_id": "alice", "items": items()}),
    )
    .await;
    assert_eq!(same.status(), StatusCode::ACCEPTED);

    let other = place_as(
        &fleet,
        &alice,
        &json!({"customer_id": "bob", "items": items()}),
    )
    .await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let error: Value = other.json().await.unwrap();
    assert_eq!(error["error"], "customer_mismatch");

    // The operator names the customer; without one it is the usual 422.
    let missing = fleet.post_order(&json!({"items": items()})).await;
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["details"][0]["field"], "customer_id");
}

#[tokio::test]
async fn a_customer_cannot_see_list_or_follow_anothers_orders() {
    let fleet = fleet().await;
    let (alice, bob) = (customer_token("alice"), customer_token("bob"));
    let alices: Value = place_as(&fleet, &alice, &json!({"items": items()}))
        .await
        .json()
        .await
        .unwrap();
    let bobs: Value = place_as(&fleet, &bob, &json!({"items": items()}))
        .await
        .json()
        .await
        .unwrap();
    let bobs_id = bobs["order_id"].as_str().unwrap();
    let unknown = Uuid::now_v7();

    for suffix in ["", "/timeline"] {
        let own = call(
            &fleet,
            reqwest::Method::GET,
            &format!(
                "/api/orders/{}{suffix}",
                alices["order_id"].as_str().unwrap()
            ),
            Some(&alice),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(own.status(), StatusCode::OK, "{suffix}");

        let get = |id: String| {
            let request = call(
                &fleet,
                reqwest::Method::GET,
                &format!("/api/orders/{id}{suffix}"),
                Some(&alice),
            );
            async move {
                let response = request.send().await.unwrap();
                (response.status(), response.json::<Value>().await.unwrap())
            }
        };
        let (status, foreign) = get(bobs_id.to_owned()).await;
        let (unknown_status, missing) = get(unknown.to_string()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{suffix}");
        assert_eq!(unknown_status, StatusCode::NOT_FOUND);
        // The same body but for the id it names: nothing tells the two apart.
        assert_eq!(
            foreign["message"].as_str().unwrap().replace(bobs_id, "ID"),
            missing["message"]
                .as_str()
                .unwrap()
                .replace(&unknown.to_string(), "ID"),
        );
        assert_eq!(foreign["error"], missing["error"]);
    }

    // Alice's list holds only hers; naming Bob is refused; the operator sees both.
    let list: Value = call(&fleet, reqwest::Method::GET, "/api/orders", Some(&alice))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let customers: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(customers, ["alice"]);
    let asked = call(
        &fleet,
        reqwest::Method::GET,
        "/api/orders?customer_id=bob",
        Some(&alice),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(asked.status(), StatusCode::FORBIDDEN);
    let error: Value = asked.json().await.unwrap();
    assert_eq!(error["error"], "customer_mismatch");
    let all: Value = fleet
        .get(format!("{}/api/orders", fleet.orchestrator.base))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let bob_as_operator = fleet
        .get(format!("{}/api/orders/{bobs_id}", fleet.orchestrator.base))
        .await;
    assert_eq!(bob_as_operator.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_document_declares_both_schemes_and_which_routes_take_which() {
    let fleet = fleet().await;
    let document: Value = fleet
        .anonymous
        .get(format!("{}/api/docs/openapi.json", fleet.orchestrator.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["operator_token"]["scheme"], "bearer");
    assert_eq!(schemes["customer_jwt"]["scheme"], "bearer");
    assert_eq!(schemes["customer_jwt"]["bearerFormat"], "JWT");
    let place = &document["paths"]["/api/orders"]["post"];
    assert_eq!(
        place["security"],
        json!([{"operator_token": []}, {"customer_jwt": []}])
    );
    assert!(place["responses"]["401"].is_object());
    assert!(place["responses"]["403"].is_object());
    let sagas = &document["paths"]["/api/sagas"]["get"];
    assert_eq!(sagas["security"], json!([{"operator_token": []}]));
    for bulk in ["/api/sagas/bulk/retry", "/api/sagas/bulk/compensate"] {
        let route = &document["paths"][bulk]["post"];
        assert_eq!(route["security"], json!([{"operator_token": []}]), "{bulk}");
        assert!(route["requestBody"].is_object(), "{bulk}");
    }
    assert!(document["paths"]["/health/ready"]["get"]["security"].is_null());
}
