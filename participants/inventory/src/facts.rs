//! What the inventory service reports once a batch of commands commits, and never before: its
//! metrics and its lifecycle lines (`saga_common::lifecycle`). A duplicate command, answered
//! from the inbox, is not decided again and reports nothing.
//!
//! - `inventory_reservations_total{outcome="reserved"|"rejected"}`: reserve commands decided.
//! - `inventory_releases_total`: release commands decided (one that finds nothing reserved too).
//!
//! A reservation that took a product below its low-stock threshold also writes a `stock.low`
//! line per product (the alert itself is counted by
//! `messaging_published_messages_total{type="inventory.low_stock"}` once the broker has it).

use metrics::{Unit, counter, describe_counter};

use saga_common::contracts::{LowStock, RejectionReason};
use saga_common::lifecycle::{Event, Line, OwnedSubject};
use saga_common::messaging::Envelope;
use saga_common::messaging::participant::Note;

use crate::reservations::{ReleaseOutcome, ReserveOutcome, StockOutcome};

pub const RESERVATIONS: &str = "inventory_reservations_total";
pub const RELEASES: &str = "inventory_releases_total";

/// Describes the metrics and registers every series at zero, so the first scrape has them.
pub fn register() {
    describe_counter!(
        RESERVATIONS,
        Unit::Count,
        "Reserve commands decided, by outcome (reserved, rejected)"
    );
    describe_counter!(RELEASES, Unit::Count, "Release commands decided");
    for outcome in ["reserved", "rejected"] {
        counter!(RESERVATIONS, "outcome" => outcome).increment(0);
    }
    counter!(RELEASES).increment(0);
}

/// What one decided command says once its batch commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    Reserved,
    Rejected {
        reason: &'static str,
    },
    /// `found`: what the release found (`released`, `already_released`, `nothing_reserved`,
    /// `blocked`: no reservation yet, a late reserve will take nothing).
    Released {
        found: &'static str,
    },
}

impl Fact {
    pub fn of(outcome: &StockOutcome) -> Self {
        match outcome {
            StockOutcome::Reserve(ReserveOutcome::Reserved { .. }) => Self::Reserved,
            StockOutcome::Reserve(ReserveOutcome::Rejected { reason }) => Self::Rejected {
                reason: rejection_code(*reason),
            },
            StockOutcome::Release(release) => Self::Released {
                found: match release {
                    ReleaseOutcome::Released { .. } => "released",
                    ReleaseOutcome::AlreadyReleased => "already_released",
                    ReleaseOutcome::NothingReserved => "nothing_reserved",
                    ReleaseOutcome::Blocked => "blocked",
                },
            },
        }
    }

    /// Counts the fact and writes its line.
    pub fn report(self, subject: &OwnedSubject) {
        let subject = subject.subject();
        match self {
            Self::Reserved => {
                counter!(RESERVATIONS, "outcome" => "reserved").increment(1);
                Line::new(Event::StockReserved, subject).write();
            }
            Self::Rejected { reason } => {
                counter!(RESERVATIONS, "outcome" => "rejected").increment(1);
                Line::new(Event::StockRejected, subject)
                    .reason(reason)
                    .write();
            }
            Self::Released { found } => {
                counter!(RELEASES).increment(1);
                Line::new(Event::StockReleased, subject)
                    .reason(found)
                    .write();
            }
        }
    }
}

/// The note `Participant::after_commit` hands over for `command`.
pub fn note(command: &Envelope, outcome: &StockOutcome) -> Note {
    let fact = Fact::of(outcome);
    let subject = OwnedSubject::of(command);
    let low_stock = match outcome {
        StockOutcome::Reserve(ReserveOutcome::Reserved { low_stock }) => low_stock.clone(),
        _ => Vec::new(),
    };
    Box::new(move || {
        fact.report(&subject);
        low_stock
            .iter()
            .for_each(|alert| stock_low(alert, &subject));
    })
}

/// The `stock.low` line of an alert published: always written (not a sampled success).
fn stock_low(alert: &LowStock, subject: &OwnedSubject) {
    Line::new(Event::StockLow, subject.subject())
        .stock(&alert.product_id, alert.available, alert.threshold)
        .write();
}

/// The reason as the reply and the `reservations` table spell it.
fn rejection_code(reason: RejectionReason) -> &'static str {
    match reason {
        RejectionReason::OutOfStock => "out_of_stock",
        RejectionReason::ReleasedBeforeReserved => "released_before_reserved",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use saga_common::testing::capture_lines;
    use uuid::Uuid;

    use super::*;

    fn counted(snapshotter: &Snapshotter, name: &str, label: Option<&str>) -> u64 {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(key, _, _, _)| {
                key.key().name() == name
                    && label.is_none_or(|l| key.key().labels().any(|x| x.value() == l))
            })
            .map(|(_, _, _, value)| match value {
                DebugValue::Counter(n) => n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .unwrap_or_else(|| panic!("{name} {label:?} not registered"))
    }

    #[test]
    fn every_series_is_registered_at_zero() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, register);
        assert_eq!(counted(&snapshotter, RESERVATIONS, Some("reserved")), 0);
        assert_eq!(counted(&snapshotter, RESERVATIONS, Some("rejected")), 0);
        assert_eq!(counted(&snapshotter, RELEASES, None), 0);
    }

    #[test]
    fn out_of_stock_counts_a_rejection_and_says_why() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let subject = OwnedSubject {
            order_id: Uuid::now_v7(),
            correlation_id: "c-3".into(),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        };
        let fact = Fact::of(&StockOutcome::Reserve(ReserveOutcome::Rejected {
            reason: RejectionReason::OutOfStock,
        }));
        let ((), lines) =
            capture_lines(|| metrics::with_local_recorder(&recorder, || fact.report(&subject)));
        assert_eq!(counted(&snapshotter, RESERVATIONS, Some("rejected")), 1);
        let lines = lines.events("stock.rejected");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["reason"], "out_of_stock");
        assert_eq!(lines[0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(lines[0]["saga_id"], subject.order_id.to_string());
    }

    #[test]
    fn a_reservation_crossing_a_threshold_says_so_per_product() {
        let command = Envelope::new(
            &saga_common::contracts::StockReserved {
                order_id: Uuid::now_v7(),
            },
            Uuid::now_v7(),
            "c-4",
            None,
        )
        .unwrap();
        let outcome = StockOutcome::Reserve(ReserveOutcome::Reserved {
            low_stock: vec![LowStock {
                product_id: "p-7".into(),
                available: 4,
                threshold: 5,
            }],
        });
        let note = note(&command, &outcome);
        let ((), lines) = capture_lines(note);
        let lines = lines.events("stock.low");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["product_id"], "p-7");
        assert_eq!(lines[0]["available"], 4);
        assert_eq!(lines[0]["threshold"], 5);
        assert_eq!(lines[0]["order_id"], command.saga_id.to_string());
        assert_eq!(lines[0]["correlation_id"], "c-4");
    }
}
