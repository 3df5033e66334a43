//! Building blocks shared by the orchestrator and the participants.
//!
//! - [`service`]: the one service skeleton; a service names its settings, migrations, handler,
//!   routes and tasks, and start-up, serving, messaging, shutdown and `main` live there once.
//! - [`configuration`]: typed, layered settings; [`telemetry`]: the JSON tracing subscriber.
//! - [`db`] and [`migration`]: the connection pool, error helpers, and the outbox and inbox
//!   tables every service database carries.
//! - [`contracts`]: the messages exchanged over RabbitMQ, the one place both sides agree on.
//! - [`messaging`]: envelope, topology, broker session, consumer loop, outbox, inbox and
//!   dead letters.
//! - [`http`]: the JSON error, extractors, authentication and guards, health, Swagger UI and the
//!   admin routes.
//! - [`lifecycle`]: the saga lifecycle lines operators read at `info`, and their sampling.
//! - [`metrics`]: the Prometheus recorder, `GET /metrics`, and the generic metrics (HTTP,
//!   messaging, outbox, dead letters, process and pool).
//! - [`retention`]: the pruner that removes old outbox, inbox and history rows on a schedule.
//! - [`nul`]: finding the NUL characters PostgreSQL cannot store, before they reach it.
//! - [`secret`], [`shutdown`], [`batching`]: masked URLs, the stop signal, batches with a linger.
//! - `testing` (feature `testing`): private databases and RabbitMQ vhosts for integration tests.

pub mod batching;
pub mod configuration;
pub mod contracts;
pub mod db;
pub mod http;
pub mod lifecycle;
pub mod messaging;
pub mod metrics;
pub mod migration;
pub mod nul;
pub mod retention;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
