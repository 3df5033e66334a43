//! Payment participant integration tests, against the real PostgreSQL and RabbitMQ.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod accounts;
mod admin;
mod auth;
mod commands;
mod database;
mod docs;
mod hardening;
mod jwks;
mod metrics;
mod rate_limits;
mod retention;
