//! Everything that touches RabbitMQ, plus the two tables that make it safe:
//!
//! - [`envelope`]: the JSON envelope every message travels in, and its AMQP properties.
//! - [`topology`]: exchange and queue names, declared idempotently at start-up.
//! - [`outbox`]: messages written in the business transaction, published afterwards with confirms.
//! - [`inbox`]: `(consumer, message_id)` rows that make every consumer idempotent.
//! - [`consumer`]: the delivery loop: parse, apply a batch on one transaction, ack after commit,
//!   retry transient failures through delay queues, dead-letter with a reason.
//! - `reroute`: a delivery not handled, to a delay queue (retry) or the DLQ, confirmed first.
//! - [`headers`]: the headers a failed message collects (attempts, failure times, reason), read back.
//! - [`dead_letters`]: list, replay and delete a DLQ's messages (behind the admin API).
//! - [`participant`]: the inbox-effect-reply shape of every participant command.
//! - [`broker`]: one connection per service, supervised: connect, declare, consume, relay, reconnect.
//! - [`probe`]: ready messages and consumers of a queue, asked on the session's probe channel.

pub mod broker;
pub mod consumer;
pub mod dead_letters;
pub mod envelope;
pub mod headers;
pub mod inbox;
pub mod outbox;
pub mod participant;
pub mod probe;
mod reroute;
pub mod topology;

pub use broker::{BrokerStatus, Messaging};
pub use consumer::{HandleError, MessageHandler, handle};
pub use envelope::{Envelope, OutgoingMessage};
pub use probe::{Probe, ProbeError, QueueDepth};

/// A message that is not of the contract its consumer takes will never be: dead-letter it with
/// the stable reason (here, not in `envelope`, which the consumer itself builds on).
impl From<crate::contracts::DecodeError> for HandleError {
    fn from(error: crate::contracts::DecodeError) -> Self {
        match error {
            crate::contracts::DecodeError::UnknownType(message_type) => {
                HandleError::unknown_type(&message_type)
            }
            crate::contracts::DecodeError::InvalidPayload(error) => {
                HandleError::invalid_payload(error)
            }
        }
    }
}
