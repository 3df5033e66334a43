//! A load generator for the saga fleet, run against a fleet that is already up.
//!
//! Module map:
//! - [`cli`]: `--key value` arguments into typed [`cli::Settings`] (and `loadgen token`'s).
//! - [`auth`]: the operator token and the customer JWTs the requests carry.
//! - [`refusal`]: 503 (shed) and 429 (rate-limited) answers, counted apart from errors, and
//!   their `Retry-After`.
//! - [`mix`]: the seeded population (rich and broke customers, plentiful and scarce products)
//!   and a deterministic stream of orders that complete, are declined or run out of stock.
//! - [`seeding`]: the population written before the load and read back after it.
//! - [`drive`]: the open- and closed-loop drivers, and tracking each order to its terminal
//!   status (by its lifecycle event with `--amqp`, by polling otherwise); `progress`, the live
//!   line while they run; `order`, placing one order and following it to its end.
//! - [`tally`]: what a run keeps of its orders with `--window`: aggregates, not every order.
//! - [`tap`]: the `--amqp` listener on the `saga.events` exchange, and the matching of events
//!   to the orders waiting for them.
//! - [`stats`]: percentiles, the per-second series, the per-minute windows and the profile
//!   around `--marks` (the broker's rollovers, from `loadgen bench`).
//! - [`invariants`]: expected balances and stock from the COMPLETED orders, and the comparison
//!   with what the participants report.
//! - [`chart`]: the SVG chart, written by hand.
//! - [`report`]: the summary table (with a line per minute of a longer run) and the JSON
//!   document.
//! - [`bench`]: `loadgen bench`, the standard benchmark: the phases as child runs, the samplers
//!   of CPU, memory, backlog, disk and pressure, and the benchmark's summary.

pub mod auth;
pub mod bench;
pub mod chart;
pub mod cli;
pub mod drive;
pub mod invariants;
pub mod mix;
mod order;
mod progress;
pub mod refusal;
pub mod report;
pub mod seeding;
pub mod stats;
pub mod tally;
pub mod tap;

pub use drive::run;
