use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use uuid::Uuid;

use saga_common::configuration::OutboxSettings;
use saga_common::contracts::{self, Payload};
use saga_common::db::stmt;
use saga_common::messaging::outbox;
use saga_common::messaging::outbox::Enqueued;
use saga_common::messaging::{Envelope, OutgoingMessage, topology};
use saga_common::testing::{PATIENCE, Tap, eventually};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};

use crate::helpers::{Harness, start_relaying};

/// A message for a queue nobody consumes in these tests, so it stays there to be counted.
fn reserve() -> OutgoingMessage {
    OutgoingMessage::command(
        Envelope::untyped(
            contracts::ReserveStock::TYPE,
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
            "SELECT NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.id = o.id) AS published \
             FROM outbox o WHERE message_id = $1",
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

/// Writes `message` to the outbox and hands its row to the relay, as a committing writer does.
async fn commit(harness: &Harness, message: &OutgoingMessage) {
    let enqueued = write(&harness.db, message).await;
    harness.wakeup.commit(enqueued.0, enqueued.1).await.unwrap();
}

/// `message` written to the outbox on a transaction of its own, not yet committed.
async fn write(
    db: &DatabaseConnection,
    message: &OutgoingMessage,
) -> (DatabaseTransaction, Enqueued) {
    let txn = db.begin().await.unwrap();
    let enqueued = outbox::enqueue_all(&txn, std::slice::from_ref(message))
        .await
        .unwrap();
    (txn, enqueued)
}

/// `message` written to the outbox and committed, without a word to the relay: a row only a
/// scan finds.
async fn write_unannounced(harness: &Harness, message: &OutgoingMessage) {
    let (txn, _unannounced) = write(&harness.db, message).await;
    txn.commit().await.unwrap();
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

/// The relay, once its start-up scan is over (it published the row an earlier instance left):
/// from then on it publishes only what it is handed.
async fn relaying_after_its_first_scan() -> Harness {
    let left_behind = reserve();
    let harness = start_relaying(no_polling(), std::slice::from_ref(&left_behind)).await;
    until_published(&harness, &left_behind).await;
    harness
}

#[tokio::test]
async fn rows_handed_over_after_commit_are_published_at_once_and_others_wait_for_a_scan() {
    // The start-up scan publishes what an earlier instance left (one message).
    let harness = relaying_after_its_first_scan().await;

    let unannounced = reserve();
    write_unannounced(&harness, &unannounced).await;
    let announced = reserve();
    let (txn, enqueued) = write(&harness.db, &announced).await;
    assert_eq!(enqueued.len(), 1);
    harness.wakeup.commit(txn, enqueued).await.unwrap();

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
    write_unannounced(&harness, &orphan).await;

    // Watched from its commit on: while the row is younger than the orphan age, the poll (every
    // 100 ms) leaves it to its writer; once older, the poll takes it.
    let young_and_pending = std::cell::Cell::new(0);
    eventually("the orphan to be published", PATIENCE, || async {
        let row = harness
            .db
            .query_one_raw(stmt(
                "SELECT NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.id = o.id) AS published, \
                 extract(epoch FROM clock_timestamp() - created_at)::float8 AS age \
                 FROM outbox o WHERE message_id = $1",
                [orphan.envelope.message_id.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        let published: bool = row.try_get("", "published").unwrap();
        let age: f64 = row.try_get("", "age").unwrap();
        assert!(
            age >= 1.5 || !published,
            "published while {age} s old, younger than the orphan age"
        );
        if !published && age < 1.0 {
            young_and_pending.set(young_and_pending.get() + 1);
        }
        published.then_some(())
    })
    .await;
    assert!(
        young_and_pending.get() > 0,
        "the row was seen unpublished while young, with the poll running"
    );
}

async fn synchronous_commit(db: &impl ConnectionTrait) -> String {
    let row = db
        .query_one_raw(stmt(
            "SELECT current_setting('synchronous_commit') AS s",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "s").unwrap()
}

/// A mark does not wait for the WAL flush (a lost one is a message sent again, which inboxes
/// absorb), and only a mark: the setting is its own transaction's, taken only when there is a
/// row to mark, and the connection's own stays as it was.
#[tokio::test]
async fn a_mark_commits_without_waiting_for_the_flush_and_nothing_else_does() {
    let harness = start_relaying(no_polling(), &[]).await;
    // Written on the test's own transaction, never committed: no relay ever sees it.
    let txn = harness.db.begin().await.unwrap();
    let ids = outbox::enqueue_all(&txn, &[reserve()]).await.unwrap().ids();
    let nothing: Vec<i64> = Vec::new();
    let read = txn
        .query_all_raw(stmt(
            outbox::READ_IDS,
            [nothing.clone().into(), ids.clone().into()],
        ))
        .await
        .unwrap();
    assert_eq!(read.len(), 1, "the row is read");
    assert_eq!(synchronous_commit(&txn).await, "on", "nothing marked yet");

    txn.query_all_raw(stmt(outbox::READ_IDS, [ids.clone().into(), nothing.into()]))
        .await
        .unwrap();
    assert_eq!(
        synchronous_commit(&txn).await,
        "off",
        "a mark relaxes its commit"
    );
    let pending = txn
        .query_one_raw(stmt(
            "SELECT count(*) AS n FROM outbox_pending WHERE id = ANY($1)",
            [ids.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pending.try_get::<i64>("", "n").unwrap(),
        0,
        "the mark deleted the pending row"
    );
    txn.rollback().await.unwrap();

    let after = harness.db.begin().await.unwrap();
    assert_eq!(
        synchronous_commit(&after).await,
        "on",
        "the connection's own setting"
    );
}

/// A reserve command written to the outbox, whose stored body then says `{"read_back": true}`
/// in place of its payload: what the relay publishes tells whether it read the row back.
async fn written_then_rewritten(
    harness: &Harness,
) -> (OutgoingMessage, DatabaseTransaction, Enqueued) {
    let message = reserve();
    let (txn, enqueued) = write(&harness.db, &message).await;
    let mut envelope = message.envelope.clone();
    envelope.payload = json!({"read_back": true});
    txn.execute_raw(stmt(
        "UPDATE outbox SET body = $2 WHERE message_id = $1",
        [
            message.envelope.message_id.into(),
            serde_json::to_string(&envelope).unwrap().into(),
        ],
    ))
    .await
    .unwrap();
    (message, txn, enqueued)
}

/// A tap on the reserve-stock commands of `harness`'s vhost.
async fn reserve_tap(harness: &Harness) -> Tap {
    Tap::bind(
        &harness.vhost.amqp_url,
        topology::COMMANDS_EXCHANGE,
        &[contracts::ReserveStock::TYPE],
    )
    .await
}

/// A row handed over with its content is published as written, with no read of the table; one
/// known by its id alone (a resend) is read back by key. Both are marked.
#[tokio::test]
async fn rows_handed_over_with_their_content_are_published_without_reading_them_back() {
    // The start-up scan, over, cannot read the rows below.
    let harness = relaying_after_its_first_scan().await;
    let mut tap = reserve_tap(&harness).await;

    let (carried, txn, enqueued) = written_then_rewritten(&harness).await;
    harness.wakeup.commit(txn, enqueued).await.unwrap();
    let sent = tap.next().await;
    assert_eq!(sent.message_id, carried.envelope.message_id);
    assert_eq!(sent.payload, json!({}), "published as handed over");
    until_published(&harness, &carried).await;

    let (by_id, txn, enqueued) = written_then_rewritten(&harness).await;
    harness
        .wakeup
        .commit(txn, enqueued.without_content())
        .await
        .unwrap();
    let sent = tap.next().await;
    assert_eq!(sent.message_id, by_id.envelope.message_id);
    assert_eq!(sent.payload, json!({"read_back": true}), "read by key");
    until_published(&harness, &by_id).await;
}

/// Rows handed over in a steady stream are published as written, with no read between them,
/// and marked within `outbox.mark_delay_ms`, even though the relay is woken again before it
/// ever waits that long (it has no read to carry the marks along).
#[tokio::test]
async fn rows_published_from_a_steady_stream_are_marked_while_it_lasts() {
    let harness = relaying_after_its_first_scan().await;
    let mut tap = reserve_tap(&harness).await;
    let (first, txn, enqueued) = written_then_rewritten(&harness).await;
    harness.wakeup.commit(txn, enqueued).await.unwrap();

    let streaming = Arc::new(AtomicBool::new(true));
    let stream = {
        let (db, wakeup, streaming) = (
            harness.db.clone(),
            harness.wakeup.clone(),
            streaming.clone(),
        );
        tokio::spawn(async move {
            // Bounded: at most PATIENCE of messages, every 2 ms.
            let until = tokio::time::Instant::now() + PATIENCE;
            while streaming.load(Ordering::Relaxed) && tokio::time::Instant::now() < until {
                let (txn, enqueued) = write(&db, &reserve()).await;
                wakeup.commit(txn, enqueued).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::Instant::now() < until
        })
    };
    until_published(&harness, &first).await;
    streaming.store(false, Ordering::Relaxed);
    assert!(
        stream.await.unwrap(),
        "the first row was marked while the stream still ran"
    );
    let sent = tap.next().await;
    assert_eq!(sent.message_id, first.envelope.message_id);
    assert_eq!(sent.payload, json!({}), "published as handed over");
}

/// Confirmed rows wait `outbox.mark_delay_ms` to be marked together: with an hour's delay, rows
/// handed over are published at once, one after another, and none is marked meanwhile.
#[tokio::test]
async fn confirmed_rows_wait_for_the_mark_delay() {
    let left_behind = reserve();
    let settings = OutboxSettings {
        mark_delay_ms: 3_600_000,
        ..no_polling()
    };
    let harness = start_relaying(settings, std::slice::from_ref(&left_behind)).await;
    // The start-up scan marks what it publishes on its own transaction, whatever the delay.
    until_published(&harness, &left_behind).await;
    let mut tap = reserve_tap(&harness).await;

    let first = reserve();
    commit(&harness, &first).await;
    assert_eq!(tap.next().await.message_id, first.envelope.message_id);
    // Longer than any delay a relay ignoring the setting could use (20 ms before it existed,
    // 100 ms by default), and then a second round of the relay: such a relay would have marked
    // the first row by now. The wait decides only whether that mistake is caught; with the
    // setting honoured nothing is marked however long it takes, so it cannot make the test fail.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = reserve();
    commit(&harness, &second).await;
    assert_eq!(tap.next().await.message_id, second.envelope.message_id);
    assert!(
        !published(&harness, &first).await && !published(&harness, &second).await,
        "sent, and left to be marked together once the delay has passed"
    );
}

/// A batch the broker refuses (nacks) is never marked, whichever batches were in flight beside
/// it: the session ends, and the next one publishes the row again until the broker takes it.
#[tokio::test]
async fn a_refused_message_stays_unpublished_until_the_broker_takes_it() {
    let harness = start_relaying(no_polling(), &[]).await;
    // A second queue for the same routing key that refuses every message: the broker routes
    // the message to both and nacks the publish.
    let connection = lapin::Connection::connect(
        &harness.vhost.amqp_url,
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut refusing = FieldTable::default();
    refusing.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    refusing.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare("refuses".into(), QueueDeclareOptions::default(), refusing)
        .await
        .unwrap();
    channel
        .queue_bind(
            "refuses".into(),
            topology::COMMANDS_EXCHANGE.into(),
            contracts::ReserveStock::TYPE.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let refused = reserve();
    commit(&harness, &refused).await;
    // Sent, refused, and sent again by the next session (the work queue takes every copy).
    eventually("the message to be sent twice", PATIENCE, || async {
        (harness
            .vhost
            .message_count(topology::INVENTORY_COMMANDS)
            .await
            >= 2)
            .then_some(())
    })
    .await;
    assert!(
        !published(&harness, &refused).await,
        "a refused batch is not marked"
    );

    channel
        .queue_delete("refuses".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    until_published(&harness, &refused).await;
    let _ = connection.close(200, "done".into()).await;
}
