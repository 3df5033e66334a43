//! The invariant checker every scenario ends with. It waits (bounded) for the fleet to settle,
//! then reports every violation, not only the first:
//!
//! 1. every order placed was accepted and ended COMPLETED or FAILED;
//! 2. no outbox holds an unpublished row and no work queue a ready message;
//! 3. each balance is the initial one minus the customer's COMPLETED totals;
//! 4. each product's available and reserved units account for exactly the COMPLETED orders;
//! 5. per order at most one payment, CHARGED for the total only when COMPLETED, and no stock
//!    left reserved by a FAILED one, whose reason agrees with its payment;
//! 6. each `<queue>.dlq` holds exactly what the scenario put there.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use serde_json::Value;
use uuid::Uuid;

use saga_common::configuration::RetrySettings;
use saga_common::messaging::topology;

use crate::harness::fleet::{Fleet, Service};
use crate::harness::postgres::connect;
use crate::stream::{AcceptedOrder, Ledger};

/// What a scenario expects beyond the defaults.
#[derive(Clone, Debug)]
pub struct Expectations {
    /// Messages expected in each work queue's DLQ (by work queue name); absent means none.
    pub dead_letters: BTreeMap<&'static str, u32>,
    /// How long the fleet may take to bring every accepted order to an end.
    pub settle: Duration,
    /// Failure reasons the scenario must have produced at least once: a scenario that never
    /// exercised a path proves nothing about it.
    pub required_failure_reasons: Vec<&'static str>,
}

impl Default for Expectations {
    fn default() -> Self {
        Self {
            dead_letters: BTreeMap::new(),
            settle: Duration::from_secs(60),
            required_failure_reasons: vec!["payment_declined", "out_of_stock"],
        }
    }
}

/// How the orders ended, for the report.
#[derive(Clone, Debug, Default)]
pub struct Outcomes {
    pub completed: usize,
    /// FAILED, by failure reason.
    pub failed: BTreeMap<String, usize>,
    pub pending: usize,
}

pub struct Report {
    pub violations: Vec<String>,
    pub outcomes: Outcomes,
    /// Final order views, by id.
    pub orders: BTreeMap<Uuid, Value>,
}

impl Report {
    /// Panics listing every violation.
    pub fn assert_clean(&self) {
        if self.violations.is_empty() {
            return;
        }
        let mut text = format!(
            "{} invariant violation(s) (outcomes: {:?}):\n",
            self.violations.len(),
            self.outcomes
        );
        for violation in &self.violations {
            let _ = writeln!(text, "  - {violation}");
        }
        panic!("{text}");
    }
}

/// Waits for the fleet to settle, then checks every invariant against `ledger`.
pub async fn check(fleet: &Fleet, ledger: &Ledger, expect: &Expectations) -> Report {
    let mut violations = Vec::new();
    for (key, error) in &ledger.lost {
        violations.push(format!("order {key} was never accepted: {error}"));
    }

    let orders = settled_orders(fleet, ledger, expect.settle, &mut violations).await;
    let outcomes = tally(&orders);
    for reason in &expect.required_failure_reasons {
        if !outcomes.failed.contains_key(*reason) {
            violations.push(format!(
                "no order failed with `{reason}`: the stream did not exercise that path"
            ));
        }
    }
    if outcomes.completed == 0 {
        violations.push("no order completed".to_owned());
    }

    quiescence(fleet, &mut violations).await;
    money(fleet, ledger, &orders, &mut violations).await;
    stock(fleet, ledger, &orders, &mut violations).await;
    per_order(fleet, ledger, &orders, &mut violations).await;
    dead_letters(fleet, expect, &mut violations).await;

    Report {
        violations,
        outcomes,
        orders,
    }
}

fn status(order: Option<&Value>) -> &str {
    order
        .and_then(|o| o["status"].as_str())
        .unwrap_or("UNKNOWN")
}

fn is_completed(orders: &BTreeMap<Uuid, Value>, order: &AcceptedOrder) -> bool {
    status(orders.get(&order.order_id)) == "COMPLETED"
}

