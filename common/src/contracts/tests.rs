//! The wire format of every contract, with today's type names and JSON written out by hand: a
//! renamed type, field or reason fails here before it reaches another service.

use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::messaging::envelope::{Envelope, OutgoingMessage, properties};
use crate::messaging::{HandleError, topology};

const ORDER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
const PAYMENT: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);

/// Builds the envelope of `message`, checks its type (in the body and the AMQP `type`) and
/// payload against what is written out, sends it through JSON and decodes it back as `C`.
fn round_trip<C: Contract + std::fmt::Debug + PartialEq>(
    message: C,
    message_type: &str,
    payload: Value,
) -> Envelope {
    let envelope = Envelope::new(&message, ORDER, "corr-1", None).unwrap();
    assert_eq!(envelope.message_type, message_type);
    assert_eq!(envelope.payload, payload, "{message_type}");
    let amqp = properties(&envelope, "test");
    assert_eq!(amqp.kind().as_ref().map(|t| t.as_str()), Some(message_type));
    let wire = serde_json::to_vec(&envelope).unwrap();
    let received: Envelope = serde_json::from_slice(&wire).unwrap();
    assert_eq!(received.decode::<C>().unwrap(), message, "{message_type}");
    envelope
}

/// Round-trips each sample and checks that together they cover every type of `C`, in order.
fn covers_all<C: Contract + std::fmt::Debug + PartialEq>(samples: Vec<(C, &str, Value)>) {
    let types: Vec<&str> = samples.iter().map(|(_, t, _)| *t).collect();
    assert_eq!(C::TYPES, types.as_slice());
    for (message, message_type, payload) in samples {
        round_trip(message, message_type, payload);
    }
}

#[test]
fn payment_commands_keep_their_wire_format() {
    covers_all(vec![
        (
            PaymentCommand::Charge(ChargePayment {
                order_id: ORDER,
                customer_id: "c-1".into(),
                amount_cents: 1250,
            }),
            "payment.charge",
            json!({"order_id": ORDER, "customer_id": "c-1", "amount_cents": 1250}),
        ),
        (
            PaymentCommand::Refund(RefundPayment {
                order_id: ORDER,
                customer_id: "c-1".into(),
            }),
            "payment.refund",
            json!({"order_id": ORDER, "customer_id": "c-1"}),
        ),
    ]);
}

#[test]
fn inventory_commands_keep_their_wire_format() {
    covers_all(vec![
        (
            InventoryCommand::Reserve(ReserveStock {
                order_id: ORDER,
                lines: vec![StockLine {
                    product_id: "p-1".into(),
                    quantity: 3,
                }],
            }),
            "inventory.reserve",
            json!({"order_id": ORDER, "lines": [{"product_id": "p-1", "quantity": 3}]}),
        ),
        (
            InventoryCommand::Release(ReleaseStock { order_id: ORDER }),
            "inventory.release",
            json!({"order_id": ORDER}),
        ),
    ]);
}

#[test]
fn replies_keep_their_wire_format() {
    let declined = |reason| {
        Reply::PaymentDeclined(PaymentDeclined {
            order_id: ORDER,
            reason,
        })
    };
    let failed = |reason| {
        Reply::StockReservationFailed(StockReservationFailed {
            order_id: ORDER,
            reason,
        })
    };
    covers_all(vec![
        (
            Reply::PaymentCharged(PaymentCharged {
                order_id: ORDER,
                payment_id: PAYMENT,
                amount_cents: 1250,
            }),
            "payment.charged",
            json!({"order_id": ORDER, "payment_id": PAYMENT, "amount_cents": 1250}),
        ),
        (
            declined(DeclineReason::InsufficientFunds),
            "payment.declined",
            json!({"order_id": ORDER, "reason": "insufficient_funds"}),
        ),
        (
            Reply::PaymentRefunded(PaymentRefunded {
                order_id: ORDER,
                refunded_cents: 0,
            }),
            "payment.refunded",
            json!({"order_id": ORDER, "refunded_cents": 0}),
        ),
        (
            Reply::StockReserved(StockReserved { order_id: ORDER }),
            "inventory.reserved",
            json!({"order_id": ORDER}),
        ),
        (
            failed(RejectionReason::OutOfStock),
            "inventory.reservation_failed",
            json!({"order_id": ORDER, "reason": "out_of_stock"}),
        ),
        (
            Reply::StockReleased(StockReleased { order_id: ORDER }),
            "inventory.released",
            json!({"order_id": ORDER}),
        ),
    ]);
    for (reason, text) in [
        (DeclineReason::NoAccount, "no_account"),
        (DeclineReason::Cancelled, "cancelled"),
    ] {
        let payload = json!({"order_id": ORDER, "reason": text});
        round_trip(declined(reason), "payment.declined", payload);
    }
    let payload = json!({"order_id": ORDER, "reason": "released_before_reserved"});
    let released_first = failed(RejectionReason::ReleasedBeforeReserved);
    round_trip(released_first, "inventory.reservation_failed", payload);
}

