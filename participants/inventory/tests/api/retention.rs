//! Retention on the inventory: reservations past `retention.history` go with their lines, the
//! younger ones stay.

use std::time::Duration;

use uuid::Uuid;

use saga_common::testing::{execute, number, uuid_v7_ago};

use inventory::startup::Inventory;
use saga_common::testing::TestService;

use crate::helpers::TestApp;

const DAY: Duration = Duration::from_secs(86_400);

/// A reservation of one line, its order id made `age` ago and last changed `updated` ago.
fn reservation(order_id: Uuid, age: Duration, updated: &str) -> String {
    format!(
        "INSERT INTO reservations (order_id, status, created_at, updated_at) \
         VALUES ('{order_id}', 'RESERVED', now() - interval '{} seconds', now() - interval '{updated}'); \
         INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES ('{order_id}', 'p', 1);",
        age.as_secs()
    )
}

#[tokio::test]
async fn reservations_past_the_history_window_go_with_their_lines_and_younger_ones_stay() {
    // No scheduled run: only the test's runs prune.
    let app = TestApp(TestService::spawn::<Inventory>(|s| s.retention.enabled = false).await);
    let (old, young, released_lately) = (
        uuid_v7_ago(31 * DAY),
        uuid_v7_ago(29 * DAY),
        uuid_v7_ago(31 * DAY),
    );
    execute(
        &app.database_url,
        &[
            reservation(old, 31 * DAY, "31 days"),
            reservation(young, 29 * DAY, "29 days"),
            reservation(released_lately, 31 * DAY, "1 day"),
        ]
        .concat(),
    )
    .await;

    let dry = app.prune(true).await;
    let rule = dry["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["rule"] == "reservations")
        .unwrap()
        .clone();
    assert_eq!(rule["removed"]["reservations"], 1, "{dry}");
    assert_eq!(
        number(&app.database_url, "SELECT count(*) AS n FROM reservations").await,
        3
    );

    let run = app.prune(false).await;
    let rule = run["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["rule"] == "reservations")
        .unwrap()
        .clone();
    assert_eq!(rule["removed"]["reservations"], 1, "{run}");
    assert_eq!(rule["removed"]["reservation_lines"], 1, "{run}");
    for (order_id, kept) in [(old, 0), (young, 1), (released_lately, 1)] {
        for table in ["reservations", "reservation_lines"] {
            let n = number(
                &app.database_url,
                &format!("SELECT count(*) AS n FROM {table} WHERE order_id = '{order_id}'"),
            )
            .await;
            assert_eq!(n, kept, "{table} of {order_id}");
        }
    }
    app.stop().await;
}
