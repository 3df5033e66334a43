//! `GET /metrics`: open, in the Prometheus text format, every generic series there before any
//! traffic, and each fact counted where it happens. The services of this test process share
//! one recorder, so these tests assert what rose ("at least"), never exact counts (those are
//! the separate-process fleet test's, in deploy/faults).

use lapin::BasicProperties;
use uuid::Uuid;

use saga_common::messaging::topology;
use saga_common::metrics::names;
use saga_common::testing::{PATIENCE, Scrape, eventually, publish_raw, scrape};

use crate::helpers::{charge, spawn_app};

const QUEUE: &str = topology::PAYMENT_COMMANDS;

fn consumed(scrape: &Scrape, message_type: &str, outcome: &str) -> f64 {
    scrape.value(
        names::CONSUMED,
        &[
            ("queue", QUEUE),
            ("type", message_type),
            ("outcome", outcome),
        ],
    )
}

/// Scrapes until `rose` holds against `before`.
async fn after(address: &str, what: &str, rose: impl Fn(&Scrape) -> bool) -> Scrape {
    eventually(what, PATIENCE, || async {
        let now = scrape(address).await;
        rose(&now).then_some(now)
    })
    .await
}

#[tokio::test]
async fn every_generic_metric_is_there_from_the_first_scrape_without_credentials() {
    let app = spawn_app().await;

    let first = scrape(&app.address).await;

    for name in names::GENERIC {
        assert!(first.has(name), "{name} missing from the first scrape");
    }
    assert_eq!(first.kind(names::HTTP_DURATION), Some("histogram"));
    assert_eq!(first.kind(names::BATCH_SIZE), Some("histogram"));
    assert_eq!(first.kind(names::CONSUMED), Some("counter"));
    assert_eq!(first.kind(names::PROCESS_CPU), Some("counter"));
    for outcome in ["acked", "duplicate", "retried", "dead_lettered"] {
        let labels = [
            ("queue", QUEUE),
            ("type", "payment.charge"),
            ("outcome", outcome),
        ];
        let series = first.matching(names::CONSUMED, &labels).count();
        assert_eq!(series, 1, "{outcome} registered");
    }
    let published = first.label_values(names::PUBLISHED, "type");
    for reply in [
        "payment.charged",
        "payment.declined",
        "payment.refunded",
        "account.updated",
    ] {
        assert!(
            published.iter().any(|t| t == reply),
            "{reply}: {published:?}"
        );
    }
    assert!(first.value(names::PROCESS_MEMORY, &[]) > 0.0);
    assert_eq!(
        first.label_values(names::POOL_CONNECTIONS, "state"),
        ["idle", "in_use"]
    );
}

#[tokio::test]
async fn a_command_is_counted_acked_its_second_copy_duplicate_and_each_reply_published() {
    let app = spawn_app().await;
    app.fund("m-1", 1_000).await;
    let mut replies = app.replies().await;
    let command = charge(Uuid::now_v7(), "m-1", 100);
    let before = scrape(&app.address).await;

    app.send_command(&command).await;
    replies.next().await;
    app.send_command(&command).await;
    replies.next().await;

    let charged = [
        ("exchange", topology::REPLIES_EXCHANGE),
        ("type", "payment.charged"),
    ];
    after(&app.address, "the charge and its copy counted", |now| {
        consumed(now, "payment.charge", "acked") > consumed(&before, "payment.charge", "acked")
            && consumed(now, "payment.charge", "duplicate")
                > consumed(&before, "payment.charge", "duplicate")
            // The copy is answered again: two replies confirmed.
            && now.value(names::PUBLISHED, &charged)
                >= before.value(names::PUBLISHED, &charged) + 2.0
            && now.value("messaging_batch_size_count", &[("queue", QUEUE)])
                >= before.value("messaging_batch_size_count", &[("queue", QUEUE)]) + 2.0
            && now.value(
                "messaging_process_duration_seconds_count",
                &[("queue", QUEUE), ("type", "payment.charge")],
            ) >= before.value(
                "messaging_process_duration_seconds_count",
                &[("queue", QUEUE), ("type", "payment.charge")],
            ) + 2.0
    })
    .await;
}

#[tokio::test]
async fn a_request_is_counted_under_its_route_template_never_its_raw_path() {
    let app = spawn_app().await;
    let customer = format!("metrics-{}", Uuid::now_v7());
    let route = [
        ("method", "GET"),
        ("route", "/api/accounts/{customer_id}"),
        ("status", "404"),
    ];
    let unmatched = [("route", "unmatched"), ("status", "404")];
    let before = scrape(&app.address).await;

    let response = app.get_account(&customer).await;
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    let nowhere = app
        .client
        .get(format!("{}/nowhere/{customer}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), reqwest::StatusCode::NOT_FOUND);

    let now = scrape(&app.address).await;
    let count = "http_server_request_duration_seconds_count";
    assert!(now.value(count, &route) >= before.value(count, &route) + 1.0);
    assert!(now.value(count, &unmatched) >= before.value(count, &unmatched) + 1.0);
    for seen in now.label_values(count, "route") {
        assert!(
            !seen.contains(&customer),
            "a raw path became a label: {seen}"
        );
    }
}

#[tokio::test]
async fn a_message_that_is_not_an_envelope_is_counted_dead_lettered_with_its_reason() {
    let app = spawn_app().await;
    let reason = [("queue", QUEUE), ("reason", "malformed_message")];
    let before = scrape(&app.address).await;

    publish_raw(
        &app.vhost.amqp_url,
        topology::COMMANDS_EXCHANGE,
        "payment.charge",
        b"not json",
        BasicProperties::default(),
    )
    .await;
    app.dead_letters(1).await;

    after(&app.address, "the dead letter counted", |now| {
        now.value(names::DEAD_LETTERED, &reason) > before.value(names::DEAD_LETTERED, &reason)
            && consumed(now, names::UNKNOWN_TYPE, "dead_lettered")
                > consumed(&before, names::UNKNOWN_TYPE, "dead_lettered")
    })
    .await;
}
