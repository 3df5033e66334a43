use reqwest::StatusCode;
use serde_json::Value;

use saga_common::testing::{PATIENCE, end_database_connections, eventually, number};

use crate::helpers::spawn_app_with;

/// A pooled connection is not pinged before each use: one the database ended since (a restart,
/// a failover) is found by the statement that uses it. That request answers 503, as when the
/// database is out of reach, not 500, and the pool replaces the connection for the next one.
#[tokio::test]
async fn a_request_on_a_connection_the_database_ended_answers_503_and_the_next_succeeds() {
    let app = spawn_app_with(|settings| {
        // One connection, never checked before use, and no relay scan to find it dead first.
        settings.database.max_connections = 1;
        settings.database.check_idle_after_ms = 3_600_000;
        settings.outbox.poll_interval_ms = 3_600_000;
    })
    .await;
    app.fund("c-1", 500).await;
    // The account's `account.updated` is published and marked: the relay is done with the
    // connection, which the next request is the first to use.
    eventually("account.updated published and marked", PATIENCE, || async {
        let pending = number(
            &app.database_url,
            "SELECT count(*) AS n FROM outbox_pending",
        )
        .await;
        (pending == 0).then_some(())
    })
    .await;
    assert_eq!(app.get_account("c-1").await.status(), StatusCode::OK);

    end_database_connections(&app.database_url).await;
    let lost = app.get_account("c-1").await;
    assert_eq!(lost.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = lost.json().await.unwrap();
    assert_eq!(error["error"], "service_unavailable");

    eventually("a request on a fresh connection", PATIENCE, || async {
        (app.get_account("c-1").await.status() == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(app.balance("c-1").await, 500);
}
