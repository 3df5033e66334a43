//! Dead letters: a charge command that failed for good (as the payment consumer dead-letters it,
//! with its headers) is shown in its group, opened, replayed, and leaves the list and the DLQ;
//! payment then applies it.

use chrono::Utc;
use lapin::BasicProperties;
use lapin::types::AMQPValue;
use serde_json::{Value, json};
use uuid::Uuid;

use saga_common::messaging::envelope::{self, Envelope, long_string};
use saga_common::messaging::{headers, topology};
use saga_common::testing::{PATIENCE, eventually, publish_raw};

use crate::browser::{Browser, turn};
use crate::helpers::{TestFleet, spawn_console_fleet};

const REASON: &str = "retries_exhausted";

/// Puts a valid `payment.charge` for `order_id` into payment's DLQ, as if its handler had failed
/// until the attempts ran out; returns its message id.
async fn dead_letter_a_charge(fleet: &TestFleet, order_id: Uuid, customer: &str) -> String {
    let message = Envelope::untyped(
        "payment.charge",
        order_id,
        &format!("dlq-{order_id}"),
        None,
        &json!({"order_id": order_id, "customer_id": customer, "amount_cents": 700}),
    )
    .unwrap();
    let properties = envelope::properties(&message, "orchestrator");
    let mut table = properties.headers().clone().unwrap_or_default();
    let now = Utc::now().to_rfc3339();
    for (name, value) in [
        (headers::REASON, REASON),
        (headers::ERROR, "the ledger was unreachable"),
        (headers::SERVICE, "payment"),
        (headers::FIRST_FAILED_AT, now.as_str()),
        (headers::LAST_FAILED_AT, now.as_str()),
        (headers::FAILED_AT, now.as_str()),
        (headers::ORIGINAL_EXCHANGE, topology::COMMANDS_EXCHANGE),
        (headers::ORIGINAL_ROUTING_KEY, "payment.charge"),
        (headers::ORIGINAL_QUEUE, topology::PAYMENT_COMMANDS),
    ] {
        table.insert(name.into(), long_string(value));
    }
    table.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(5));
    publish_raw(
        &fleet.vhost.amqp_url,
        topology::DEAD_LETTER_EXCHANGE,
        &topology::dead_letter_queue(topology::PAYMENT_COMMANDS),
        &serde_json::to_vec(&message).unwrap(),
        BasicProperties::with_headers(properties, table),
    )
    .await;
    message.message_id.to_string()
}

async fn payment_dead_letters(fleet: &TestFleet) -> Value {
    fleet
        .get(format!("{}/api/admin/dead-letters", fleet.payment.base))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dead_letter_is_shown_replayed_and_leaves_the_list() {
    let _turn = turn().await;
    let fleet = spawn_console_fleet().await;
    fleet.set_balance("dlq-cy", 10_000).await;
    let order_id = Uuid::new_v4();
    let message_id = dead_letter_a_charge(&fleet, order_id, "dlq-cy").await;
    eventually("the dead letter to be listed", PATIENCE, || async {
        (payment_dead_letters(&fleet).await["total"] == 1).then_some(())
    })
    .await;
    let browser = Browser::start().await;
    browser.sign_in(&fleet.orchestrator.base).await;

    browser.click("nav#nav a[data-nav=dead-letters]").await;
    browser.wait_page("dead-letters").await;
    let group = format!("#dl-groups tr[data-service=payment][data-reason={REASON}]");
    let count = browser.text(&group).await;
    assert!(count.contains("payment.commands.dlq"), "{count:?}");
    browser.click(&format!("{group} button.dl-show")).await;
    let row = format!("#dl-messages tr[data-message-id='{message_id}']");
    browser.wait_for(&row).await;
    browser.click(&format!("{row} button.dl-view")).await;
    let shown = browser
        .wait_text("#dl-message", "the message", |t| {
            t.contains("payment.charge")
        })
        .await;
    for expected in ["the ledger was unreachable", "dlq-cy"] {
        assert!(shown.contains(expected), "{expected:?} not in {shown:?}");
    }
    browser.screenshot("dead-letters").await;

    browser.click(&format!("{row} button.dl-replay")).await;
    browser.confirm().await;
    browser
        .wait_text("#dl-result", "the replay reported", |t| {
            !t.trim().is_empty()
        })
        .await;
    browser.wait_gone(&row).await;
    eventually("the DLQ to be empty", PATIENCE, || async {
        (payment_dead_letters(&fleet).await["total"] == 0).then_some(())
    })
    .await;
    // Replayed for real: payment applied the charge.
    eventually("the replayed charge to be applied", PATIENCE, || async {
        (!fleet.payments(order_id).await.is_empty()).then_some(())
    })
    .await;
}
