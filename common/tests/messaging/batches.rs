use saga_common::configuration::AmqpSettings;
use saga_common::messaging::{Envelope, topology};
use saga_common::testing::{PATIENCE, eventually};

use crate::helpers::{Harness, OK, PERMANENT, QUEUE, SLOW, retry, start_with, start_with_backlog};

/// One consuming channel: the messages behind the slow first one all wait for it, and arrive
/// in the meantime, so the next batch is all of them.
fn one_channel() -> AmqpSettings {
    AmqpSettings {
        concurrency: 1,
        ..AmqpSettings::default()
    }
}

async fn all_committed<'a>(harness: &Harness, messages: impl IntoIterator<Item = &'a Envelope>) {
    let messages: Vec<&Envelope> = messages.into_iter().collect();
    eventually("every message to be committed", PATIENCE, || async {
        for message in &messages {
            if harness.committed(message.message_id).await == 0 {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test]
async fn deliveries_that_pile_up_are_applied_as_one_batch_and_all_acknowledged() {
    let backlog: Vec<&str> = std::iter::once(SLOW).chain([OK; 20]).collect();
    let (mut harness, sent) = start_with_backlog(retry(3, 100), one_channel(), &backlog).await;

    all_committed(&harness, &sent).await;

    let largest = harness.all_calls().iter().map(|c| c.batch).max().unwrap();
    assert!(
        largest > 1,
        "the messages behind the slow one came as one batch"
    );
    for message in &sent {
        assert_eq!(harness.committed(message.message_id).await, 1);
        assert_eq!(harness.calls(message.message_id).len(), 1, "no retries");
    }
    // Whatever the consumer had left unacknowledged would be back in the queue now.
    harness.stop().await;
    assert_eq!(
        harness.vhost.message_count(QUEUE).await,
        0,
        "all acknowledged"
    );
}

#[tokio::test]
async fn batches_acknowledged_back_to_back_keep_the_channel_and_none_comes_back() {
    // Messages that trickle in make many small batches, each acknowledged with a multiple-ack
    // the consumer does not wait for. Every one of those acks must reach the broker, in order
    // (one overtaken by a later one names a settled tag, and the broker closes the channel
    // over it): otherwise deliveries come back, handled twice, or stay in the queue. lapin
    // writes two acks sent back to back in order nearly always, so this cannot force the
    // overtaking the chain rules out; it checks that chained acks all arrive and keep the
    // channel open.
    // No linger: it would merge bursts, and this wants as many small batches as it can get.
    let mut harness = start_with(retry(3, 100), lingering(0)).await;
    let sent = harness.trickle(OK, 100, 5).await;

    all_committed(&harness, &sent).await;
    harness.stop().await;
    // Each call of a batch of n is a 1/n-th of that batch.
    let multiple_acks: f64 = harness
        .all_calls()
        .iter()
        .filter(|c| c.batch > 1)
        .map(|c| 1.0 / c.batch as f64)
        .sum();
    assert!(
        multiple_acks >= 10.0,
        "the stream came in many batches, each with its multiple-ack: {multiple_acks:.1}"
    );
    for message in &sent {
        assert_eq!(
            harness.calls(message.message_id).len(),
            1,
            "no delivery came back after its commit"
        );
    }
    assert_eq!(
        harness.vhost.message_count(QUEUE).await,
        0,
        "all acknowledged"
    );
}

#[tokio::test]
async fn a_poison_message_in_a_batch_is_dead_lettered_alone_and_its_neighbours_commit() {
    let backlog: Vec<&str> = std::iter::once(SLOW)
        .chain([OK; 5])
        .chain([PERMANENT])
        .chain([OK; 5])
        .collect();
    let (mut harness, sent) = start_with_backlog(retry(3, 100), one_channel(), &backlog).await;
    let poison = &sent[6];
    let good: Vec<&Envelope> = sent
        .iter()
        .filter(|m| m.message_type != PERMANENT)
        .collect();

    harness.dead_letters(1).await;
    all_committed(&harness, good.iter().copied()).await;

    let poisoned_batch = harness
        .calls(poison.message_id)
        .iter()
        .map(|c| c.batch)
        .max()
        .unwrap();
    assert!(poisoned_batch > 1, "the poison message arrived in a batch");
    for message in &good {
        assert_eq!(
            harness.committed(message.message_id).await,
            1,
            "the rolled-back batch left nothing behind; the retry alone committed"
        );
    }
    assert_eq!(harness.committed(poison.message_id).await, 0);
    harness.stop().await;
    assert_eq!(harness.vhost.message_count(QUEUE).await, 0, "all settled");
    assert_eq!(
        harness
            .vhost
            .message_count(&topology::dead_letter_queue(QUEUE))
            .await,
        1
    );
}

/// One consuming channel whose busy batches wait `linger_ms` to fill.
fn lingering(linger_ms: u64) -> AmqpSettings {
    AmqpSettings {
        batch_linger_ms: linger_ms,
        ..one_channel()
    }
}

#[tokio::test]
async fn a_busy_channel_waits_its_linger_and_applies_a_trickle_as_one_batch() {
    // The backlog behind the slow message makes a batch of many: the channel is busy. (Should
    // the first batch take all but one of it, the last batch is of one: bursts of four, each
    // sent at once, make the channel busy again.)
    let backlog: Vec<&str> = std::iter::once(SLOW).chain([OK; 20]).collect();
    let (mut harness, backlog) =
        start_with_backlog(retry(3, 100), lingering(5_000), &backlog).await;
    all_committed(&harness, &backlog).await;
    for _ in 0..5 {
        if harness.all_calls().last().is_some_and(|c| c.batch > 1) {
            break;
        }
        let burst = harness.trickle(OK, 1, 4).await;
        all_committed(&harness, &burst).await;
    }
    let last = harness.all_calls().last().map(|c| c.batch);
    assert!(
        last > Some(1),
        "the channel is busy before the trickle: {last:?}"
    );

    // Three messages a tenth of a second apart: without the linger each would be a batch of
    // its own, the consumer being idle when it arrives.
    let mut trickle = Vec::new();
    for _ in 0..3 {
        trickle.push(harness.send(OK).await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    all_committed(&harness, &trickle).await;

    for message in &trickle {
        let calls = harness.calls(message.message_id);
        assert_eq!(calls.len(), 1, "applied once");
        assert_eq!(
            calls[0].batch, 3,
            "the trickle waited for itself: {calls:?}"
        );
    }
    harness.stop().await;
    assert_eq!(
        harness.vhost.message_count(QUEUE).await,
        0,
        "all acknowledged"
    );
}

#[tokio::test]
async fn a_quiet_channel_applies_each_delivery_at_once_whatever_its_linger() {
    // A linger far longer than the test's patience: a quiet channel that waited for it would
    // never commit in time.
    let mut harness = start_with(retry(3, 100), lingering(600_000)).await;
    for _ in 0..3 {
        let message = harness.send(OK).await;
        all_committed(&harness, [&message]).await;
        assert_eq!(harness.calls(message.message_id)[0].batch, 1);
    }
    harness.stop().await;
}
