//! Retention on a participant: the shared outbox and inbox rules and the payments' history rule,
//! through `POST /api/admin/retention/prune`, on rows backdated by hand.

use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::Value;
use uuid::Uuid;

use saga_common::configuration::ServiceSettings;
use saga_common::testing::{execute, number, prune, uuid_v7_ago};

use crate::helpers::{TestApp, charge, spawn_app, spawn_app_with};

const DAY: Duration = Duration::from_secs(86_400);

/// The service with no scheduled run, so only the test's runs prune.
async fn unscheduled() -> TestApp {
    spawn_app_with(|settings| settings.retention.enabled = false).await
}

/// The `message_type`s (outbox, inbox) or `customer_id`s (payments) left in `table`, sorted.
async fn labels(url: &str, table: &str, column: &str) -> Vec<String> {
    let db = sea_orm::Database::connect(url).await.unwrap();
    let rows = db
        .query_all_raw(saga_common::db::stmt(
            &format!("SELECT {column} AS label FROM {table} ORDER BY 1"),
            [],
        ))
        .await
        .unwrap();
    let _ = db.close().await;
    rows.iter()
        .map(|row| row.try_get::<String>("", "label").unwrap())
        .collect()
}

/// Rows of every kind, each labelled by what should become of it.
async fn backdated_rows(url: &str) {
    let outbox = |label: &str, age: &str| {
        format!(
            "INSERT INTO outbox (message_id, exchange, routing_key, message_type, saga_id, body, \
               created_at) VALUES ('{}', 'x', 'k', '{label}', '{}', '{{}}', now() - interval '{age}');",
            Uuid::now_v7(),
            Uuid::now_v7()
        )
    };
    let inbox = |label: &str, id_age: Duration, received: &str| {
        format!(
            "INSERT INTO inbox (consumer, message_id, message_type, received_at) \
             VALUES ('payment', '{}', '{label}', now() - interval '{received}');",
            uuid_v7_ago(id_age)
        )
    };
    let payment = |label: &str, age: Duration, updated: &str| {
        format!(
            "INSERT INTO payments (payment_id, order_id, customer_id, amount_cents, status, \
               created_at, updated_at) VALUES ('{}', '{}', '{label}', 1, 'CHARGED', \
               now() - interval '{} seconds', now() - interval '{updated}');",
            uuid_v7_ago(age),
            uuid_v7_ago(age),
            age.as_secs()
        )
    };
    let sql = [
        outbox("old_published", "1 hour"),
        outbox("old_pending", "1 hour"),
        outbox("new_published", "0 seconds"),
        // The trigger made every row pending; the broker "confirmed" all but one.
        "DELETE FROM outbox_pending WHERE id IN \
           (SELECT id FROM outbox WHERE message_type <> 'old_pending');"
            .to_owned(),
        inbox("old", 8 * DAY, "8 days"),
        // Past the 7-day window but inside the clock-skew margin.
        inbox(
            "in_margin",
            7 * DAY + Duration::from_secs(60),
            "7 days 1 minute",
        ),
        // An old message received only now (a late copy): its entry is young.
        inbox("received_late", 8 * DAY, "0 seconds"),
        payment("old", 31 * DAY, "31 days"),
        payment("young", 29 * DAY, "29 days"),
        payment("refunded_lately", 31 * DAY, "1 day"),
    ]
    .concat();
    execute(url, &sql).await;
}

/// The report's entry for `rule`.
fn rule<'a>(report: &'a Value, rule: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["rule"] == rule)
        .unwrap_or_else(|| panic!("no rule {rule} in {report}"))
}

#[tokio::test]
async fn pruning_removes_exactly_the_rows_past_their_window_and_a_dry_run_removes_nothing() {
    let app = unscheduled().await;
    let url = app.database_url.clone();
    backdated_rows(&url).await;
    let everything = |url: String| async move {
        (
            labels(&url, "outbox", "message_type").await,
            labels(&url, "inbox", "message_type").await,
            labels(&url, "payments", "customer_id").await,
        )
    };
    let before = everything(url.clone()).await;

    let dry = app.prune(true).await;
    assert_eq!(dry["dry_run"], true);
    for (name, table) in [
        ("outbox", "outbox"),
        ("inbox", "inbox"),
        ("payments", "payments"),
    ] {
        let entry = rule(&dry, name);
        assert_eq!(entry["removed"][table], 1, "{dry}");
        assert_eq!(entry["batches"], 0);
        assert!(entry["cutoff"].as_str().is_some(), "{dry}");
    }
    assert_eq!(
        everything(url.clone()).await,
        before,
        "a dry run removes nothing"
    );

    let run = app.prune(false).await;
    assert_eq!(run["dry_run"], false);
    for name in ["outbox", "inbox", "payments"] {
        assert_eq!(rule(&run, name)["removed"][name], 1, "{run}");
    }
    let (outbox, inbox, payments) = everything(url.clone()).await;
    assert_eq!(outbox, ["new_published", "old_pending"]);
    assert_eq!(inbox, ["in_margin", "received_late"]);
    assert_eq!(payments, ["refunded_lately", "young"]);
    assert_eq!(
        number(&url, "SELECT count(*) AS n FROM outbox_pending").await,
        1,
        "the unconfirmed row is still pending"
    );

    let again = app.prune(false).await;
    assert_eq!(rule(&again, "payments")["removed"]["payments"], 0);
}

