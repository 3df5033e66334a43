use std::time::Duration;

use chrono::DateTime;
use serde_json::Value;

use saga_common::messaging::topology;
use saga_common::testing::{
    PATIENCE, eventually, peeked_header, peeked_header_value, set_database_reachable,
};

use crate::helpers::{
    ALWAYS_TRANSIENT, FLAKY, NEEDS_DATABASE, PERMANENT, QUEUE, SERVICE, retry, start,
};

fn timestamp(message: &Value, header: &str) -> DateTime<chrono::FixedOffset> {
    let text = peeked_header(message, header).unwrap_or_else(|| panic!("no {header}"));
    DateTime::parse_from_rfc3339(text).unwrap()
}

#[tokio::test]
async fn a_transient_failure_is_retried_through_the_delay_queues_and_then_succeeds() {
    let harness = start(retry(5, 100)).await;

    let message = harness.send(FLAKY).await;

    let calls = eventually("a third, successful attempt", PATIENCE, || async {
        let calls = harness.calls(message.message_id);
        calls.last().is_some_and(|c| c.succeeded).then_some(calls)
    })
    .await;
    assert_eq!(calls.len(), 3, "two failures, then success");
    // Each retry waited out its delay queue: 100 ms, then 200 ms (less a little for the broker's
    // millisecond clock).
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(90));
    assert!(calls[2].at - calls[1].at >= Duration::from_millis(180));
    eventually("the work queue to be empty", PATIENCE, || async {
        (harness.vhost.message_count(QUEUE).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        harness
            .vhost
            .message_count(&topology::dead_letter_queue(QUEUE))
            .await,
        0
    );
}

#[tokio::test]
async fn the_delay_queues_are_declared_per_delay_and_lead_back_to_the_work_queue() {
    let harness = start(retry(4, 100)).await;

    for (delay_ms, name) in [
        (100, "payment.commands.retry.100ms"),
        (200, "payment.commands.retry.200ms"),
        (400, "payment.commands.retry.400ms"),
    ] {
        let info = harness.vhost.queue_info(name).await;
        assert_eq!(info["durable"], true, "{name}");
        assert_eq!(info["arguments"]["x-message-ttl"], delay_ms, "{name}");
        assert_eq!(info["arguments"]["x-dead-letter-exchange"], "", "{name}");
        assert_eq!(
            info["arguments"]["x-dead-letter-routing-key"], QUEUE,
            "{name}"
        );
    }
    let work = harness.vhost.queue_info(QUEUE).await;
    assert_eq!(work["type"], "quorum");
    assert_eq!(
        work["arguments"]["x-delivery-limit"],
        topology::DELIVERY_LIMIT
    );
    assert_eq!(
        work["arguments"]["x-dead-letter-exchange"],
        topology::DEAD_LETTER_EXCHANGE
    );
}

#[tokio::test]
async fn a_message_failing_transiently_past_max_attempts_is_dead_lettered_with_its_history() {
    let harness = start(retry(3, 50)).await;

    let message = harness.send(ALWAYS_TRANSIENT).await;

    let dead = harness.dead_letters(1).await.remove(0);
    assert_eq!(
        harness.calls(message.message_id).len(),
        3,
        "exactly max_attempts"
    );
    assert_eq!(
        peeked_header(&dead, "x-dead-letter-reason"),
        Some("retries_exhausted")
    );
    assert_eq!(
        peeked_header_value(&dead, "x-attempts"),
        Some(&Value::from(3))
    );
    assert_eq!(peeked_header(&dead, "x-error"), Some("always transient"));
    assert_eq!(peeked_header(&dead, "x-service"), Some(SERVICE));
    assert_eq!(peeked_header(&dead, "x-original-queue"), Some(QUEUE));
    // The route it was first published on, not the delay queue's way back.
    assert_eq!(
        peeked_header(&dead, "x-original-exchange"),
        Some(topology::COMMANDS_EXCHANGE)
    );
    assert_eq!(
        peeked_header(&dead, "x-original-routing-key"),
        Some("payment.charge")
    );
    let first = timestamp(&dead, "x-first-failed-at");
    let last = timestamp(&dead, "x-last-failed-at");
    assert!(
        last - first >= chrono::Duration::milliseconds(140),
        "two waits (50 + 100 ms) lie between the first and the last failure"
    );
    assert!(
        peeked_header_value(&dead, "x-attempt").is_none(),
        "the in-flight counter is gone"
    );
    assert_eq!(harness.vhost.message_count(QUEUE).await, 0);
}

#[tokio::test]
async fn a_permanent_failure_skips_the_retries() {
    let harness = start(retry(5, 50)).await;

    let message = harness.send(PERMANENT).await;

    let dead = harness.dead_letters(1).await.remove(0);
    assert_eq!(harness.calls(message.message_id).len(), 1);
    assert_eq!(
        peeked_header(&dead, "x-dead-letter-reason"),
        Some("invalid_payload")
    );
    assert_eq!(
        peeked_header_value(&dead, "x-attempts"),
        Some(&Value::from(1))
    );
    assert_eq!(
        timestamp(&dead, "x-first-failed-at"),
        timestamp(&dead, "x-last-failed-at")
    );
}

#[tokio::test]
async fn a_delivery_is_held_without_counting_attempts_while_the_database_is_unreachable() {
    // Counted, two attempts would dead-letter it within about 50 ms.
    let harness = start(retry(2, 50)).await;
    set_database_reachable(&harness.database_url, false).await;

    let message = harness.send(NEEDS_DATABASE).await;
    // The consumer cannot even open its transaction, so the handler is not reached; the
    // delivery leaving the ready messages shows the consumer took it.
    eventually("the consumer to take the delivery", PATIENCE, || async {
        (harness.vhost.message_count(QUEUE).await == 0).then_some(())
    })
    .await;
    // An outage twenty times longer than all retries together: nothing is retried or lost.
    let dlq = topology::dead_letter_queue(QUEUE);
    let dead_lettered = tokio::time::timeout(Duration::from_secs(2), async {
        while harness.vhost.message_count(&dlq).await == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(dead_lettered.is_err(), "dead-lettered during the outage");
    assert_eq!(
        harness.vhost.message_count(QUEUE).await,
        0,
        "held by the consumer, not requeued"
    );

    set_database_reachable(&harness.database_url, true).await;

    let calls = eventually("the held delivery to succeed", PATIENCE, || async {
        let calls = harness.calls(message.message_id);
        calls.last().is_some_and(|c| c.succeeded).then_some(calls)
    })
    .await;
    assert_eq!(calls.len(), 1, "handled once, after the outage");
    assert_eq!(harness.vhost.message_count(&dlq).await, 0);
}
