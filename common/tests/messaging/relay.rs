use serde_json::json;
use uuid::Uuid;

use saga_common::configuration::OutboxSettings;
use saga_common::db::stmt;
use saga_common::messaging::outbox;
use saga_common::messaging::{Envelope, OutgoingMessage, topology};
use saga_common::testing::{PATIENCE, eventually};
use sea_orm::ConnectionTrait;

use crate::helpers::{Harness, start_relaying};

/// A message for a queue nobody consumes in these tests, so it stays there to be counted.
fn reserve() -> OutgoingMessage {
    OutgoingMessage::command(
        Envelope::new(
            saga_common::contracts::command::RESERVE_STOCK,
            Uuid::now_v7(),
            "relay-test",
            None,
            &json!({}),
        )
        .unwrap(),
    )
}

async fn published(harness: &Harness, message: &OutgoingMessage) -> bool {
    let row = harness
        .db
        .query_one_raw(stmt(
            "SELECT published_at IS NOT NULL AS published FROM outbox WHERE message_id = $1",
            [message.envelope.message_id.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "published").unwrap()
}

async fn until_published(harness: &Harness, message: &OutgoingMessage) {
    eventually("the message to be published", PATIENCE, || async {
        published(harness, message).await.then_some(())
    })
    .await;
}

/// No poll within the test: whatever is published after the start-up scan was handed over. The
/// scan takes rows of any age.
fn no_polling() -> OutboxSettings {
    OutboxSettings {
        poll_interval_ms: 3_600_000,
        orphan_age_ms: 3_600_000,
        ..OutboxSettings::default()
    }
}

#[tokio::test]
async fn rows_handed_over_after_commit_are_published_at_once_and_others_wait_for_a_scan() {
    let left_behind = reserve();
    let harness = start_relaying(no_polling(), std::slice::from_ref(&left_behind)).await;
    // The start-up scan publishes what an earlier instance left.
    until_published(&harness, &left_behind).await;

    let unannounced = reserve();
    outbox::enqueue_all(&harness.db, std::slice::from_ref(&unannounced))
        .await
        .unwrap();
    let announced = reserve();
    let enqueued = outbox::enqueue_all(&harness.db, std::slice::from_ref(&announced))
        .await
        .unwrap();
    assert_eq!(enqueued.0.len(), 1);
    harness.wakeup.committed(enqueued);

    until_published(&harness, &announced).await;
    assert!(
        !published(&harness, &unannounced).await,
        "only the row handed over was read: no scan ran"
    );
    // A writer that cannot name its rows asks for a scan instead.
    harness.wakeup.notify();
    until_published(&harness, &unannounced).await;
    assert_eq!(
        harness
            .vhost
            .message_count(topology::INVENTORY_COMMANDS)
            .await,
        3
    );
}

#[tokio::test]
async fn rows_nobody_hands_over_are_found_by_the_poll_once_they_are_orphans() {
    let polling = OutboxSettings {
        poll_interval_ms: 100,
        orphan_age_ms: 1_500,
        ..OutboxSettings::default()
    };
    // The start-up scan takes rows of any age: wait until it has run (it publishes this one)
    // before writing the row only the periodic scan may take.
    let before = reserve();
    let harness = start_relaying(polling, std::slice::from_ref(&before)).await;
    until_published(&harness, &before).await;

    let orphan = reserve();
    outbox::enqueue_all(&harness.db, std::slice::from_ref(&orphan))
        .await
        .unwrap();

    until_published(&harness, &orphan).await;
    // The poll ran fifteen times before, and left the row to its writer while it was young.
    let row = harness
        .db
        .query_one_raw(stmt(
            "SELECT extract(epoch FROM published_at - created_at)::float8 AS waited \
             FROM outbox WHERE message_id = $1",
            [orphan.envelope.message_id.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let waited: f64 = row.try_get("", "waited").unwrap();
    assert!(waited >= 1.5, "published after {waited} s");
}
