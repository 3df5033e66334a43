//! Integration tests: the service as production starts it, against the real PostgreSQL and
//! RabbitMQ, each test with its own database and vhost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod auth;
mod commands;
mod docs;
mod helpers;
mod low_stock;
mod products;
mod reservations;
mod retention;
