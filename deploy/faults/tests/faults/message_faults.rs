//! Messages that arrive twice, messages that can never be handled, and a message that fails
//! until an operator fixes its cause and replays it.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::duplicator::Duplicator;
use crate::harness::eventually;
use crate::harness::fleet::{Api, FleetOptions, Service};
use crate::invariants::Expectations;
use crate::poison;
use crate::scenario::Scenario;
use crate::stream::{AcceptedOrder, Line, StreamPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_end_and_balance_when_every_command_and_reply_is_delivered_twice() {
    let mut scenario = Scenario::begin("every message twice", FleetOptions::default()).await;
    let duplicator = Duplicator::start(&scenario.fleet.rabbitmq.amqp_url()).await;

    let ledger = scenario.stream(StreamPlan::default()).finish().await;
    scenario.check(&ledger, &Expectations::default()).await;

    // Each order takes at least a command and its reply; all were doubled.
    assert!(
        duplicator.duplicated() >= 2 * ledger.accepted.len(),
        "only {} messages were duplicated for {} orders",
        duplicator.duplicated(),
        ledger.accepted.len()
    );
}

/// The amount the payment database is made to refuse: no order of the stream costs this much.
const REFUSED_AMOUNT: i64 = 4_242;

/// Makes the payment database refuse every charge of [`REFUSED_AMOUNT`]: a statement that fails
/// while the database answers, which the consumer retries and then dead-letters as
/// `retries_exhausted`. `NOT VALID`: existing rows are not checked, new ones are.
fn refuse_charges() -> String {
    format!(
        "ALTER TABLE payments ADD CONSTRAINT faults_refuse_charges \
         CHECK (amount_cents <> {REFUSED_AMOUNT}) NOT VALID"
    )
}

/// The operator's fix.
const ACCEPT_CHARGES: &str = "ALTER TABLE payments DROP CONSTRAINT faults_refuse_charges";

/// Places the order the payment database refuses, outside the stream, and returns it as the
/// ledger records orders.
async fn place_refused_order(api: &Api) -> AcceptedOrder {
    let lines = vec![Line {
        product_id: "widget".to_owned(),
        quantity: 1,
        unit_price_cents: REFUSED_AMOUNT,
    }];
    let key = format!("faults-refused-{}", Uuid::new_v4().simple());
    let body = json!({
        "customer_id": "rich-0",
        "items": [{"product_id": "widget", "quantity": 1, "unit_price_cents": REFUSED_AMOUNT}],
    });
    let order_id = api
        .place_order(0, &body, &key)
        .await
        .unwrap_or_else(|e| panic!("the refused order was not accepted: {e}"));
    AcceptedOrder {
        order_id,
        idempotency_key: key,
        customer_id: "rich-0".to_owned(),
        lines,
    }
}

/// Waits until `service`'s DLQ (through its admin API) holds a message of saga `order_id`, and
/// returns it.
async fn dead_letter_of(api: &Api, service: Service, order_id: Uuid) -> Value {
    eventually(
        &format!("a dead letter of order {order_id} at {}", service.name()),
        Duration::from_secs(60),
        || async {
            let letters = api.dead_letters(service).await.ok()?;
            letters
                .into_iter()
                .find(|l| l["payload"]["saga_id"] == json!(order_id))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_lands_in_each_dead_letter_queue_and_a_fixed_message_replays_while_the_stream_flows()
{
    // Retries 0.2 s, 0.4 s, 0.8 s, 1.6 s apart: the refused charge reaches the DLQ in seconds.
    let options = FleetOptions::default()
        .with_retry_base_delay(200)
        // The refused order waits for its replay, not for the timeout worker.
        .with_setting(
            Service::Orchestrator,
            "SAGA__AWAITING_PAYMENT_TIMEOUT_MS",
            600_000,
        );
    let mut scenario = Scenario::begin("poison and replay", options).await;
    scenario
        .fleet
        .execute_sql(Service::Payment, &refuse_charges())
        .await;
    let mut stream = scenario.stream(StreamPlan::default());

    stream.accepted(30).await;
    let injected = poison::inject(&scenario.fleet.rabbitmq.amqp_url()).await;
    let refused = place_refused_order(&scenario.fleet.api).await;
    scenario.mark("poison injected, refused order placed");

    // The refused charge is retried, then dead-lettered with its reason; the saga waits.
    let api = scenario.fleet.api.clone();
    let letter = dead_letter_of(&api, Service::Payment, refused.order_id).await;
    scenario.mark("refused charge dead-lettered");
    assert_eq!(letter["reason"], "retries_exhausted", "{letter}");
    let order = api
        .order(refused.order_id)
        .await
        .expect("the refused order");
    assert_eq!(order["status"], "PENDING", "{order}");

    // The operator fixes the cause and replays that one message.
    scenario
        .fleet
        .execute_sql(Service::Payment, ACCEPT_CHARGES)
        .await;
    let message_id = letter["message_id"]
        .as_str()
        .expect("the dead letter has a message id")
        .to_owned();
    let report = api
        .replay_dead_letters(Service::Payment, &[message_id])
        .await
        .expect("the replay request");
    assert_eq!(report["replayed"], 1, "{report}");
    scenario.mark("fixed charge replayed");

    let mut ledger = stream.finish().await;
    ledger.accepted.push(refused.clone());
    let expect = Expectations {
        dead_letters: injected,
        ..Expectations::default()
    };
    let report = scenario.check(&ledger, &expect).await;
    assert_eq!(
        report.orders[&refused.order_id]["status"], "COMPLETED",
        "the replayed charge completed its order"
    );

    // Every poison message carries the reason it was refused for.
    let mut reasons: Vec<String> = Vec::new();
    for service in Service::ALL {
        for letter in api.dead_letters(service).await.expect("dead letters") {
            reasons.push(letter["reason"].as_str().unwrap_or("none").to_owned());
        }
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "invalid_payload",
            "invalid_payload",
            "malformed_message",
            "malformed_message",
            "unknown_message_type",
            "unknown_saga",
        ],
        "the reasons of the dead letters"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_replayed_after_its_saga_timed_out_takes_no_money() {
    // The charge is dead-lettered within a second or two (retries 50, 100, 200, 400 ms apart);
    // the saga gives up on it after 6 s without a resend, and refunds what may have been charged.
    // The margin keeps the order of the two (dead letter, then refund) on a loaded machine.
    let options = FleetOptions::default()
        .with_retry_base_delay(50)
        .with_setting(
            Service::Orchestrator,
            "SAGA__AWAITING_PAYMENT_TIMEOUT_MS",
            6_000,
        )
        .with_setting(Service::Orchestrator, "SAGA__MAX_RESENDS", 0);
    let mut scenario = Scenario::begin("charge replayed after a timeout", options).await;
    scenario
        .fleet
        .execute_sql(Service::Payment, &refuse_charges())
        .await;
    let stream = scenario.stream(StreamPlan {
        orders: 40,
        ..StreamPlan::default()
    });
    let refused = place_refused_order(&scenario.fleet.api).await;

    // The charge fails until it is dead-lettered; then the saga times out, and its refund finds
    // nothing charged.
    let api = scenario.fleet.api.clone();
    let letter = dead_letter_of(&api, Service::Payment, refused.order_id).await;
    eventually(
        "the refused order to fail timed_out",
        Duration::from_secs(30),
        || async {
            let order = api.order(refused.order_id).await.ok()?;
            (order["failure_reason"] == "timed_out").then_some(())
        },
    )
    .await;
    scenario.mark("charge dead-lettered, saga timed out");

    // After the incident the operator fixes the cause and replays the DLQ. The charge is late
    // now: it must not take money for an order that has failed.
    scenario
        .fleet
        .execute_sql(Service::Payment, ACCEPT_CHARGES)
        .await;
    let message_id = letter["message_id"]
        .as_str()
        .expect("a message id")
        .to_owned();
    let report = api
        .replay_dead_letters(Service::Payment, &[message_id])
        .await
        .expect("the replay request");
    assert_eq!(report["replayed"], 1, "{report}");
    scenario.mark("late charge replayed");

    let mut ledger = stream.finish().await;
    ledger.accepted.push(refused.clone());
    let expect = Expectations {
        required_failure_reasons: vec!["payment_declined", "out_of_stock", "timed_out"],
        ..Expectations::default()
    };
    scenario.check(&ledger, &expect).await;
    // The replayed charge was handled (not left in a queue) and declined, not charged.
    let payments = api.payments(refused.order_id).await.expect("payments");
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["status"], "DECLINED", "{payments:?}");
}
