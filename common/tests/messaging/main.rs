//! The consumer loop, its retries and the broker's poison guard, driven by a test handler whose
//! failures are scripted by message type, against the real RabbitMQ and PostgreSQL.
//! Run with `--features testing`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod batches;
mod dead_letters;
mod dedup_window;
mod failover;
mod poison;
mod relay;
mod retries;
mod schema;
