//! Everything that touches RabbitMQ, plus the two tables that make it safe:
//!
//! - [`envelope`]: the JSON envelope every message travels in, and its AMQP properties.
//! - [`topology`]: exchange and queue names, declared idempotently at start-up.
//! - [`outbox`]: messages written in the business transaction, published afterwards with confirms.
//! - [`inbox`]: `(consumer, message_id)` rows that make every consumer idempotent.
//! - [`consumer`]: the delivery loop: parse, handle, ack after commit, dead-letter with a reason.
//! - [`participant`]: the inbox-effect-reply-commit shape of every participant command.
//! - [`broker`]: one connection per service, supervised: connect, declare, consume, relay, reconnect.

pub mod broker;
pub mod consumer;
pub mod envelope;
pub mod inbox;
pub mod outbox;
pub mod participant;
pub mod topology;

pub use broker::{BrokerStatus, Messaging};
pub use consumer::{HandleError, MessageHandler};
pub use envelope::{Envelope, OutgoingMessage};
