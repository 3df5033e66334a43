use std::sync::atomic::{AtomicI64, Ordering};

use lapin::options::{BasicGetOptions, BasicNackOptions};

use saga_common::messaging::dead_letters::{DeadLetterQueue, Selection};
use saga_common::messaging::inbox::DedupWindow;
use saga_common::messaging::{Envelope, OutgoingMessage, topology};
use saga_common::testing::{
    PATIENCE, TestVhost, eventually, init_test_telemetry, peeked_header, peeked_header_value,
    publish_envelope,
};

const QUEUE: &str = topology::PAYMENT_COMMANDS;

/// A consumer that takes the message and dies without settling it looks to the broker like a
/// `nack` with requeue: each counts as a delivery.
#[tokio::test]
async fn a_message_redelivered_past_the_delivery_limit_is_dead_lettered_by_the_broker() {
    init_test_telemetry();
    let vhost = TestVhost::create().await;
    let poison = Envelope::untyped(
        "payment.charge",
        uuid::Uuid::now_v7(),
        "poison",
        None,
        &serde_json::json!({}),
    )
    .unwrap();
    // No service runs: publishing declares the topology, and nobody consumes.
    publish_envelope(&vhost.amqp_url, &OutgoingMessage::command(poison.clone())).await;
    let connection = lapin::Connection::connect(&vhost.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let dlq = topology::dead_letter_queue(QUEUE);

    let deliveries = AtomicI64::new(0);
    eventually(
        "the broker to dead-letter the message",
        PATIENCE,
        || async {
            if vhost.message_count(&dlq).await == 1 {
                return Some(());
            }
            let taken = channel
                .basic_get(QUEUE.into(), BasicGetOptions { no_ack: false })
                .await
                .unwrap();
            if let Some(message) = taken {
                deliveries.fetch_add(1, Ordering::Relaxed);
                message
                    .delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
                    .unwrap();
            }
            None
        },
    )
    .await;

    // The first delivery and DELIVERY_LIMIT redeliveries; the next return dead-letters it.
    assert_eq!(
        deliveries.load(Ordering::Relaxed),
        topology::DELIVERY_LIMIT + 1
    );
    assert_eq!(vhost.message_count(QUEUE).await, 0);
    let dead = vhost.peek(&dlq, 1).await.remove(0);
    assert_eq!(
        peeked_header(&dead, "x-first-death-reason"),
        Some("delivery_limit")
    );
    assert_eq!(peeked_header(&dead, "x-first-death-queue"), Some(QUEUE));
    assert!(peeked_header_value(&dead, "x-death").is_some());

    // The admin view names the broker's reason; a replay returns it to the work queue as new.
    let admin = DeadLetterQueue::new("test", &vhost.amqp_url, QUEUE, DedupWindow::default());
    let page = admin.list(0, 10).await.unwrap();
    assert_eq!(page.total, 1);
    let listed = &page.items[0];
    assert_eq!(listed.reason.as_deref(), Some("delivery_limit"));
    assert_eq!(listed.message_id, Some(poison.message_id.to_string()));
    assert_eq!(listed.payload["message_id"], poison.message_id.to_string());
    assert_eq!(listed.payload_format, "json");

    let report = admin.replay(&Selection::All).await.unwrap();
    assert_eq!(report.replayed, 1);
    assert_eq!(vhost.message_count(&dlq).await, 0);
    let back = channel
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the replayed message is back in the work queue");
    let headers = back
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    assert!(!headers.contains_key("x-death"), "a replay starts over");
    // The quorum queue counts afresh: 0 earlier deliveries (it sets the header on every one).
    assert_eq!(
        saga_common::messaging::headers::integer(&headers, "x-delivery-count").unwrap_or(0),
        0
    );
    assert!(
        headers.contains_key("x-correlation-id"),
        "its own headers stay"
    );
    let replayed: Envelope = serde_json::from_slice(&back.delivery.data).unwrap();
    assert_eq!(replayed, poison);
    vhost.delete().await;
}
