//! Fault-injection tests: the fleet as real processes (`fleet-node`) against a private
//! PostgreSQL cluster and RabbitMQ node that each test starts on free ports, so it can kill and
//! restart anything without touching the machine's servers or other tests. Every scenario runs
//! a steady stream of orders, injects its fault mid-stream and ends with the same invariant
//! checker: every accepted order ends, money and stock are conserved, nothing happens twice.
//!
//! - [`harness`]: scratch directory, processes, the private servers, the fleet and its API;
//!   [`scenario`]: what every scenario shares (one at a time, timing).
//! - [`stream`]: the orders and the ledger; [`invariants`]: the checker ([`checker`] tests it).
//! - [`process_faults`]: services SIGKILLed and restarted, down past the saga deadline, twice.
//! - [`infrastructure_faults`]: RabbitMQ and PostgreSQL stopped or killed, then started.
//! - [`failover`]: services given two RabbitMQ addresses move to the second when the first stops.
//! - [`message_faults`] ([`duplicator`], [`poison`]): duplicates, poison, a replayed message.
//! - [`observability`]: deploy/observability/'s rules and dashboard against the fleet's metrics.
//! - [`traces`]: one order is one trace across the three processes, checked at an OTLP receiver.
//! - [`packaging`]: deploy/rabbitmq, deploy/docker, deploy/compose.yaml and deploy/k8s against the code.
//!
//! `FAULTS_PARALLEL=2` runs two scenarios at once, `FAULTS_KEEP=1` keeps their directories,
//! `FAULTS_LOG_LEVEL` sets the services' log filter (logs are printed when a test fails).

// The whole crate is test code: a panic, with its message, is how it reports a failure (the
// workspace's `allow-expect-in-tests` only covers `#[test]` functions, not their helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checker;
mod duplicator;
mod failover;
mod harness;
mod infrastructure_faults;
mod invariants;
mod message_faults;
mod observability;
mod packaging;
mod poison;
mod process_faults;
mod scenario;
mod stream;
mod traces;
