//! Integration tests: the service as production starts it, against the real PostgreSQL,
//! RabbitMQ and a real SMTP server (aiosmtpd, writing what it receives to a Maildir), each test
//! with its own database, vhost and mail server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod delivery;
mod helpers;
mod tls;
