//! Building blocks shared by the orchestrator and the participants.
//!
//! - [`configuration`]: typed, layered settings (defaults, optional TOML file, `APP__` variables).
//! - [`telemetry`]: the JSON (bunyan) tracing subscriber, built once per process.
//! - [`db`]: PostgreSQL connection pool and error helpers.
//! - [`migration`]: the outbox (with its pending rows) and inbox tables every service database
//!   carries.
//! - [`contracts`]: message types and payloads exchanged over RabbitMQ: the one place both sides agree on.
//! - [`messaging`]: envelope, topology, broker supervisor, consumer loop (retries through delay
//!   queues, dead letters), transactional outbox and inbox, dead-letter administration.
//! - [`http`]: the JSON error at the edge, strict extractors, health probes, correlation ids, Swagger
//!   UI, and the token-guarded admin routes.
//! - [`service`]: the one service skeleton: a service names its settings, migrations, handler,
//!   routes and tasks; start-up, serving, messaging, shutdown and `main` are written there once.
//! - [`secret`]: connection URLs that carry passwords, masked wherever they are shown.
//! - [`shutdown`]: the stop signal handed to every long-running task.
//! - [`batching`]: batches taken from a stream, with a linger when busy (the consumers and the
//!   order intake).
//! - `testing` (feature `testing`): private databases and RabbitMQ vhosts for integration tests.

pub mod batching;
pub mod configuration;
pub mod contracts;
pub mod db;
pub mod http;
pub mod messaging;
pub mod migration;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