/// Polls every accepted order until none is PENDING (or `settle` runs out), and returns the
/// final views.
async fn settled_orders(
    fleet: &Fleet,
    ledger: &Ledger,
    settle: Duration,
    violations: &mut Vec<String>,
) -> BTreeMap<Uuid, Value> {
    let mut views: BTreeMap<Uuid, Value> = BTreeMap::new();
    let deadline = Instant::now() + settle;
    let settled = loop {
        for order in &ledger.accepted {
            if !matches!(status(views.get(&order.order_id)), "COMPLETED" | "FAILED")
                && let Ok(view) = fleet.api.order(order.order_id).await
            {
                views.insert(order.order_id, view);
            }
        }
        let all_ended = ledger
            .accepted
            .iter()
            .all(|o| matches!(status(views.get(&o.order_id)), "COMPLETED" | "FAILED"));
        if all_ended || Instant::now() >= deadline {
            break all_ended;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if !settled {
        let stuck: Vec<&AcceptedOrder> = ledger
            .accepted
            .iter()
            .filter(|o| !matches!(status(views.get(&o.order_id)), "COMPLETED" | "FAILED"))
            .collect();
        violations.push(format!(
            "{} accepted order(s) did not end within {settle:?}",
            stuck.len()
        ));
        for order in stuck.iter().take(5) {
            let timeline = fleet
                .api
                .timeline(order.order_id)
                .await
                .map_or_else(|e| e.to_string(), |t| t.to_string());
            violations.push(format!(
                "order {} ({}) is {}; timeline: {timeline}",
                order.order_id,
                order.idempotency_key,
                status(views.get(&order.order_id))
            ));
        }
    }
    views
}

fn tally(orders: &BTreeMap<Uuid, Value>) -> Outcomes {
    let mut outcomes = Outcomes::default();
    for view in orders.values() {
        match view["status"].as_str() {
            Some("COMPLETED") => outcomes.completed += 1,
            Some("FAILED") => {
                let reason = view["failure_reason"].as_str().unwrap_or("none").to_owned();
                *outcomes.failed.entry(reason).or_default() += 1;
            }
            _ => outcomes.pending += 1,
        }
    }
    outcomes
}

/// Waits until no outbox holds an unpublished row and no work queue a ready message, so the
/// checks below see the fleet at rest rather than a duplicate still on its way.
async fn quiescence(fleet: &Fleet, violations: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut busy = Vec::new();
    while Instant::now() < deadline {
        busy.clear();
        for service in Service::ALL {
            match unpublished(&fleet.database_url(service)).await {
                Ok(0) => {}
                Ok(n) => busy.push(format!("{} outbox: {n} unpublished", service.name())),
                Err(e) => busy.push(format!("{} outbox: {e}", service.name())),
            }
        }
        for queue in in_transit_queues(&fleet.retry) {
            match fleet.rabbitmq.ready_messages(&queue).await {
                Ok(Some(0) | None) => {}
                Ok(Some(n)) => busy.push(format!("{queue}: {n} ready")),
                Err(e) => busy.push(e),
            }
        }
        if busy.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    violations.push(format!(
        "the fleet never went quiet within 30 s: {}",
        busy.join("; ")
    ));
}
/// Every queue a message passes through on its way to being handled: the work queues and their
/// delay queues (named after the retry delays the fleet runs with).
fn in_transit_queues(retry: &RetrySettings) -> Vec<String> {
    let delays = retry.delays();
    crate::harness::fleet::saga_work_queues()
        .into_iter()
        .flat_map(|(queue, _, _)| {
            std::iter::once(queue.to_owned())
                .chain(delays.iter().map(move |d| topology::retry_queue(queue, *d)))
        })
        .collect()
}

/// Unpublished outbox rows; bounded like every call the checker polls with.
async fn unpublished(database_url: &str) -> Result<i64, String> {
    let count = async {
        let db = connect(database_url).await.map_err(|e| e.to_string())?;
        let row = db
            .query_one_raw(saga_common::db::stmt(
                "SELECT count(*) AS n FROM outbox_pending",
                [],
            ))
            .await
            .map_err(|e| e.to_string());
        let _ = db.close().await;
        row?.map_or(Ok(0), |r| {
            r.try_get::<i64>("", "n").map_err(|e| e.to_string())
        })
    };
    tokio::time::timeout(Duration::from_secs(10), count)
        .await
        .unwrap_or_else(|_| Err("no answer within 10 s".to_owned()))
}

async fn money(
    fleet: &Fleet,
    ledger: &Ledger,
    orders: &BTreeMap<Uuid, Value>,
    violations: &mut Vec<String>,
) {
    for (customer, initial) in &ledger.catalog.balances {
        let spent: i64 = ledger
            .accepted
            .iter()
            .filter(|o| &o.customer_id == customer && is_completed(orders, o))
            .map(AcceptedOrder::total_cents)
            .sum();
        let expected = initial.map(|b| b - spent);
        match fleet.api.balance(customer).await {
            Ok(actual) if actual == expected => {}
            Ok(actual) => violations.push(format!(
                "customer {customer}: balance {actual:?}, expected {expected:?} \
                 (initial {initial:?} minus {spent} for COMPLETED orders)"
            )),
            Err(e) => violations.push(format!("customer {customer}: cannot read balance: {e}")),
        }
    }
}

async fn stock(
    fleet: &Fleet,
    ledger: &Ledger,
    orders: &BTreeMap<Uuid, Value>,
    violations: &mut Vec<String>,
) {
    for (product, initial) in &ledger.catalog.stock {
        let sold: i64 = ledger
            .accepted
            .iter()
            .filter(|o| is_completed(orders, o))
            .flat_map(|o| &o.lines)
            .filter(|l| &l.product_id == product)
            .map(|l| l.quantity)
            .sum();
        match fleet.api.stock(product).await {
            Ok((available, reserved)) if available == initial - sold && reserved == sold => {}
            Ok((available, reserved)) => violations.push(format!(
                "product {product}: available {available} and reserved {reserved}, expected {} \
                 and {sold} (initial {initial}, {sold} units in COMPLETED orders)",
                initial - sold
            )),
            Err(e) => violations.push(format!("product {product}: cannot read stock: {e}")),
        }
    }
}

/// Units per product, duplicate lines summed (as the inventory merges them).
fn units(lines: impl IntoIterator<Item = (String, i64)>) -> BTreeMap<String, i64> {
    let mut units = BTreeMap::new();
    for (product, quantity) in lines {
        *units.entry(product).or_default() += quantity;
    }
    units
}

async fn per_order(
    fleet: &Fleet,
    ledger: &Ledger,
    orders: &BTreeMap<Uuid, Value>,
    violations: &mut Vec<String>,
) {
    for order in &ledger.accepted {
        let id = order.order_id;
        let key = &order.idempotency_key;
        let Some(view) = orders.get(&id) else {
            continue;
        };
        let status = view["status"].as_str().unwrap_or("UNKNOWN");
        let reason = view["failure_reason"].as_str();
        let payments = match fleet.api.payments(id).await {
            Ok(payments) => payments,
            Err(e) => {
                violations.push(format!("order {key}: cannot list payments: {e}"));
                continue;
            }
        };
        let lines = match fleet.api.reservation_lines(id).await {
            Ok(lines) => lines,
            Err(e) => {
                violations.push(format!("order {key}: cannot list reservations: {e}"));
                continue;
            }
        };
        if payments.len() > 1 {
            violations.push(format!("order {key}: {} payments", payments.len()));
        }
        let payment = payments.first();
        let payment_status = payment.and_then(|p| p["status"].as_str());
        let held = units(lines.iter().filter(|l| l["status"] == "RESERVED").map(|l| {
            (
                l["product_id"].as_str().unwrap_or_default().to_owned(),
                l["quantity"].as_i64().unwrap_or_default(),
            )
        }));
        match status {
            "COMPLETED" => {
                let charged = payment.and_then(|p| p["amount_cents"].as_i64());
                if payment_status != Some("CHARGED") || charged != Some(order.total_cents()) {
                    violations.push(format!(
                        "order {key}: COMPLETED but its payment is {payment_status:?} for \
                         {charged:?} (total {})",
                        order.total_cents()
                    ));
                }
                let ordered = units(
                    order
                        .lines
                        .iter()
                        .map(|l| (l.product_id.clone(), l.quantity)),
                );
                if held != ordered {
                    violations.push(format!(
                        "order {key}: COMPLETED but holds {held:?} instead of {ordered:?}"
                    ));
                }
            }
            "FAILED" => {
                if payment_status == Some("CHARGED") {
                    violations.push(format!(
                        "order {key}: FAILED ({reason:?}) but its payment is still CHARGED"
                    ));
                }
                if !held.is_empty() {
                    violations.push(format!(
                        "order {key}: FAILED ({reason:?}) but still holds {held:?}"
                    ));
                }
                let consistent = match reason {
                    Some("payment_declined") => matches!(payment_status, Some("DECLINED")),
                    Some("out_of_stock") => matches!(payment_status, Some("REFUNDED")),
                    // Refunded if the charge happened; declined (cancelled) if the refund came
                    // first, so that a late charge is refused.
                    Some("timed_out") => matches!(payment_status, Some("REFUNDED" | "DECLINED")),
                    _ => false,
                };
                if !consistent {
                    violations.push(format!(
                        "order {key}: FAILED with reason {reason:?} but its payment is \
                         {payment_status:?}"
                    ));
                }
            }
            other => violations.push(format!("order {key}: ended {other}")),
        }
    }
}

async fn dead_letters(fleet: &Fleet, expect: &Expectations, violations: &mut Vec<String>) {
    for (queue, _, _) in crate::harness::fleet::saga_work_queues() {
        let dlq = topology::dead_letter_queue(queue);
        let expected = expect.dead_letters.get(queue).copied().unwrap_or(0);
        match fleet.rabbitmq.ready_messages(&dlq).await {
            Ok(Some(count)) if count == expected => {}
            Ok(count) => violations.push(format!(
                "{dlq} holds {} message(s), expected {expected}",
                count.map_or_else(|| "no queue, so no".to_owned(), |c| c.to_string())
            )),
            Err(e) => violations.push(format!("{dlq}: {e}")),
        }
    }
}