#[test]
fn order_events_keep_their_wire_format() {
    let failed = |reason| {
        OrderEvent::Failed(OrderFailed {
            order_id: ORDER,
            customer_id: "c-1".into(),
            reason,
        })
    };
    let failed_json =
        |reason: &str| json!({"order_id": ORDER, "customer_id": "c-1", "reason": reason});
    covers_all(vec![
        (
            OrderEvent::Completed(OrderCompleted {
                order_id: ORDER,
                customer_id: "c-1".into(),
                total_cents: 1250,
                lines: vec![OrderLine {
                    product_id: "sku-1".into(),
                    quantity: 2,
                    unit_price_cents: 625,
                }],
            }),
            "order.completed",
            json!({"order_id": ORDER, "customer_id": "c-1", "total_cents": 1250,
                   "lines": [{"product_id": "sku-1", "quantity": 2, "unit_price_cents": 625}]}),
        ),
        (
            failed(OrderFailureReason::PaymentDeclined),
            "order.failed",
            failed_json("payment_declined"),
        ),
    ]);
    for (reason, text) in [
        (OrderFailureReason::OutOfStock, "out_of_stock"),
        (OrderFailureReason::TimedOut, "timed_out"),
    ] {
        round_trip(failed(reason), "order.failed", failed_json(text));
    }
}

#[test]
fn a_payload_struct_builds_the_same_envelope_as_its_variant() {
    let released = StockReleased { order_id: ORDER };
    let bare = Envelope::new(&released, ORDER, "corr-1", None).unwrap();
    let wrapped = Envelope::new(&Reply::StockReleased(released), ORDER, "corr-1", None).unwrap();
    assert_eq!(
        (bare.message_type, bare.payload),
        (wrapped.message_type, wrapped.payload)
    );
    assert_eq!(StockReleased::TYPE, "inventory.released");
}

#[test]
fn messages_are_routed_by_their_type() {
    let charge = ChargePayment {
        order_id: ORDER,
        customer_id: "c-1".into(),
        amount_cents: 1,
    };
    let outgoing = OutgoingMessage::command(Envelope::new(&charge, ORDER, "c", None).unwrap());
    assert_eq!(outgoing.routing_key, "payment.charge");
    let bound: Vec<(&str, Vec<&str>)> = topology::work_queues()
        .into_iter()
        .map(|(queue, _, keys)| (queue, keys))
        .collect();
    assert_eq!(
        bound[0],
        (
            topology::PAYMENT_COMMANDS,
            vec!["payment.charge", "payment.refund"]
        )
    );
    assert_eq!(
        bound[1],
        (
            topology::INVENTORY_COMMANDS,
            vec!["inventory.reserve", "inventory.release"]
        )
    );
    assert_eq!(bound[2].1, Reply::TYPES);
}

/// The reason code the consumer dead-letters a message with.
fn dead_letter_reason(error: DecodeError) -> &'static str {
    match HandleError::from(error) {
        HandleError::Permanent { reason, .. } => reason,
        HandleError::Transient(detail) => panic!("transient: {detail}"),
    }
}

#[test]
fn an_unknown_type_is_an_unknown_message_type() {
    let exploded = Envelope::untyped("payment.exploded", ORDER, "c", None, &json!({})).unwrap();
    let error = exploded.decode::<PaymentCommand>().unwrap_err();
    assert!(matches!(&error, DecodeError::UnknownType(t) if t == "payment.exploded"));
    assert_eq!(dead_letter_reason(error), "unknown_message_type");

    // Another contract's type is just as unknown: a payment consumer takes no stock command.
    let release = Envelope::new(&ReleaseStock { order_id: ORDER }, ORDER, "c", None).unwrap();
    let error = release.decode::<PaymentCommand>().unwrap_err();
    assert_eq!(dead_letter_reason(error), "unknown_message_type");
}

#[test]
fn a_payload_that_does_not_fit_its_type_is_an_invalid_payload() {
    for payload in [
        json!({"order_id": ORDER}),
        json!({"order_id": ORDER, "reason": "bankrupt"}),
        json!("payment.declined"),
    ] {
        let envelope = Envelope::untyped("payment.declined", ORDER, "c", None, &payload).unwrap();
        let error = envelope.decode::<Reply>().unwrap_err();
        assert!(matches!(error, DecodeError::InvalidPayload(_)), "{payload}");
        assert_eq!(dead_letter_reason(error), "invalid_payload");
    }
}

#[test]
fn participant_events_keep_their_wire_format() {
    covers_all(vec![(
        AccountEvent::Updated(AccountUpdated {
            customer_id: "c-1".into(),
            email: Some("ada@example.com".into()),
        }),
        "account.updated",
        json!({"customer_id": "c-1", "email": "ada@example.com"}),
    )]);
    covers_all(vec![(
        StockEvent::LowStock(LowStock {
            product_id: "sku-1".into(),
            available: 4,
            threshold: 5,
        }),
        "inventory.low_stock",
        json!({"product_id": "sku-1", "available": 4, "threshold": 5}),
    )]);
}

#[test]
fn an_order_completed_without_lines_still_decodes() {
    let old = json!({"order_id": ORDER, "customer_id": "c-1", "total_cents": 1250});
    let OrderEvent::Completed(completed) = OrderEvent::decode("order.completed", &old).unwrap()
    else {
        panic!("not an order.completed");
    };
    assert!(completed.lines.is_empty());
}
