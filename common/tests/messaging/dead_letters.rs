use std::collections::BTreeSet;

use lapin::BasicProperties;

use saga_common::messaging::dead_letters::{DeadLetterQueue, Selection};
use saga_common::messaging::inbox::DedupWindow;
use saga_common::messaging::topology;
use saga_common::testing::{PATIENCE, capture_lines_async, eventually, publish_raw};

use crate::helpers::{PERMANENT, QUEUE, SERVICE, retry, start};

#[tokio::test]
async fn dead_letters_are_paged_without_being_consumed_and_deleted_by_id() {
    let harness = start(retry(2, 50)).await;
    let mut sent = Vec::new();
    for _ in 0..3 {
        sent.push(harness.send(PERMANENT).await.message_id.to_string());
    }
    // Without a message id property and not JSON: only "all" can select it.
    publish_raw(
        &harness.vhost.amqp_url,
        topology::COMMANDS_EXCHANGE,
        "payment.charge",
        b"\xffnot json",
        BasicProperties::default(),
    )
    .await;
    harness.dead_letters(4).await;
    let admin = DeadLetterQueue::new(
        SERVICE,
        &harness.vhost.amqp_url,
        QUEUE,
        DedupWindow::default(),
    );

    let first = admin.list(0, 3).await.unwrap();
    assert_eq!(
        (first.total, first.items.len(), first.next_offset),
        (4, 3, Some(3))
    );
    let ids: BTreeSet<_> = first
        .items
        .iter()
        .filter_map(|d| d.message_id.clone())
        .collect();
    assert_eq!(ids, sent.iter().cloned().collect());
    let item = &first.items[0];
    assert_eq!(item.reason.as_deref(), Some("invalid_payload"));
    assert_eq!(item.message_type.as_deref(), Some(PERMANENT));
    assert_eq!(item.attempts, Some(1));
    assert_eq!(
        (item.exchange.as_str(), item.routing_key.as_str()),
        (topology::COMMANDS_EXCHANGE, "payment.charge")
    );
    assert_eq!(item.headers["x-service"], SERVICE);
    assert_eq!(item.payload_format, "json");

    let second = admin.list(3, 3).await.unwrap();
    assert_eq!((second.items.len(), second.next_offset), (1, None));
    let raw = &second.items[0];
    assert_eq!(raw.reason.as_deref(), Some("malformed_message"));
    assert_eq!(raw.payload_format, "text");
    assert_eq!(raw.payload, "\u{fffd}not json");
    assert_eq!(raw.message_id, None);
    assert!(admin.list(4, 3).await.unwrap().items.is_empty());

    let dlq = topology::dead_letter_queue(QUEUE);
    assert_eq!(
        harness.vhost.message_count(&dlq).await,
        4,
        "listing consumed nothing"
    );
    let (deleted, lines) = capture_lines_async(admin.delete(&sent[1])).await;
    assert_eq!(deleted.unwrap(), 1);
    let said = lines.events("dead_letter.deleted");
    assert_eq!(said.len(), 1, "one line per message deleted: {said:?}");
    assert_eq!(said[0]["message_id"], sent[1].as_str());
    assert_eq!(admin.delete(&sent[1]).await.unwrap(), 0);
    assert_eq!(harness.vhost.message_count(&dlq).await, 3);

    let (report, lines) = capture_lines_async(admin.replay(&Selection::Ids(
        [sent[0].clone(), "absent".to_owned()].into(),
    )))
    .await;
    let report = report.unwrap();
    assert_eq!(report.replayed, 1);
    let said = lines.events("dead_letter.replayed");
    assert_eq!(said.len(), 1, "one line per message replayed: {said:?}");
    assert_eq!(said[0]["message_id"], sent[0].as_str());
    assert_eq!(report.not_found, ["absent"]);
    assert!(report.failed.is_empty());
    assert!(report.refused.is_empty());
    // The replayed message fails permanently again and is back in the DLQ, as a new dead letter.
    eventually("the replayed message to fail again", PATIENCE, || async {
        (harness.vhost.message_count(&dlq).await == 3).then_some(())
    })
    .await;
    let after = admin.list(0, 10).await.unwrap();
    assert_eq!(after.total, 3);
    let order: Vec<_> = after.items.iter().map(|d| d.message_id.clone()).collect();
    assert_eq!(
        order,
        [Some(sent[2].clone()), None, Some(sent[0].clone())],
        "the rest kept their order"
    );
}
