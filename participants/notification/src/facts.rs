//! What the notification service reports, once the fact is committed: its metrics and its
//! lifecycle lines (`saga_common::lifecycle`).
//!
//! - `notifications_total{kind,status}`: notifications that reached a final status (`sent`,
//!   `failed`, `skipped`), by kind. Counted when the row is written (`skipped`) or marked.
//! - `notification_send_attempts_total{kind,outcome}`: SMTP conversations (`sent`, `retry`,
//!   `failed`): a mail retried three times is three attempts and one notification.

use metrics::{Unit, counter, describe_counter};
use uuid::Uuid;

use saga_common::lifecycle::{Event, Line, Subject};

use crate::notifications::store::Attempt;
use crate::notifications::{Kind, Status};

pub const NOTIFICATIONS: &str = "notifications_total";
pub const ATTEMPTS: &str = "notification_send_attempts_total";

/// Describes the metrics and registers every series at zero, so the first scrape has them.
pub fn register() {
    describe_counter!(
        NOTIFICATIONS,
        Unit::Count,
        "Notifications that reached a final status (sent, failed, skipped), by kind"
    );
    describe_counter!(
        ATTEMPTS,
        Unit::Count,
        "SMTP send attempts, by kind and outcome (sent, retry, failed)"
    );
    for kind in Kind::ALL {
        for status in ["sent", "failed", "skipped"] {
            counter!(NOTIFICATIONS, "kind" => kind.as_str(), "status" => status).increment(0);
        }
        for outcome in ["sent", "retry", "failed"] {
            counter!(ATTEMPTS, "kind" => kind.as_str(), "outcome" => outcome).increment(0);
        }
    }
}

/// Rows a batch of events wrote, once it committed: the skipped ones are final already.
pub fn written(rows: &[(Kind, Status)]) {
    for (kind, status) in rows {
        if *status == Status::Skipped {
            counter!(NOTIFICATIONS, "kind" => kind.as_str(), "status" => "skipped").increment(1);
        }
    }
}

/// Whose mail an attempt was.
pub struct Sending<'a> {
    pub kind: Kind,
    pub order_id: Option<Uuid>,
    pub product_id: Option<&'a str>,
    pub correlation_id: &'a str,
    pub attempts: i32,
}

/// One attempt, once marked: its counts and, when final, its line.
pub fn attempted(sending: &Sending<'_>, attempt: &Attempt) {
    let kind = sending.kind.as_str();
    let (outcome, event, error) = match attempt {
        Attempt::Sent => ("sent", Some(Event::NotificationSent), None),
        Attempt::Retry { error, .. } => ("retry", None, Some(error.as_str())),
        Attempt::Failed { error } => (
            "failed",
            Some(Event::NotificationFailed),
            Some(error.as_str()),
        ),
    };
    counter!(ATTEMPTS, "kind" => kind, "outcome" => outcome).increment(1);
    let Some(event) = event else {
        tracing::info!(
            kind,
            attempts = sending.attempts,
            error,
            "mail not sent; will retry"
        );
        return;
    };
    counter!(NOTIFICATIONS, "kind" => kind, "status" => outcome).increment(1);
    match sending.order_id {
        Some(order_id) => {
            let mut line = Line::new(
                event,
                Subject {
                    order_id,
                    correlation_id: sending.correlation_id,
                    trace_id: None,
                },
            )
            .state(kind);
            if let Some(error) = error {
                line = line.reason(error);
            }
            line.write();
        }
        // An alert is about a product, not a saga: a plain line with the same event code.
        None if error.is_some() => tracing::warn!(
            event = event.code(),
            kind,
            product_id = sending.product_id,
            error,
            "{}",
            event.message()
        ),
        None => tracing::info!(
            event = event.code(),
            kind,
            product_id = sending.product_id,
            "{}",
            event.message()
        ),
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn every_series_is_registered_at_zero_and_a_failure_counts_once_final() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            register();
            let sending = Sending {
                kind: Kind::LowStock,
                order_id: None,
                product_id: Some("p-1"),
                correlation_id: "c",
                attempts: 2,
            };
            attempted(
                &sending,
                &Attempt::Retry {
                    error: "refused".into(),
                    retry_in: std::time::Duration::from_millis(1),
                },
            );
            attempted(
                &sending,
                &Attempt::Failed {
                    error: "refused".into(),
                },
            );
        });
        let values: Vec<(String, Vec<String>, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let DebugValue::Counter(n) = value else {
                    panic!("not a counter")
                };
                let labels = key.key().labels().map(|l| l.value().to_owned()).collect();
                (key.key().name().to_owned(), labels, n)
            })
            .collect();
        assert_eq!(values.len(), 18, "3 kinds x (3 statuses + 3 outcomes)");
        let count = |name: &str, labels: [&str; 2]| {
            values
                .iter()
                .find(|(n, l, _)| n == name && l == &labels)
                .map(|(_, _, v)| *v)
                .unwrap()
        };
        assert_eq!(count(NOTIFICATIONS, ["low_stock", "failed"]), 1);
        assert_eq!(count(NOTIFICATIONS, ["order_confirmed", "sent"]), 0);
        assert_eq!(count(ATTEMPTS, ["low_stock", "retry"]), 1);
        assert_eq!(count(ATTEMPTS, ["low_stock", "failed"]), 1);
    }
}
