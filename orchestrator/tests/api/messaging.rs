use std::slice;

use chrono::Utc;
use lapin::BasicProperties;
use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;
use sea_orm::Database;
use serde_json::{Value, json};
use uuid::Uuid;

use orchestrator::admission::Admission;
use orchestrator::orders::model::{Order, OrderItem};
use orchestrator::orders::store;
use orchestrator::saga::SagaState;
use orchestrator::saga::replies::SagaReplies;
use orchestrator::saga::status::StateName;
use orchestrator::saga::store::{self as sagas, Step};
use orchestrator::saga::timeline;
use saga_common::contracts::{self, Payload};
use saga_common::messaging::outbox::RelayWakeup;
use saga_common::messaging::{Envelope, HandleError, MessageHandler, OutgoingMessage, topology};
use saga_common::testing::{
    PATIENCE, create_database, eventually, peeked_header, publish_envelope, publish_raw,
};
use sea_orm_migration::MigratorTrait;

use crate::helpers::{database, order_body, query_one, spawn_fleet};

/// Applies `batch` as the consumer does, with no relay to hand the outbox rows to.
pub(crate) async fn handle(
    db: &sea_orm::DatabaseConnection,
    handler: &impl MessageHandler,
    batch: &[Envelope],
) -> Result<(), HandleError> {
    saga_common::messaging::handle(db, &RelayWakeup::default(), handler, batch).await
}