#[tokio::test]
async fn a_duplicate_delivered_inside_the_window_after_a_prune_is_still_absorbed() {
    let app = unscheduled().await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    let command = charge(Uuid::now_v7(), "c-1", 300);
    app.send_command(&command).await;
    let first = replies.next().await;
    execute(
        &app.database_url,
        &format!(
            "INSERT INTO inbox (consumer, message_id, message_type, received_at) \
             VALUES ('payment', '{}', 'old', now() - interval '30 days')",
            uuid_v7_ago(30 * DAY)
        ),
    )
    .await;

    let run = app.prune(false).await;
    assert_eq!(rule(&run, "inbox")["removed"]["inbox"], 1, "{run}");
    app.send_command(&command).await;
    let second = replies.next().await;

    // The same reply, message id included: only the inbox entry answers so, which the run kept.
    assert_eq!(first, second);
    assert_eq!(app.balance("c-1").await, 700, "charged once");
    assert_eq!(app.payments(command.saga_id).await.len(), 1);
}

#[tokio::test]
async fn the_prune_route_needs_the_admin_token_and_a_boolean_dry_run() {
    let app = spawn_app().await;
    let url = format!("{}/api/admin/retention/prune?dry_run=true", app.address);
    let anonymous = app.anonymous.post(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = app
        .client
        .post(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let bad = app
        .client
        .post(format!(
            "{}/api/admin/retention/prune?dry_run=yes",
            app.address
        ))
        .bearer_auth(saga_common::testing::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["details"][0]["field"], "dry_run");

    let allowed = prune(&app.client, &app.address, true).await;
    assert_eq!(allowed.status(), StatusCode::OK);
}

#[tokio::test]
async fn history_kept_shorter_than_the_inbox_window_is_refused_at_start() {
    let mut settings = ServiceSettings::new(0, "never_connected");
    settings.retention.inbox_window = 7 * DAY;
    settings.retention.history = DAY;
    let Err(error) = payment::startup::Application::build(settings).await else {
        panic!("the service started with history shorter than the inbox window");
    };
    let message = error.to_string();
    assert!(message.starts_with("invalid settings"), "{message}");
    assert!(message.contains("retention.history (1day)"), "{message}");
    assert!(
        message.contains("retention.inbox_window (7days)"),
        "{message}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_prune_route_behind_the_token() {
    let app = spawn_app().await;
    let document: Value = app
        .client
        .get(format!("{}/api/docs/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let operation = &document["paths"]["/api/admin/retention/prune"]["post"];
    assert_eq!(
        operation["security"][0]["operator_token"],
        serde_json::json!([])
    );
    assert_eq!(operation["parameters"][0]["name"], "dry_run");
    for status in ["200", "401", "403", "422", "503"] {
        assert!(
            operation["responses"][status].is_object(),
            "no {status} in {operation}"
        );
    }
    for schema in ["PruneReport", "RuleReport"] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
}

#[tokio::test]
async fn the_churning_shared_tables_are_vacuumed_sooner_than_postgres_defaults() {
    let app = unscheduled().await;
    for (table, setting) in [
        ("outbox_pending", "autovacuum_vacuum_threshold=1000"),
        ("outbox", "autovacuum_vacuum_scale_factor=0.05"),
        ("inbox", "autovacuum_vacuum_insert_scale_factor=0.02"),
    ] {
        let n = number(
            &app.database_url,
            &format!(
                "SELECT count(*) AS n FROM pg_class \
                 WHERE relname = '{table}' AND '{setting}' = ANY(reloptions)"
            ),
        )
        .await;
        assert_eq!(n, 1, "{table} has {setting}");
    }
}

#[tokio::test]
async fn a_run_takes_at_most_its_batches_and_the_next_run_goes_on_from_there() {
    let app = spawn_app_with(|settings| {
        settings.retention.enabled = false;
        settings.retention.batch_size = 25;
        settings.retention.max_batches_per_run = 2;
    })
    .await;
    execute(
        &app.database_url,
        &format!(
            "INSERT INTO inbox (consumer, message_id, message_type, received_at) \
             SELECT 'payment', id, 'old', now() - interval '8 days' \
             FROM unnest(ARRAY['{}']::uuid[]) AS id; \
             INSERT INTO outbox (message_id, exchange, routing_key, message_type, saga_id, body, \
               created_at) SELECT gen_random_uuid(), 'x', 'k', 'old', gen_random_uuid(), '{{}}', \
               now() - interval '1 hour' FROM generate_series(1, 60); \
             DELETE FROM outbox_pending;",
            (0..60)
                .map(|_| uuid_v7_ago(8 * DAY).to_string())
                .collect::<Vec<_>>()
                .join("','")
        ),
    )
    .await;

    let first = app.prune(false).await;
    for name in ["inbox", "outbox"] {
        assert_eq!(rule(&first, name)["removed"][name], 50, "{first}");
        assert_eq!(rule(&first, name)["batches"], 2, "{first}");
    }
    let second = app.prune(false).await;
    for name in ["inbox", "outbox"] {
        assert_eq!(rule(&second, name)["removed"][name], 10, "{second}");
        assert_eq!(rule(&second, name)["batches"], 1, "{second}");
    }
}
