//! What a test sees of the broker: a [`Tap`] on an exchange, messages published raw or as an
//! envelope, and the headers of a peeked message.

use serde_json::Value;

use super::PATIENCE;

/// A private, exclusive queue bound to an exchange: lets a test see what a service published.
pub struct Tap {
    _connection: lapin::Connection,
    consumer: lapin::Consumer,
}

impl Tap {
    /// Binds a fresh queue to `exchange` for each routing key. Bind before causing the message.
    pub async fn bind(amqp_url: &str, exchange: &str, routing_keys: &[&str]) -> Self {
        use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let connection =
            lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default())
                .await
                .unwrap();
        let channel = connection.create_channel().await.unwrap();
        // The services declare the exchanges too; declaring here lets a tap come first.
        crate::messaging::topology::declare(&channel).await.unwrap();
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        for key in routing_keys {
            channel
                .queue_bind(
                    queue.name().clone(),
                    exchange.into(),
                    (*key).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
        }
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "tap".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        Self {
            _connection: connection,
            consumer,
        }
    }

    /// The next message, parsed as an envelope; panics after [`PATIENCE`].
    pub async fn next(&mut self) -> crate::messaging::Envelope {
        use futures_util::StreamExt;
        let delivery = tokio::time::timeout(PATIENCE, self.consumer.next())
            .await
            .expect("no message reached the tap in time")
            .expect("tap consumer closed")
            .expect("tap consumer failed");
        serde_json::from_slice(&delivery.data).expect("tapped message is not an envelope")
    }
}

/// Publishes raw bytes (persistent, confirmed) as a misbehaving or test producer would.
pub async fn publish_raw(
    amqp_url: &str,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: lapin::BasicProperties,
) {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let connection = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    crate::messaging::topology::declare(&channel).await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties.with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirmation.is_ack(), "the broker refused the test message");
    let _ = connection.close(200, "done".into()).await;
}

/// Publishes an envelope the way the outbox relay does.
pub async fn publish_envelope(amqp_url: &str, message: &crate::messaging::OutgoingMessage) {
    let body = serde_json::to_vec(&message.envelope).unwrap();
    publish_raw(
        amqp_url,
        &message.exchange,
        &message.routing_key,
        &body,
        crate::messaging::envelope::properties(&message.envelope, "test"),
    )
    .await;
}

/// A header of any type (numbers, tables) on a message returned by [`TestVhost::peek`].
pub fn peeked_header_value<'a>(message: &'a Value, name: &str) -> Option<&'a Value> {
    message.pointer(&format!("/properties/headers/{name}"))
}

/// Value of a header on a message returned by [`TestVhost::peek`].
pub fn peeked_header<'a>(message: &'a Value, name: &str) -> Option<&'a str> {
    message
        .pointer(&format!("/properties/headers/{name}"))
        .and_then(Value::as_str)
}
