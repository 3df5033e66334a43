//! `/api/admin/dead-letters` on inventory: a reserve that failed until its retries ran out is
//! replayed once the fault is fixed.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use saga_common::contracts::{self, Payload};
use saga_common::testing::{PATIENCE, eventually, execute};

use crate::helpers::{reserve_command, spawn_app};

#[tokio::test]
async fn a_reserve_failing_past_max_attempts_is_replayed_through_the_admin_api_once_fixed() {
    let app = spawn_app().await;
    app.stock("p-1", 10).await;
    let mut replies = app.listen_for_replies().await;
    execute(
        &app.database_url.clone(),
        "ALTER TABLE products RENAME TO products_away",
    )
    .await;
    let command = reserve_command(Uuid::now_v7(), &[("p-1", 3)]);

    app.send_command(&command).await;

    let page: Value = eventually("the reserve to be dead-lettered", PATIENCE, || async {
        let page: Value = app.get_dead_letters(true).await.json().await.ok()?;
        (page["total"] == 1).then_some(page)
    })
    .await;
    let dead = &page["items"][0];
    assert_eq!(dead["message_id"], command.message_id.to_string());
    assert_eq!(dead["reason"], "retries_exhausted");
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["headers"]["x-service"], "inventory");
    assert_eq!(
        app.get_dead_letters(false).await.status(),
        StatusCode::UNAUTHORIZED
    );

    execute(
        &app.database_url.clone(),
        "ALTER TABLE products_away RENAME TO products",
    )
    .await;
    let replayed = app.replay_dead_letters(&json!({"all": true})).await;
    assert_eq!(replayed.status(), StatusCode::OK);
    assert_eq!(
        replayed.json::<Value>().await.unwrap(),
        json!({"replayed": 1, "not_found": [], "failed": [], "refused": []})
    );

    let answer = replies.next().await;
    assert_eq!(answer.message_type, contracts::StockReserved::TYPE);
    assert_eq!(answer.causation_id, Some(command.message_id));
    assert_eq!(app.stock_of("p-1").await, (7, 3));
    let page: Value = app.get_dead_letters(true).await.json().await.unwrap();
    assert_eq!(page["total"], 0);
    app.stop().await;
}
