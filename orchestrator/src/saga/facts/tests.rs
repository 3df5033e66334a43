#![allow(clippy::unwrap_used)]

use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use saga_common::testing::capture_lines;

use super::*;

type Taken = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// Every series recorded; taken once per test, as taking it drains the histograms.
fn taken(snapshotter: &Snapshotter) -> Taken {
    snapshotter.snapshot().into_vec()
}

/// The value of the series `name` with every label in `labels`.
fn value<'a>(taken: &'a Taken, name: &str, labels: &[(&str, &str)]) -> &'a DebugValue {
    taken
        .iter()
        .find(|(key, _, _, _)| {
            key.key().name() == name
                && labels.iter().all(|(k, v)| {
                    key.key()
                        .labels()
                        .any(|label| label.key() == *k && label.value() == *v)
                })
        })
        .map(|(_, _, _, value)| value)
        .unwrap_or_else(|| panic!("{name} {labels:?} not registered"))
}

fn count(snapshotter: &Taken, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(snapshotter, name, labels) {
        DebugValue::Counter(n) => *n,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

#[test]
fn every_series_is_registered_at_zero() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, register);
    let snapshotter = taken(&snapshotter);
    assert_eq!(count(&snapshotter, STARTED, &[]), 0);
    assert_eq!(
        count(
            &snapshotter,
            ENDED,
            &[("outcome", "completed"), ("reason", "none")]
        ),
        0
    );
    for reason in ["payment_declined", "out_of_stock", "timed_out"] {
        assert_eq!(
            count(
                &snapshotter,
                ENDED,
                &[("outcome", "failed"), ("reason", reason)]
            ),
            0
        );
    }
    for state in IN_FLIGHT_STATES {
        assert!(matches!(
            value(&snapshotter, IN_FLIGHT, &[("state", state)]),
            DebugValue::Gauge(_)
        ));
    }
    assert!(matches!(
        value(&snapshotter, OVERDUE, &[]),
        DebugValue::Gauge(_)
    ));
    for action in ["resend", "compensate"] {
        assert_eq!(
            count(&snapshotter, TIMEOUT_ACTIONS, &[("action", action)]),
            0
        );
    }
}

#[test]
fn a_failed_saga_counts_its_reason_and_duration_and_says_so() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let ended = Ended {
        subject: OwnedSubject {
            order_id: Uuid::now_v7(),
            correlation_id: "c-7".into(),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        },
        state: SagaState::Failed(FailureReason::PaymentDeclined),
        created_at: Utc::now() - chrono::Duration::milliseconds(1_500),
    };
    let ((), lines) = capture_lines(|| metrics::with_local_recorder(&recorder, || ended.report()));
    let snapshotter = taken(&snapshotter);
    assert_eq!(
        count(
            &snapshotter,
            ENDED,
            &[("outcome", "failed"), ("reason", "payment_declined")]
        ),
        1
    );
    match value(&snapshotter, DURATION, &[("outcome", "failed")]) {
        DebugValue::Histogram(samples) => {
            assert_eq!(samples.len(), 1);
            assert!(samples[0].into_inner() >= 1.5, "{samples:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    let lines = lines.events("saga.failed");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["reason"], "payment_declined");
    assert_eq!(lines[0]["order_id"], ended.subject.order_id.to_string());
    assert_eq!(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(lines[0]["duration_ms"].as_i64().unwrap() >= 1_500);
}

#[test]
fn a_completed_saga_counts_with_reason_none() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let ended = Ended {
        subject: OwnedSubject {
            order_id: Uuid::now_v7(),
            correlation_id: "c-8".into(),
            trace_id: None,
        },
        state: SagaState::Completed,
        created_at: Utc::now(),
    };
    let ((), lines) = capture_lines(|| metrics::with_local_recorder(&recorder, || ended.report()));
    let snapshotter = taken(&snapshotter);
    assert_eq!(
        count(
            &snapshotter,
            ENDED,
            &[("outcome", "completed"), ("reason", "none")]
        ),
        1
    );
    assert_eq!(lines.events("saga.completed").len(), 1);
}

#[test]
fn timeout_actions_count_by_action() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let subject = Subject {
        order_id: Uuid::now_v7(),
        correlation_id: "c-2",
        trace_id: None,
    };
    let ((), lines) = capture_lines(|| {
        metrics::with_local_recorder(&recorder, || {
            timeout(
                TimeoutAction::Resent,
                subject,
                SagaState::AwaitingPayment,
                1,
            );
            timeout(
                TimeoutAction::Compensating,
                subject,
                SagaState::RefundingPayment(FailureReason::TimedOut),
                0,
            );
        })
    });
    let snapshotter = taken(&snapshotter);
    assert_eq!(
        count(&snapshotter, TIMEOUT_ACTIONS, &[("action", "resend")]),
        1
    );
    assert_eq!(
        count(&snapshotter, TIMEOUT_ACTIONS, &[("action", "compensate")]),
        1
    );
    let resent = lines.events("saga.timeout_resent");
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0]["state"], "AWAITING_PAYMENT");
    assert_eq!(resent[0]["resends"], 1);
    assert_eq!(lines.events("saga.timeout_compensating").len(), 1);
}
