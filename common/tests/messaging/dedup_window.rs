//! The deduplication window: a copy older than `retention.inbox_window` is refused, by the
//! consumer (dead-lettered `outside_dedup_window`, never applied) and by a dead-letter replay
//! (left in the DLQ, reported `refused`). Envelopes are backdated instead of waiting for them
//! to age.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use lapin::BasicProperties;

use saga_common::configuration::AmqpSettings;
use saga_common::messaging::dead_letters::{DeadLetterQueue, Selection};
use saga_common::messaging::inbox::DedupWindow;
use saga_common::messaging::topology;
use saga_common::testing::{PATIENCE, eventually, peeked_header, publish_raw};

use crate::helpers::{FLAKY, Harness, OK, QUEUE, SERVICE, message, retry, start_windowed};

fn minutes(minutes: u64) -> DedupWindow {
    DedupWindow::new(Duration::from_secs(minutes * 60))
}

async fn start(window: DedupWindow) -> Harness {
    start_windowed(retry(2, 50), AmqpSettings::default(), window).await
}

async fn until_committed(harness: &Harness, message_id: uuid::Uuid) {
    eventually("the message to be applied", PATIENCE, || async {
        (harness.committed(message_id).await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_message_older_than_the_window_is_dead_lettered_and_never_applied() {
    let harness = start(minutes(10)).await;
    let mut old = message(OK);
    old.occurred_at = Utc::now() - TimeDelta::hours(1);

    harness.send_envelope(&old).await;
    // Sent after it on the same queue: once this one is applied, the old one was dealt with.
    let fresh = harness.send(OK).await;
    until_committed(&harness, fresh.message_id).await;

    let dead = harness.dead_letters(1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        peeked_header(&dead[0], "x-dead-letter-reason"),
        Some("outside_dedup_window")
    );
    let error = peeked_header(&dead[0], "x-error").unwrap();
    assert!(error.starts_with("occurred 1h"), "{error}");
    assert!(
        error.contains("more than the deduplication window of 10m"),
        "{error}"
    );
    assert!(harness.calls(old.message_id).is_empty(), "never handled");
    assert_eq!(harness.committed(old.message_id).await, 0);
}

#[tokio::test]
async fn messages_inside_the_window_or_from_the_future_are_applied_and_a_duplicate_absorbed() {
    let harness = start(minutes(10)).await;
    let mut recent = message(OK);
    recent.occurred_at = Utc::now() - TimeDelta::minutes(5);
    // A producer whose clock is ahead.
    let mut ahead = message(OK);
    ahead.occurred_at = Utc::now() + TimeDelta::hours(1);

    harness.send_envelope(&recent).await;
    harness.send_envelope(&ahead).await;
    harness.send_envelope(&recent).await;
    eventually("every copy to be handled", PATIENCE, || async {
        (harness.calls(recent.message_id).len() == 2 && harness.calls(ahead.message_id).len() == 1)
            .then_some(())
    })
    .await;

    assert_eq!(
        harness.committed(recent.message_id).await,
        1,
        "the copy was absorbed"
    );
    assert_eq!(harness.committed(ahead.message_id).await, 1);
    let dlq = topology::dead_letter_queue(QUEUE);
    assert_eq!(harness.vhost.message_count(&dlq).await, 0);
}

#[tokio::test]
async fn a_replay_leaves_a_dead_letter_older_than_the_window_and_replays_a_young_one_once() {
    // The consumer's window is an hour, the replay's ten minutes: as if, for a message half an
    // hour old, the window had passed between its failure and its replay.
    let harness = start(minutes(60)).await;
    let young = message(FLAKY);
    let mut aged = message(FLAKY);
    aged.occurred_at = Utc::now() - TimeDelta::minutes(30);
    harness.send_envelope(&young).await;
    harness.send_envelope(&aged).await;
    // Not an envelope: it has no age, and is replayed as ever.
    publish_raw(
        &harness.vhost.amqp_url,
        topology::COMMANDS_EXCHANGE,
        "payment.charge",
        b"not json",
        BasicProperties::default().with_message_id("raw".into()),
    )
    .await;
    harness.dead_letters(3).await;
    let admin = DeadLetterQueue::new(SERVICE, &harness.vhost.amqp_url, QUEUE, minutes(10));

    let report = admin.replay(&Selection::All).await.unwrap();

    assert_eq!(report.replayed, 2, "{report:?}");
    assert!(report.failed.is_empty() && report.not_found.is_empty());
    assert_eq!(report.refused.len(), 1, "{report:?}");
    let refused = &report.refused[0];
    assert_eq!(refused.message_id, aged.message_id.to_string());
    assert_eq!(refused.reason, "outside_dedup_window");
    assert!(
        refused.detail.starts_with("occurred 30m"),
        "{}",
        refused.detail
    );
    assert!(
        refused.detail.contains("window of 10m"),
        "{}",
        refused.detail
    );

    // The young one is applied, once; the raw one fails again and is back beside the aged one.
    until_committed(&harness, young.message_id).await;
    let dlq = topology::dead_letter_queue(QUEUE);
    eventually(
        "the raw message to be dead-lettered again",
        PATIENCE,
        || async { (harness.vhost.message_count(&dlq).await == 2).then_some(()) },
    )
    .await;
    let left = admin.list(0, 10).await.unwrap();
    let reasons: Vec<_> = left
        .items
        .iter()
        .map(|d| (d.message_id.clone(), d.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                Some(aged.message_id.to_string()),
                Some("retries_exhausted".into())
            ),
            (Some("raw".into()), Some("malformed_message".into())),
        ],
        "the aged one stayed, as it was"
    );
    assert_eq!(harness.calls(young.message_id).len(), 3);
    assert_eq!(harness.calls(aged.message_id).len(), 2, "not handled again");
    assert_eq!(harness.committed(aged.message_id).await, 0);

    // Asked for by id, it is refused again, not reported missing.
    let by_id = admin
        .replay(&Selection::Ids([aged.message_id.to_string()].into()))
        .await
        .unwrap();
    assert_eq!((by_id.replayed, by_id.not_found.len()), (0, 0));
    assert_eq!(by_id.refused.len(), 1);
    assert_eq!(harness.vhost.message_count(&dlq).await, 2);
}
