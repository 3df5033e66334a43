//! Fault-injection tests: the fleet as real processes (`fleet-node`) against a private
//! PostgreSQL cluster and a private RabbitMQ node that each test starts on free ports in a
//! temporary directory, so it can kill and restart anything without touching the machine's own
//! servers or other tests.
//!
//! Every scenario runs a steady stream of orders ([`stream`]), injects its fault mid-stream, and
//! ends with the same invariant checker ([`invariants`]): every accepted order ends, money and
//! stock are conserved, no effect happens twice, no dead letter appears that the scenario did not
//! put there.
//!
//! - [`harness`]: scratch directory, processes, the private servers, the fleet and its API.
//! - [`stream`]: the order stream and the ledger of what was accepted.
//! - [`invariants`]: the checker; [`checker`] checks that it fails what it should.
//! - [`duplicator`], [`poison`]: message faults.
//! - [`scenario`]: what every scenario shares (one at a time, timing).
//!
//! The scenarios of issue 3, and where they are:
//!
//! | # | Fault | Test |
//! | --- | --- | --- |
//! | 1 | a participant SIGKILLed mid-stream and restarted | [`process_faults`] `..._each_participant_is_killed_...` |
//! | 2 | the orchestrator SIGKILLed mid-stream and restarted | [`process_faults`] `..._the_orchestrator_is_killed_...` |
//! | 3 | RabbitMQ stopped (and crashed) and started | [`infrastructure_faults`] `..._rabbitmq_is_stopped_or_killed_...` |
//! | 4 | PostgreSQL stopped (immediate) and started | [`infrastructure_faults`] `..._postgresql_is_stopped_...` |
//! | 5 | every message delivered twice | [`message_faults`] `..._delivered_twice` |
//! | 6 | a participant down past the saga deadline | [`process_faults`] `..._down_past_the_saga_deadline` (payment, inventory) |
//! | 7 | poison in every work queue; a fixed message replayed | [`message_faults`] `poison_lands_...`, `a_charge_replayed_...` |
//! | 8 | two instances of every service | [`process_faults`] `..._two_instances_...` (plain, with duplicates, rolling SIGTERM restart) |
//!
//! Scenarios run one at a time (see [`scenario`]); `FAULTS_PARALLEL=2` runs two at once.
//! `FAULTS_KEEP=1` keeps each scenario's directory (logs, data); `FAULTS_LOG_LEVEL` sets the
//! services' log filter (default `info`; logs go to files, printed only when a test fails).

// The whole crate is test code: a panic, with its message, is how it reports a failure (the
// workspace's `allow-expect-in-tests` only covers `#[test]` functions, not their helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checker;
mod duplicator;
mod harness;
mod infrastructure_faults;
mod invariants;
mod message_faults;
mod poison;
mod process_faults;
mod scenario;
mod stream;