#[tokio::test]
async fn a_lost_reply_is_recovered_by_resending_the_command() {
    let fleet = spawn_fleet().await;
    fleet.set_balance("kim", 10_000).await;
    fleet.set_stock("desk", 3).await;

    // Lose the payment's reply: while unbound, `payment.charged` is routed nowhere.
    let connection = lapin::Connection::connect(&fleet.vhost.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_unbind(
            topology::ORCHESTRATOR_REPLIES.into(),
            topology::REPLIES_EXCHANGE.into(),
            contracts::PaymentCharged::TYPE.into(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let order_id = fleet.place(&order_body("kim", "desk", 1, 4_000)).await;
    let payment_db = database(&fleet.payment.db_url).await;
    eventually(
        "the charge reply to be published (and lost)",
        PATIENCE,
        || async {
            let sent = query_one(
                &payment_db,
                "SELECT to_json(count(*)) AS row FROM outbox o WHERE saga_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.id = o.id)",
                vec![order_id.into()],
            )
            .await;
            (sent.as_i64() == Some(1)).then_some(())
        },
    )
    .await;
    assert_eq!(fleet.balance("kim").await, 6_000, "the charge happened");
    assert_eq!(
        fleet.order(order_id).await["status"],
        "PENDING",
        "but the saga never heard"
    );

    // Restore the route and resend the very same command (same message id).
    channel
        .queue_bind(
            topology::ORCHESTRATOR_REPLIES.into(),
            topology::REPLIES_EXCHANGE.into(),
            contracts::PaymentCharged::TYPE.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let orchestrator_db = database(&fleet.orchestrator.db_url).await;
    let command = query_one(
        &orchestrator_db,
        "SELECT body::jsonb AS row FROM outbox WHERE saga_id = $1 AND message_type = 'payment.charge'",
        vec![order_id.into()],
    )
    .await;
    let command: Envelope = serde_json::from_value(command).unwrap();
    publish_envelope(&fleet.vhost.amqp_url, &OutgoingMessage::command(command)).await;

    let order = fleet.wait_final(order_id).await;
    assert_eq!(order["status"], "COMPLETED");
    assert_eq!(fleet.balance("kim").await, 6_000, "charged exactly once");
    assert_eq!(fleet.payments(order_id).await.len(), 1);
    assert_eq!(fleet.stock("desk").await, (2, 1));
}

/// An orchestrator database with one order awaiting payment, and the reply handler over it.
pub(crate) async fn saga_awaiting_payment() -> (SagaReplies, sea_orm::DatabaseConnection, Order) {
    saga_common::testing::init_test_telemetry();
    let db = Database::connect(create_database("orchestrator").await)
        .await
        .unwrap();
    orchestrator::migration::Migrator::up(&db, None)
        .await
        .unwrap();
    let now = Utc::now();
    let order = Order {
        order_id: Uuid::now_v7(),
        customer_id: "lee".into(),
        items: vec![OrderItem {
            product_id: "p".into(),
            quantity: 1,
            unit_price_cents: 10,
        }],
        total_cents: 10,
        state: SagaState::AwaitingPayment,
        correlation_id: "c".into(),
        idempotency_key: None,
        created_at: now,
        updated_at: now,
        traceparent: None,
    };
    let step = Step {
        to: order.state,
        deadline_at: None,
        resends: 0,
        pending_message_id: None,
    };
    store::insert_all(&db, &[(&order, &step)]).await.unwrap();
    (
        SagaReplies {
            settings: Default::default(),
            admission: Admission::new(&Default::default()),
        },
        db,
        order,
    )
}

pub(crate) fn charged(order: &Order) -> Envelope {
    Envelope::new(
        &contracts::PaymentCharged {
            order_id: order.order_id,
            payment_id: Uuid::now_v7(),
            amount_cents: order.total_cents,
        },
        order.order_id,
        "c",
        None,
    )
    .unwrap()
}

async fn count(db: &sea_orm::DatabaseConnection, sql: &str, order_id: Uuid) -> i64 {
    query_one(
        db,
        &format!("SELECT to_json(count(*)) AS row FROM {sql}"),
        vec![order_id.into()],
    )
    .await
    .as_i64()
    .unwrap()
}

/// The saga took the charged step once: one transition, version 1.
async fn assert_charged_once(db: &sea_orm::DatabaseConnection, order: &Order) {
    let stored = sagas::find(db, order.order_id).await.unwrap().unwrap();
    assert_eq!(stored.state, SagaState::AwaitingStock);
    assert_eq!(stored.version, 1);
    assert_eq!(
        count(db, "saga_transitions WHERE order_id = $1", order.order_id).await,
        1
    );
}

#[tokio::test]
async fn a_reply_delivered_twice_moves_the_saga_once() {
    let (handler, db, order) = saga_awaiting_payment().await;
    let reply = charged(&order);

    handle(&db, &handler, slice::from_ref(&reply))
        .await
        .unwrap();
    handle(&db, &handler, slice::from_ref(&reply))
        .await
        .unwrap();

    assert_charged_once(&db, &order).await;
    assert_eq!(
        count(
            &db,
            "outbox WHERE saga_id = $1 AND message_type = 'inventory.reserve'",
            order.order_id
        )
        .await,
        1
    );
}

#[tokio::test]
async fn two_consumers_racing_on_one_saga_apply_one_transition() {
    let (handler, db, order) = saga_awaiting_payment().await;
    // Two distinct charged replies (say, a resent command answered twice) handled at once.
    let (a, b) = (charged(&order), charged(&order));

    let (first, second) = tokio::join!(
        handle(&db, &handler, slice::from_ref(&a)),
        handle(&db, &handler, slice::from_ref(&b))
    );
    first.unwrap();
    second.unwrap();

    let stored = sagas::find(&db, order.order_id).await.unwrap().unwrap();
    assert_eq!(stored.state, SagaState::AwaitingStock);
    assert_eq!(stored.version, 1);
    assert_eq!(
        count(
            &db,
            "outbox WHERE saga_id = $1 AND message_type = 'inventory.reserve'",
            order.order_id
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_reply_that_contradicts_the_saga_is_refused_and_changes_nothing() {
    let (handler, db, order) = saga_awaiting_payment().await;
    let reserved = Envelope::new(
        &contracts::StockReserved {
            order_id: order.order_id,
        },
        order.order_id,
        "c",
        None,
    )
    .unwrap();

    let error = handle(&db, &handler, slice::from_ref(&reserved))
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with("invalid_transition"),
        "{error}"
    );
    let stored = sagas::find(&db, order.order_id).await.unwrap().unwrap();
    assert_eq!(stored.state, SagaState::AwaitingPayment);
    let inbox = query_one(&db, "SELECT to_json(count(*)) AS row FROM inbox", vec![]).await;
    assert_eq!(inbox, 0, "nothing committed");
}

pub(crate) fn reserved(order: &Order) -> Envelope {
    Envelope::new(
        &contracts::StockReserved {
            order_id: order.order_id,
        },
        order.order_id,
        "c",
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn two_replies_for_one_saga_in_one_batch_step_it_twice_in_order() {
    let (handler, db, order) = saga_awaiting_payment().await;

    handle(&db, &handler, &[charged(&order), reserved(&order)])
        .await
        .unwrap();

    let stored = sagas::find(&db, order.order_id).await.unwrap().unwrap();
    assert_eq!(stored.state, SagaState::Completed);
    assert_eq!(stored.version, 2);
    let timeline = timeline::timeline(&db, order.order_id).await.unwrap();
    let steps: Vec<(Option<StateName>, StateName)> = timeline
        .iter()
        .map(|t| (t.from_state, t.to_state))
        .collect();
    assert_eq!(
        steps,
        vec![
            (Some(StateName::AwaitingPayment), StateName::AwaitingStock),
            (Some(StateName::AwaitingStock), StateName::Completed)
        ]
    );
    for message_type in ["inventory.reserve", "order.completed"] {
        assert_eq!(
            count(
                &db,
                &format!("outbox WHERE saga_id = $1 AND message_type = '{message_type}'"),
                order.order_id
            )
            .await,
            1,
            "{message_type}"
        );
    }
}

#[tokio::test]
async fn a_reply_twice_in_one_batch_is_applied_once() {
    let (handler, db, order) = saga_awaiting_payment().await;
    let reply = charged(&order);

    handle(&db, &handler, &[reply.clone(), reply])
        .await
        .unwrap();

    assert_charged_once(&db, &order).await;
}

#[tokio::test]
async fn a_batch_with_a_reply_for_an_unknown_saga_commits_nothing() {
    let (handler, db, order) = saga_awaiting_payment().await;
    let mut stranger = charged(&order);
    stranger.saga_id = Uuid::now_v7();
    stranger.message_id = Uuid::now_v7();

    let error = handle(&db, &handler, &[charged(&order), stranger])
        .await
        .unwrap_err();

    assert!(error.to_string().starts_with("unknown_saga"), "{error}");
    let stored = sagas::find(&db, order.order_id).await.unwrap().unwrap();
    assert_eq!(stored.state, SagaState::AwaitingPayment);
    let inbox = query_one(&db, "SELECT to_json(count(*)) AS row FROM inbox", vec![]).await;
    assert_eq!(inbox, 0, "nothing committed");
}

async fn dead_letter_of(fleet: &crate::helpers::TestFleet, queue: &str, reason: &str) -> Value {
    let dlq = topology::dead_letter_queue(queue);
    eventually(
        &format!("a `{reason}` message in {dlq}"),
        PATIENCE,
        || async {
            fleet
                .vhost
                .peek(&dlq, 50)
                .await
                .into_iter()
                .find(|m| peeked_header(m, "x-dead-letter-reason") == Some(reason))
        },
    )
    .await
}

#[tokio::test]
async fn a_malformed_reply_lands_in_the_dlq_with_its_reason() {
    let fleet = spawn_fleet().await;
    publish_raw(
        &fleet.vhost.amqp_url,
        topology::REPLIES_EXCHANGE,
        contracts::PaymentCharged::TYPE,
        b"{ this is not json",
        BasicProperties::default(),
    )
    .await;

    let dead = dead_letter_of(&fleet, topology::ORCHESTRATOR_REPLIES, "malformed_message").await;
    assert_eq!(dead["payload"], "{ this is not json");
    assert_eq!(peeked_header(&dead, "x-service"), Some("orchestrator"));
    assert_eq!(
        peeked_header(&dead, "x-original-routing-key"),
        Some(contracts::PaymentCharged::TYPE)
    );
    assert!(peeked_header(&dead, "x-error").is_some_and(|e| !e.is_empty()));
    assert!(peeked_header(&dead, "x-failed-at").is_some());

    // The consumer is still alive and well.
    fleet.set_balance("max", 100).await;
    fleet.set_stock("pen", 1).await;
    let order_id = fleet.place(&order_body("max", "pen", 1, 100)).await;
    assert_eq!(fleet.wait_final(order_id).await["status"], "COMPLETED");
}

#[tokio::test]
async fn a_message_of_unknown_type_or_for_an_unknown_saga_is_dead_lettered() {
    let fleet = spawn_fleet().await;
    let saga_id = Uuid::now_v7();
    let unknown_type =
        Envelope::untyped("payment.exploded", saga_id, "c", None, &json!({})).unwrap();
    publish_envelope(
        &fleet.vhost.amqp_url,
        &OutgoingMessage {
            exchange: topology::REPLIES_EXCHANGE.into(),
            routing_key: contracts::PaymentCharged::TYPE.into(),
            envelope: unknown_type,
        },
    )
    .await;
    let unknown_saga = Envelope::new(
        &contracts::PaymentDeclined {
            order_id: saga_id,
            reason: contracts::DeclineReason::NoAccount,
        },
        saga_id,
        "c",
        None,
    )
    .unwrap();
    publish_envelope(&fleet.vhost.amqp_url, &OutgoingMessage::reply(unknown_saga)).await;
    let bad_payload = Envelope::untyped(
        contracts::StockReserved::TYPE,
        saga_id,
        "c",
        None,
        &json!({"nope": 1}),
    )
    .unwrap();
    publish_envelope(&fleet.vhost.amqp_url, &OutgoingMessage::reply(bad_payload)).await;

    dead_letter_of(
        &fleet,
        topology::ORCHESTRATOR_REPLIES,
        "unknown_message_type",
    )
    .await;
    dead_letter_of(&fleet, topology::ORCHESTRATOR_REPLIES, "unknown_saga").await;
    dead_letter_of(&fleet, topology::ORCHESTRATOR_REPLIES, "invalid_payload").await;
}

#[tokio::test]
async fn a_malformed_command_lands_in_the_participants_dlq() {
    let fleet = spawn_fleet().await;
    publish_raw(
        &fleet.vhost.amqp_url,
        topology::COMMANDS_EXCHANGE,
        contracts::ChargePayment::TYPE,
        b"\x00\x01binary",
        BasicProperties::default(),
    )
    .await;
    let dead = dead_letter_of(&fleet, topology::PAYMENT_COMMANDS, "malformed_message").await;
    assert_eq!(peeked_header(&dead, "x-service"), Some("payment"));
}
