//! Orchestrator integration tests: the whole fleet (orchestrator, payment, inventory, and the
//! notification service for the console) in this process, against the real PostgreSQL and
//! RabbitMQ, each test in its own databases and vhost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod admission;
mod analytics;
mod api_validation;
mod auth;
mod console;
mod hardening;
mod health_and_docs;
mod lifecycle;
mod messaging;
mod metrics;
mod operations;
mod orders;
mod plans;
mod resends;
mod retention;
mod saga_flows;
mod saga_search;
mod timeouts;
