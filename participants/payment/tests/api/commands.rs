use lapin::BasicProperties;
use uuid::Uuid;

use saga_common::contracts::{self, Payload};
use saga_common::messaging::topology;
use saga_common::testing::{PATIENCE, eventually, lifecycle_lines, peeked_header, publish_raw};

use crate::helpers::{charge, refund, spawn_app};

#[tokio::test]
async fn a_charge_debits_the_account_and_replies_charged() {
    let app = spawn_app().await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    let order = Uuid::now_v7();

    let command = charge(order, "c-1", 400);
    app.send_command(&command).await;

    let answer = replies.next().await;
    assert_eq!(answer.message_type, contracts::PaymentCharged::TYPE);
    assert_eq!(answer.saga_id, order);
    assert_eq!(answer.causation_id, Some(command.message_id));
    assert_eq!(answer.correlation_id, "test-correlation");
    assert_eq!(answer.payload["amount_cents"], 400);
    assert_eq!(app.balance("c-1").await, 600);
    let payments = app.payments(order).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "CHARGED");
}

#[tokio::test]
async fn a_charge_the_balance_does_not_cover_is_declined_and_takes_nothing() {
    let app = spawn_app().await;
    app.fund("c-1", 399).await;
    let mut replies = app.replies().await;
    let order = Uuid::now_v7();

    app.send_command(&charge(order, "c-1", 400)).await;

    let answer = replies.next().await;
    assert_eq!(answer.message_type, contracts::PaymentDeclined::TYPE);
    assert_eq!(answer.payload["reason"], "insufficient_funds");
    assert_eq!(app.balance("c-1").await, 399);
    assert_eq!(app.payments(order).await[0]["status"], "DECLINED");
    // Said once the batch committed, before the reply left: no wait needed.
    let declined = lifecycle_lines().of_order("payment.declined", order);
    assert_eq!(declined.len(), 1, "{declined:?}");
    assert_eq!(declined[0]["reason"], "insufficient_funds");
    assert_eq!(declined[0]["correlation_id"], "test-correlation");
}

#[tokio::test]
async fn a_command_delivered_twice_has_one_effect_and_the_same_reply() {
    let app = spawn_app().await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    let command = charge(Uuid::now_v7(), "c-1", 300);

    app.send_command(&command).await;
    let first = replies.next().await;
    app.send_command(&command).await;
    let second = replies.next().await;

    // The duplicate is answered again, with the very reply recorded the first time.
    assert_eq!(first, second);
    assert_eq!(app.balance("c-1").await, 700, "charged once");
    assert_eq!(app.payments(command.saga_id).await.len(), 1);
    // ... and reported once: the duplicate, answered from the inbox, says nothing.
    let charged = lifecycle_lines().of_order("payment.charged", command.saga_id);
    assert_eq!(charged.len(), 1, "{charged:?}");
    assert_eq!(charged[0]["amount_cents"], 300);
}

#[tokio::test]
async fn a_repeated_charge_under_a_new_message_id_is_answered_from_the_record() {
    let app = spawn_app().await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    let order = Uuid::now_v7();

    app.send_command(&charge(order, "c-1", 300)).await;
    let first = replies.next().await;
    app.send_command(&charge(order, "c-1", 300)).await;
    let second = replies.next().await;

    assert_eq!(second.message_type, contracts::PaymentCharged::TYPE);
    assert_eq!(second.payload["payment_id"], first.payload["payment_id"]);
    assert_eq!(app.balance("c-1").await, 700);
}

#[tokio::test]
async fn a_refund_credits_back_exactly_once() {
    let app = spawn_app().await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    let order = Uuid::now_v7();
    app.send_command(&charge(order, "c-1", 250)).await;
    replies.next().await;

    app.send_command(&refund(order, "c-1")).await;
    let first = replies.next().await;
    app.send_command(&refund(order, "c-1")).await; // a second refund command, new message id
    let second = replies.next().await;

    assert_eq!(first.message_type, contracts::PaymentRefunded::TYPE);
    assert_eq!(first.payload["refunded_cents"], 250);
    assert_eq!(second.payload["refunded_cents"], 250);
    assert_eq!(app.balance("c-1").await, 1_000);
    assert_eq!(app.payments(order).await[0]["status"], "REFUNDED");
}

