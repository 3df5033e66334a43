//! Transactional outbox: messages written on the business transaction, published once it commits.
//!
//! - `enqueue`: writing the rows ([`Insert`], [`resend`]) and what a write hands on ([`Enqueued`],
//!   with the [`AfterCommit`] notes said once it commits).
//! - `wakeup`: [`RelayWakeup`], which commits a transaction and hands its rows to the relay in
//!   one call, so a writer cannot forget to.
//! - `relay`: [`Relay`], the loop: rows handed over, rows read back by id, the orphan scan.
//! - `publish`: the one publish path, with publisher confirms and batches in flight.
//! - `scan`: reading rows back from the table: by id, and the scan for rows nobody handed over.
//! - `mark`: marking rows sent, many confirms to one statement.
//!
//! A row is marked only after the broker confirmed it, so a crash between publish and mark
//! publishes it again; the consumers' inboxes absorb the copy.

#[macro_use]
mod mark;
mod enqueue;
mod publish;
mod relay;
mod scan;
mod wakeup;

pub use enqueue::{AfterCommit, Enqueued, Insert, OUTBOX, enqueue_all, resend};
pub use relay::{Relay, RelayError};
#[cfg(feature = "testing")]
pub use scan::{READ_IDS, SCAN};
pub use wakeup::RelayWakeup;
