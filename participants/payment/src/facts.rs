//! What the payment service reports once a batch of commands commits, and never before: its
//! metrics and its lifecycle lines (`saga_common::lifecycle`). A duplicate command, answered
//! from the inbox, is not decided again and reports nothing.
//!
//! - `payment_charges_total{outcome="charged"|"declined"}`: charge commands decided.
//! - `payment_refunds_total`: refund commands decided (one that finds nothing charged too).

use metrics::{Unit, counter, describe_counter};

use saga_common::contracts::DeclineReason;
use saga_common::lifecycle::{Event, Line, OwnedSubject};
use saga_common::messaging::Envelope;
use saga_common::messaging::participant::Note;

use crate::payments::Outcome;

pub const CHARGES: &str = "payment_charges_total";
pub const REFUNDS: &str = "payment_refunds_total";

/// Describes the metrics and registers every series at zero, so the first scrape has them.
pub fn register() {
    describe_counter!(
        CHARGES,
        Unit::Count,
        "Charge commands decided, by outcome (charged, declined)"
    );
    describe_counter!(REFUNDS, Unit::Count, "Refund commands decided");
    for outcome in ["charged", "declined"] {
        counter!(CHARGES, "outcome" => outcome).increment(0);
    }
    counter!(REFUNDS).increment(0);
}

/// What one decided command says once its batch commits; nothing for a command that fails
/// the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    Charged { amount_cents: i64 },
    Declined { reason: &'static str },
    Refunded { amount_cents: i64 },
}

impl Fact {
    pub fn of(outcome: &Outcome) -> Option<Self> {
        Some(match outcome {
            Outcome::Charged { amount_cents, .. } => Self::Charged {
                amount_cents: *amount_cents,
            },
            Outcome::Declined { reason } => Self::Declined {
                reason: decline_code(*reason),
            },
            Outcome::Refunded { amount_cents } => Self::Refunded {
                amount_cents: *amount_cents,
            },
            Outcome::WrongCustomer { .. } => return None,
        })
    }

    /// Counts the fact and writes its line.
    pub fn report(self, subject: &OwnedSubject) {
        let subject = subject.subject();
        match self {
            Self::Charged { amount_cents } => {
                counter!(CHARGES, "outcome" => "charged").increment(1);
                Line::new(Event::PaymentCharged, subject)
                    .amount_cents(amount_cents)
                    .write();
            }
            Self::Declined { reason } => {
                counter!(CHARGES, "outcome" => "declined").increment(1);
                Line::new(Event::PaymentDeclined, subject)
                    .reason(reason)
                    .write();
            }
            Self::Refunded { amount_cents } => {
                counter!(REFUNDS).increment(1);
                Line::new(Event::PaymentRefunded, subject)
                    .amount_cents(amount_cents)
                    .write();
            }
        }
    }
}

/// The note `Participant::after_commit` hands over for `command`.
pub fn note(command: &Envelope, outcome: &Outcome) -> Option<Note> {
    let fact = Fact::of(outcome)?;
    let subject = OwnedSubject::of(command);
    Some(Box::new(move || fact.report(&subject)))
}

/// The reason as the reply and the `payments` table spell it.
fn decline_code(reason: DeclineReason) -> &'static str {
    match reason {
        DeclineReason::InsufficientFunds => "insufficient_funds",
        DeclineReason::NoAccount => "no_account",
        DeclineReason::Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use saga_common::testing::capture_lines;
    use uuid::Uuid;

    use super::*;

    fn counted(
        snapshot: &metrics_util::debugging::Snapshotter,
        name: &str,
        label: Option<&str>,
    ) -> u64 {
        snapshot
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
        assert_eq!(counted(&snapshotter, CHARGES, Some("charged")), 0);
        assert_eq!(counted(&snapshotter, CHARGES, Some("declined")), 0);
        assert_eq!(counted(&snapshotter, REFUNDS, None), 0);
    }

    #[test]
    fn a_decline_counts_and_says_so_with_its_reason() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let subject = OwnedSubject {
            order_id: Uuid::now_v7(),
            correlation_id: "c-9".into(),
            trace_id: None,
        };
        let fact = Fact::of(&Outcome::Declined {
            reason: DeclineReason::InsufficientFunds,
        })
        .unwrap();
        let ((), lines) =
            capture_lines(|| metrics::with_local_recorder(&recorder, || fact.report(&subject)));
        assert_eq!(counted(&snapshotter, CHARGES, Some("declined")), 1);
        let lines = lines.events("payment.declined");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["reason"], "insufficient_funds");
        assert_eq!(lines[0]["order_id"], subject.order_id.to_string());
        assert_eq!(lines[0]["correlation_id"], "c-9");
    }

    #[test]
    fn a_refund_to_the_wrong_customer_reports_nothing() {
        let outcome = Outcome::WrongCustomer {
            paid_by: "someone".into(),
        };
        assert_eq!(Fact::of(&outcome), None);
    }
}
