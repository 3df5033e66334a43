#![allow(clippy::unwrap_used)]

use uuid::Uuid;

use super::*;
use crate::testing::capture_lines;

fn subject(order_id: Uuid) -> Subject<'static> {
    Subject {
        order_id,
        correlation_id: "c-1",
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
    }
}

#[test]
fn a_line_names_its_saga_event_and_trace() {
    let order_id = Uuid::now_v7();
    let ((), lines) = capture_lines(|| {
        // An enclosing span with other values, as a consumer's batch span: the line's own win.
        let batch = tracing::info_span!("batch", correlation_id = "other", saga_id = "other");
        let _entered = batch.enter();
        Line::new(Event::PaymentDeclined, subject(order_id))
            .reason("insufficient_funds")
            .write();
    });
    let lines = lines.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["event"], "payment.declined");
    assert!(
        line["msg"].as_str().unwrap().ends_with("payment declined"),
        "{line}"
    );
    assert_eq!(line["order_id"], order_id.to_string());
    assert_eq!(line["saga_id"], order_id.to_string());
    assert_eq!(line["correlation_id"], "c-1");
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["reason"], "insufficient_funds");
    assert_eq!(line["level"], 30, "info");
    assert!(
        line.get("amount_cents").is_none(),
        "no empty details: {line}"
    );
}

#[test]
fn timeouts_and_operator_actions_are_warnings() {
    let ((), lines) = capture_lines(|| {
        Line::new(Event::TimeoutCompensating, subject(Uuid::now_v7()))
            .state("REFUNDING_PAYMENT")
            .write();
    });
    let lines = lines.events("saga.timeout_compensating");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["level"], 40, "warn");
    assert_eq!(lines[0]["state"], "REFUNDING_PAYMENT");
}

#[test]
fn sampling_is_a_function_of_the_order_and_keeps_about_its_share() {
    let ids: Vec<Uuid> = (0..20_000).map(|_| Uuid::now_v7()).collect();
    let kept = ids.iter().filter(|id| sampled(**id, 0.1)).count();
    assert!((1_600..=2_400).contains(&kept), "{kept} of 20000 at 10 %");
    for id in &ids[..100] {
        assert_eq!(sampled(*id, 0.1), sampled(*id, 0.1));
        assert!(sampled(*id, 1.0));
        assert!(!sampled(*id, 0.0));
        // An order sampled at a ratio is sampled at every larger one.
        assert!(!sampled(*id, 0.1) || sampled(*id, 0.5));
    }
}

#[test]
fn sampling_drops_successful_steps_but_never_failures() {
    let unsampled = (0..1_000)
        .map(|_| Uuid::now_v7())
        .find(|id| !sampled(*id, 0.5))
        .unwrap();
    let before = success_ratio();
    set_success_ratio(0.5);
    let ((), lines) = capture_lines(|| {
        for event in [
            Event::SagaStarted,
            Event::PaymentCharged,
            Event::StockReserved,
            Event::SagaCompleted,
            Event::PaymentDeclined,
            Event::StockRejected,
            Event::PaymentRefunded,
            Event::StockReleased,
            Event::SagaFailed,
            Event::TimeoutResent,
            Event::TimeoutCompensating,
        ] {
            Line::new(event, subject(unsampled)).write();
        }
    });
    set_success_ratio(before);
    let codes: Vec<String> = lines
        .lines()
        .iter()
        .map(|l| l["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        codes,
        [
            "payment.declined",
            "stock.rejected",
            "payment.refunded",
            "stock.released",
            "saga.failed",
            "saga.timeout_resent",
            "saga.timeout_compensating",
        ]
    );
}
