//! Poison messages: what a broken or hostile producer could put in each work queue. None of them
//! can ever be handled, so each must end in its queue's DLQ, once, without holding up the orders
//! flowing beside it.

use std::collections::BTreeMap;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use uuid::Uuid;

use saga_common::contracts::{self, Payload};
use saga_common::messaging::envelope;
use saga_common::messaging::{Envelope, topology};

use crate::harness::bounded;
use crate::harness::rabbitmq::AMQP_CALL_LIMIT;

/// One poison message: where it goes and what it is.
struct Poison {
    queue: &'static str,
    exchange: &'static str,
    routing_key: &'static str,
    body: Vec<u8>,
    properties: BasicProperties,
}

fn envelope_of(message_type: &str, payload: serde_json::Value) -> (Vec<u8>, BasicProperties) {
    let envelope = Envelope::untyped(
        message_type,
        Uuid::now_v7(),
        "faults-poison",
        None,
        &payload,
    )
    .expect("a JSON payload serialises");
    let body = serde_json::to_vec(&envelope).expect("an envelope serialises");
    (body, envelope::properties(&envelope, "fault-tests"))
}

fn poisons() -> Vec<Poison> {
    let raw = |queue, exchange, routing_key, body: &[u8]| Poison {
        queue,
        exchange,
        routing_key,
        body: body.to_vec(),
        properties: BasicProperties::default().with_delivery_mode(2),
    };
    let enveloped = |queue, exchange, routing_key, message_type: &str, payload| {
        let (body, properties) = envelope_of(message_type, payload);
        Poison {
            queue,
            exchange,
            routing_key,
            body,
            properties,
        }
    };
    let commands = topology::COMMANDS_EXCHANGE;
    let replies = topology::REPLIES_EXCHANGE;
    vec![
        // Not JSON at all.
        raw(
            topology::PAYMENT_COMMANDS,
            commands,
            contracts::ChargePayment::TYPE,
            b"{ this is not json",
        ),
        // A well-formed envelope of a type nobody handles, on a key the queue is bound to.
        enveloped(
            topology::PAYMENT_COMMANDS,
            commands,
            contracts::RefundPayment::TYPE,
            "payment.explode",
            json!({}),
        ),
        // A reserve without lines.
        enveloped(
            topology::INVENTORY_COMMANDS,
            commands,
            contracts::ReserveStock::TYPE,
            contracts::ReserveStock::TYPE,
            json!({"order_id": Uuid::nil(), "lines": []}),
        ),
        // A release whose payload has the wrong shape.
        enveloped(
            topology::INVENTORY_COMMANDS,
            commands,
            contracts::ReleaseStock::TYPE,
            contracts::ReleaseStock::TYPE,
            json!({"order": "not a uuid"}),
        ),
        // A reply for a saga that does not exist.
        enveloped(
            topology::ORCHESTRATOR_REPLIES,
            replies,
            contracts::PaymentCharged::TYPE,
            contracts::PaymentCharged::TYPE,
            json!({"order_id": Uuid::now_v7(), "payment_id": Uuid::now_v7(), "amount_cents": 100}),
        ),
        // An envelope truncated in the middle.
        raw(
            topology::ORCHESTRATOR_REPLIES,
            replies,
            contracts::StockReserved::TYPE,
            br#"{"message_id": "0193", "type": "inventory.reser"#,
        ),
    ]
}

/// Publishes every poison message (persistent, confirmed) and returns how many each work queue
/// received, which is how many its DLQ must end up with.
pub async fn inject(amqp_url: &str) -> BTreeMap<&'static str, u32> {
    bounded(
        "injecting poison",
        AMQP_CALL_LIMIT * 3,
        publish_all(amqp_url),
    )
    .await
}

async fn publish_all(amqp_url: &str) -> BTreeMap<&'static str, u32> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .expect("cannot connect to inject poison");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let mut counts = BTreeMap::new();
    for poison in poisons() {
        let confirmation = channel
            .basic_publish(
                poison.exchange.into(),
                poison.routing_key.into(),
                BasicPublishOptions {
                    // Unroutable would be a mistake of this test; the broker says so.
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &poison.body,
                poison.properties,
            )
            .await
            .expect("basic.publish")
            .await
            .expect("publisher confirm");
        assert!(
            confirmation.is_ack() && confirmation.take_message().is_none(),
            "the broker did not route poison to {}",
            poison.queue
        );
        *counts.entry(poison.queue).or_default() += 1;
    }
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        connection.close(200, "poison injected".into()),
    )
    .await;
    counts
}
