use serde_json::{Value, json};
use uuid::Uuid;

use saga_common::contracts::{self, Payload};
use saga_common::messaging::Envelope;
use saga_common::testing::peeked_header;

use crate::helpers::{release_command, reserve_command, spawn_app};

fn assert_reply(reply: &Envelope, message_type: &str, command: &Envelope) {
    assert_eq!(reply.message_type, message_type, "{reply:?}");
    assert_eq!(reply.saga_id, command.saga_id);
    assert_eq!(reply.causation_id, Some(command.message_id));
    assert_eq!(reply.payload["order_id"], command.saga_id.to_string());
}

/// `(product_id, quantity, status)` of each listed line, in the API's order.
fn summary(lines: &[Value]) -> Vec<(String, i64, String)> {
    lines
        .iter()
        .map(|line| {
            (
                line["product_id"].as_str().unwrap().to_owned(),
                line["quantity"].as_i64().unwrap(),
                line["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_reserve_command_takes_stock_and_replies_reserved() {
    let app = spawn_app().await;
    app.stock("p-1", 10).await;
    app.stock("p-2", 5).await;
    let mut replies = app.listen_for_replies().await;
    let order_id = Uuid::now_v7();
    let command = reserve_command(order_id, &[("p-1", 3), ("p-2", 5)]);

    app.send_command(&command).await;

    let answer = replies.next().await;
    assert_reply(&answer, contracts::StockReserved::TYPE, &command);
    assert_eq!(app.stock_of("p-1").await, (7, 3));
    assert_eq!(app.stock_of("p-2").await, (0, 5));
    let lines = app.reservation_lines(order_id).await;
    assert_eq!(
        summary(&lines),
        [
            ("p-1".to_owned(), 3, "RESERVED".to_owned()),
            ("p-2".to_owned(), 5, "RESERVED".to_owned()),
        ]
    );
    assert_eq!(lines[0]["order_id"], order_id.to_string());
    app.stop().await;
}

#[tokio::test]
async fn duplicate_product_lines_are_reserved_as_their_sum() {
    let app = spawn_app().await;
    app.stock("p-1", 10).await;
    let mut replies = app.listen_for_replies().await;
    let order_id = Uuid::now_v7();
    let command = reserve_command(order_id, &[("p-1", 2), ("p-1", 4)]);

    app.send_command(&command).await;

    assert_reply(
        &replies.next().await,
        contracts::StockReserved::TYPE,
        &command,
    );
    assert_eq!(app.stock_of("p-1").await, (4, 6));
    assert_eq!(
        summary(&app.reservation_lines(order_id).await),
        [("p-1".to_owned(), 6, "RESERVED".to_owned())]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_command_delivered_twice_has_one_effect_and_the_same_reply() {
    let app = spawn_app().await;
    app.stock("p-1", 10).await;
    let mut replies = app.listen_for_replies().await;
    let command = reserve_command(Uuid::now_v7(), &[("p-1", 4)]);

    app.send_command(&command).await;
    app.send_command(&command).await;

    let first = replies.next().await;
    let second = replies.next().await;
    assert_reply(&first, contracts::StockReserved::TYPE, &command);
    assert_eq!(
        second, first,
        "the duplicate is answered with the very same reply"
    );
    assert_eq!(app.stock_of("p-1").await, (6, 4));
    app.stop().await;
}

#[tokio::test]
async fn a_reserve_repeated_under_a_new_message_id_answers_with_the_recorded_outcome() {
    let app = spawn_app().await;
    app.stock("p-1", 10).await;
    let mut replies = app.listen_for_replies().await;
    let order_id = Uuid::now_v7();
    let first = reserve_command(order_id, &[("p-1", 4)]);
    let again = reserve_command(order_id, &[("p-1", 4)]);

    app.send_command(&first).await;
    assert_reply(
        &replies.next().await,
        contracts::StockReserved::TYPE,
        &first,
    );
    app.send_command(&again).await;

    assert_reply(
        &replies.next().await,
        contracts::StockReserved::TYPE,
        &again,
    );
    assert_eq!(app.stock_of("p-1").await, (6, 4));
    app.stop().await;
}

#[tokio::test]
async fn a_reservation_takes_all_lines_or_none_when_one_is_short() {
    let app = spawn_app().await;
    app.stock("p-1", 10).await;
    app.stock("p-2", 1).await;
    let mut replies = app.listen_for_replies().await;
    let order_id = Uuid::now_v7();
    let command = reserve_command(order_id, &[("p-1", 3), ("p-2", 2)]);

    app.send_command(&command).await;

    let answer = replies.next().await;
    assert_reply(&answer, contracts::StockReservationFailed::TYPE, &command);
    assert_eq!(answer.payload["reason"], "out_of_stock");
    assert_eq!(app.stock_of("p-1").await, (10, 0));
    assert_eq!(app.stock_of("p-2").await, (1, 0));
    assert!(app.reservation_lines(order_id).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_reservation_of_an_unknown_product_fails_out_of_stock() {
    let app = spawn_app().await;
    app.stock("p-1", 10).await;
    let mut replies = app.listen_for_replies().await;
    let command = reserve_command(Uuid::now_v7(), &[("p-1", 1), ("ghost", 1)]);

    app.send_command(&command).await;

    let answer = replies.next().await;
    assert_reply(&answer, contracts::StockReservationFailed::TYPE, &command);
    assert_eq!(answer.payload["reason"], "out_of_stock");
    assert_eq!(app.stock_of("p-1").await, (10, 0));
    app.stop().await;
}

#[tokio::test]
async fn concurrent_reservations_never_take_more_than_the_stock() {
    let app = spawn_app().await;
    app.stock("a", 5).await;
    app.stock("b", 5).await;
    let mut replies = app.listen_for_replies().await;
    // Lines in both orders, so the handlers (several run at once) contend on the same rows.
    let commands: Vec<Envelope> = (0..10)
        .map(|i| {
            let lines: &[(&str, i32)] = if i % 2 == 0 {
                &[("a", 1), ("b", 1)]
            } else {
                &[("b", 1), ("a", 1)]
            };
            reserve_command(Uuid::now_v7(), lines)
        })
        .collect();

    for command in &commands {
        app.send_command(command).await;
    }

    let mut reserved = 0;
    for _ in &commands {
        let answer = replies.next().await;
        if answer.message_type == contracts::StockReserved::TYPE {
            reserved += 1;
        } else {
            assert_eq!(answer.message_type, contracts::StockReservationFailed::TYPE);
            assert_eq!(answer.payload["reason"], "out_of_stock");
        }
    }
    assert_eq!(reserved, 5);
    assert_eq!(app.stock_of("a").await, (0, 5));
    assert_eq!(app.stock_of("b").await, (0, 5));
    app.stop().await;
}

#[tokio::test]
async fn a_release_gives_the_stock_back_exactly_once() {
    let app = spawn_app().await;
    app.stock("p-1", 10).await;
    app.stock("p-2", 10).await;
    let mut replies = app.listen_for_replies().await;
    let order_id = Uuid::now_v7();
    let reserve = reserve_command(order_id, &[("p-1", 3), ("p-2", 4)]);
    app.send_command(&reserve).await;
    assert_reply(
        &replies.next().await,
        contracts::StockReserved::TYPE,
        &reserve,
    );
    let release = release_command(order_id);
    let release_again = release_command(order_id);

    app.send_command(&release).await;
    assert_reply(
        &replies.next().await,
        contracts::StockReleased::TYPE,
        &release,
    );
    app.send_command(&release_again).await;
    assert_reply(
        &replies.next().await,
        contracts::StockReleased::TYPE,
        &release_again,
    );

    assert_eq!(app.stock_of("p-1").await, (10, 0));
    assert_eq!(app.stock_of("p-2").await, (10, 0));
    assert_eq!(
        summary(&app.reservation_lines(order_id).await),
        [
            ("p-1".to_owned(), 3, "RELEASED".to_owned()),
            ("p-2".to_owned(), 4, "RELEASED".to_owned()),
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_release_before_the_reserve_stops_the_late_reserve_from_taking_stock() {
    let app = spawn_app().await;
    app.stock("p-1", 10).await;
    let mut replies = app.listen_for_replies().await;
    let order_id = Uuid::now_v7();
    let release = release_command(order_id);
    let reserve = reserve_command(order_id, &[("p-1", 3)]);

    app.send_command(&release).await;
    assert_reply(
        &replies.next().await,
        contracts::StockReleased::TYPE,
        &release,
    );
    app.send_command(&reserve).await;

    let answer = replies.next().await;
    assert_reply(&answer, contracts::StockReservationFailed::TYPE, &reserve);
    assert_eq!(answer.payload["reason"], "released_before_reserved");
    assert_eq!(app.stock_of("p-1").await, (10, 0));
    assert!(app.reservation_lines(order_id).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_message_ends_in_the_dead_letter_queue_as_malformed() {
    let app = spawn_app().await;

    app.publish_command_bytes("inventory.reserve", b"this is not json")
        .await;

    let dead = app.dead_letters(1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        peeked_header(&dead[0], "x-dead-letter-reason"),
        Some("malformed_message")
    );
    assert_eq!(peeked_header(&dead[0], "x-service"), Some("inventory"));
    assert_eq!(
        peeked_header(&dead[0], "x-original-queue"),
        Some("inventory.commands")
    );
    assert_eq!(dead[0]["payload"], "this is not json");
    app.stop().await;
}

#[tokio::test]
async fn a_reserve_without_lines_ends_in_the_dead_letter_queue_as_an_invalid_payload() {
    let app = spawn_app().await;
    app.stock("p-1", 10).await;
    let command = reserve_command(Uuid::now_v7(), &[]);

    app.send_command(&command).await;

    let dead = app.dead_letters(1).await;
    assert_eq!(
        peeked_header(&dead[0], "x-dead-letter-reason"),
        Some("invalid_payload")
    );
    assert_eq!(app.stock_of("p-1").await, (10, 0));
    app.stop().await;
}

#[tokio::test]
async fn a_command_of_an_unknown_type_ends_in_the_dead_letter_queue() {
    let app = spawn_app().await;
    let mut command = reserve_command(Uuid::now_v7(), &[("p-1", 1)]);
    command.message_type = "inventory.restock".to_owned();
    command.payload = json!({});

    app.send_command_as("inventory.reserve", &command).await;

    let dead = app.dead_letters(1).await;
    assert_eq!(
        peeked_header(&dead[0], "x-dead-letter-reason"),
        Some("unknown_message_type")
    );
    app.stop().await;
}

#[tokio::test]
async fn batches_sharing_products_in_opposite_orders_all_commit_without_a_deadlock() {
    use inventory::commands::InventoryCommands;
    use saga_common::messaging::handle;
    use saga_common::messaging::outbox::RelayWakeup;

    let app = spawn_app().await;
    let products = ["p-a", "p-b", "p-c", "p-d"];
    for product in products {
        app.stock(product, 1_000).await;
    }
    let db = sea_orm::Database::connect(app.database_url.clone())
        .await
        .unwrap();
    // Twenty batches at once, each reserving over the same products, half of them naming the
    // products back to front: one at a time per message, these lock products in opposite
    // orders; as a batch they are locked in one order.
    let batches: Vec<Vec<Envelope>> = (0..20)
        .map(|i| {
            (0..4)
                .map(|j| {
                    let mut lines: Vec<(&str, i32)> = products.iter().map(|p| (*p, 1)).collect();
                    if (i + j) % 2 == 1 {
                        lines.reverse();
                    }
                    lines.rotate_left(j % 4);
                    reserve_command(Uuid::now_v7(), &lines)
                })
                .collect()
        })
        .collect();

    let wakeup = RelayWakeup::default();

    let outcomes = futures_util::future::join_all(
        batches
            .iter()
            .map(|batch| handle(&db, &wakeup, &InventoryCommands, batch)),
    )
    .await;

    for outcome in outcomes {
        outcome.expect("every batch commits on its first try");
    }
    for product in products {
        assert_eq!(app.stock_of(product).await, (1_000 - 80, 80), "{product}");
    }
    app.stop().await;
}