#[tokio::test]
async fn refunding_what_was_never_charged_is_harmless_and_closes_the_order_to_charges() {
    let app = spawn_app().await;
    app.fund("c-1", 1_000).await;
    let mut replies = app.replies().await;
    let order = Uuid::now_v7();

    app.send_command(&refund(order, "c-1")).await;
    let answer = replies.next().await;
    assert_eq!(answer.message_type, contracts::PaymentRefunded::TYPE);
    assert_eq!(answer.payload["refunded_cents"], 0);

    // The charge overtaken by the refund arrives late: it must not take money.
    app.send_command(&charge(order, "c-1", 400)).await;
    let late = replies.next().await;
    assert_eq!(late.message_type, contracts::PaymentDeclined::TYPE);
    assert_eq!(late.payload["reason"], "cancelled");
    assert_eq!(app.balance("c-1").await, 1_000);
}

#[tokio::test]
async fn commands_that_cannot_be_handled_are_dead_lettered_with_a_reason() {
    let app = spawn_app().await;
    app.fund("c-1", 1_000).await;
    publish_raw(
        &app.vhost.amqp_url,
        topology::COMMANDS_EXCHANGE,
        contracts::ChargePayment::TYPE,
        b"not json at all",
        BasicProperties::default(),
    )
    .await;
    let mut negative = charge(Uuid::now_v7(), "c-1", -5);
    negative.payload["amount_cents"] = (-5).into();
    app.send_command(&negative).await;

    let dlq = topology::dead_letter_queue(topology::PAYMENT_COMMANDS);
    let reasons = eventually("two dead letters", PATIENCE, || async {
        let messages = app.vhost.peek(&dlq, 10).await;
        let reasons: Vec<String> = messages
            .iter()
            .filter_map(|m| peeked_header(m, "x-dead-letter-reason").map(str::to_owned))
            .collect();
        (reasons.len() == 2).then_some(reasons)
    })
    .await;
    assert!(reasons.contains(&"malformed_message".to_owned()));
    assert!(reasons.contains(&"invalid_payload".to_owned()));
    assert_eq!(app.balance("c-1").await, 1_000);
}

#[tokio::test]
async fn batches_charging_shared_accounts_in_opposite_orders_all_commit_without_a_deadlock() {
    use payment::commands::PaymentCommands;
    use saga_common::messaging::outbox::RelayWakeup;
    use saga_common::messaging::{Envelope, handle};

    let app = spawn_app().await;
    let customers = ["c-a", "c-b", "c-c", "c-d"];
    for customer in customers {
        app.fund(customer, 1_000).await;
    }
    let db = sea_orm::Database::connect(app.database_url.as_str())
        .await
        .unwrap();
    // Twenty batches at once, each charging every customer once, half of them in the reverse
    // order: one at a time per message these would lock accounts in opposite orders; as a batch
    // they are locked in one order.
    let batches: Vec<Vec<Envelope>> = (0..20)
        .map(|i| {
            let mut order: Vec<&str> = customers.to_vec();
            if i % 2 == 1 {
                order.reverse();
            }
            order
                .into_iter()
                .map(|customer| charge(Uuid::now_v7(), customer, 10))
                .collect()
        })
        .collect();

    let wakeup = RelayWakeup::default();

    let outcomes = futures_util::future::join_all(
        batches
            .iter()
            .map(|batch| handle(&db, &wakeup, &PaymentCommands, batch)),
    )
    .await;

    for outcome in outcomes {
        outcome.expect("every batch commits on its first try");
    }
    for customer in customers {
        assert_eq!(app.balance(customer).await, 1_000 - 20 * 10, "{customer}");
    }
}
