//! Bad input found by trying it: NUL characters (PostgreSQL text cannot hold them) and amounts
//! past the bounds (arithmetic on them must not overflow).

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use saga_common::contracts::{self, MAX_AMOUNT_CENTS, Payload};
use saga_common::testing::{PATIENCE, eventually};

use crate::helpers::{TestApp, charge, refund, spawn_app};

const NUL_RULE: &str = "must not contain the NUL character (\\u0000)";

async fn error_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    response.json().await.unwrap()
}

/// The dead letters' `(reason, error)` once there are `count`.
async fn dead_letter_reasons(app: &TestApp, count: u64) -> Vec<(String, String)> {
    let page = app.dead_letters(count).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["reason"].as_str().unwrap_or_default().to_owned(),
                item["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_nul_in_a_path_id_or_a_query_parameter_is_a_422_naming_it_and_nothing_is_written() {
    let app = spawn_app().await;
    let error = error_of(app.put_account("c%00x", &json!({"balance_cents": 5})).await).await;
    assert_eq!(error["details"][0]["field"], "customer_id");
    assert_eq!(error["details"][0]["message"], NUL_RULE);
    let error = error_of(app.get_account("c%00x").await).await;
    assert_eq!(error["details"][0]["field"], "customer_id");
    let rows =
        saga_common::testing::number(&app.database_url, "SELECT count(*) AS n FROM accounts").await;
    assert_eq!(rows, 0);

    let response = app
        .client
        .get(format!("{}/api/payments?order_id=a%00b", app.address))
        .send()
        .await
        .unwrap();
    let error = error_of(response).await;
    assert_eq!(error["details"][0]["field"], "order_id");
    assert_eq!(error["details"][0]["message"], NUL_RULE);
}

#[tokio::test]
async fn a_balance_past_the_maximum_is_refused() {
    let app = spawn_app().await;
    for balance in [MAX_AMOUNT_CENTS + 1, i64::MAX] {
        let error = error_of(
            app.put_account("c-1", &json!({"balance_cents": balance}))
                .await,
        )
        .await;
        assert_eq!(error["details"][0]["field"], "balance_cents");
    }
    assert_eq!(
        app.get_account("c-1").await.status(),
        StatusCode::NOT_FOUND,
        "nothing written"
    );
    app.fund("c-1", MAX_AMOUNT_CENTS).await;
    assert_eq!(app.balance("c-1").await, MAX_AMOUNT_CENTS);
}

#[tokio::test]
async fn commands_holding_a_nul_or_an_amount_past_the_bound_are_dead_lettered_naming_why() {
    let app = spawn_app().await;
    app.fund("c-1", 1_000).await;

    let mut nul = charge(Uuid::now_v7(), "c-1", 5);
    nul.payload["customer_id"] = "c\u{0}x".into();
    app.send_command(&nul).await;
    app.send_command(&charge(Uuid::now_v7(), "c-1", MAX_AMOUNT_CENTS + 1))
        .await;

    let mut reasons = dead_letter_reasons(&app, 2).await;
    reasons.sort();
    assert_eq!(reasons[0].0, "invalid_payload");
    assert_eq!(reasons[1].0, "invalid_payload");
    let errors = format!("{reasons:?}");
    assert!(
        errors.contains(&format!(
            "payload.customer_id {}",
            NUL_RULE.replace('\\', "\\\\")
        )),
        "{errors}"
    );
    assert!(
        errors.contains("amount_cents must be between 0 and"),
        "{errors}"
    );
    assert_eq!(app.balance("c-1").await, 1_000, "nothing taken");
    let payments =
        saga_common::testing::number(&app.database_url, "SELECT count(*) AS n FROM payments").await;
    assert_eq!(payments, 0);
}

#[tokio::test]
async fn a_refund_onto_a_balance_set_to_the_maximum_meanwhile_is_capped_there() {
    let app = spawn_app().await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    let order = Uuid::now_v7();
    app.send_command(&charge(order, "c-1", 400)).await;
    assert_eq!(
        replies.next().await.message_type,
        contracts::PaymentCharged::TYPE
    );

    // The operator sets the balance to the maximum while the order is still open.
    app.fund("c-1", MAX_AMOUNT_CENTS).await;
    app.send_command(&refund(order, "c-1")).await;
    let answer = replies.next().await;
    assert_eq!(answer.message_type, contracts::PaymentRefunded::TYPE);
    assert_eq!(answer.payload["refunded_cents"], 400);
    eventually("the refund recorded", PATIENCE, || async {
        (app.payments(order).await[0]["status"] == "REFUNDED").then_some(())
    })
    .await;
    assert_eq!(
        app.balance("c-1").await,
        MAX_AMOUNT_CENTS,
        "capped, not overflowed"
    );
}
