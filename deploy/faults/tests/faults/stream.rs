//! A steady stream of orders through the public API, with a mix that completes, is declined
//! (insufficient funds, no account) and runs out of stock (charged, then refunded).
//!
//! The stream never loses track of an order: each has its own `Idempotency-Key`, and a POST that
//! gets no answer or a 5xx (the orchestrator or its database is down) is sent again with the same
//! key, to the next orchestrator instance, until it is accepted or its patience runs out. So the
//! ledger it returns holds every order the fleet accepted, which is what the invariants are about.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::harness::fleet::{Api, CallError};

/// Customers and products as the stream starts, before any order.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// Balance per customer; `None`: the customer has no account (every charge is declined).
    pub balances: BTreeMap<String, Option<i64>>,
    /// Available units per product (nothing reserved yet).
    pub stock: BTreeMap<String, i64>,
}

impl Catalog {
    /// Three customers who can pay for anything, one who can pay for two small orders, and one
    /// without an account; a product that never runs out, one that runs out mid-stream and one
    /// that is out of stock from the start.
    pub fn standard() -> Self {
        let balances = [
            ("rich-0", Some(10_000_000)),
            ("rich-1", Some(10_000_000)),
            ("rich-2", Some(10_000_000)),
            ("frugal", Some(2_000)),
            ("ghost", None),
        ];
        let stock = [("widget", 1_000_000), ("gadget", 15), ("gizmo", 0)];
        Self {
            balances: balances
                .into_iter()
                .map(|(c, b)| (c.to_owned(), b))
                .collect(),
            stock: stock.into_iter().map(|(p, s)| (p.to_owned(), s)).collect(),
        }
    }

    /// Creates the accounts and products through the participants' APIs.
    pub async fn install(&self, api: &Api) {
        for (customer, balance) in &self.balances {
            if let Some(balance) = balance {
                api.put_account(customer, *balance)
                    .await
                    .unwrap_or_else(|e| panic!("cannot create account {customer}: {e}"));
            }
        }
        for (product, stock) in &self.stock {
            api.put_product(product, *stock)
                .await
                .unwrap_or_else(|e| panic!("cannot create product {product}: {e}"));
        }
    }
}

/// One order line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

/// The `index`-th order as the body of `POST /api/orders`.
pub fn order_body(index: usize) -> Value {
    let (customer_id, lines) = order_for(index);
    json!({
        "customer_id": customer_id,
        "items": lines.iter().map(|l| json!({
            "product_id": l.product_id,
            "quantity": l.quantity,
            "unit_price_cents": l.unit_price_cents,
        })).collect::<Vec<Value>>(),
    })
}

/// The `index`-th order of every stream: the same mix, in the same order, every run.
///
/// Per ten orders: five that complete (one of them with two products, all or nothing), one from
/// the frugal customer (completes twice, then declined for insufficient funds), one from the
/// customer without an account (declined), one for the scarce gadget (completes until the
/// gadgets run out, then charged and refunded) and one for the gizmo nobody has (always refunded).
pub fn order_for(index: usize) -> (String, Vec<Line>) {
    let line = |product_id: &str, quantity: i64, unit_price_cents: i64| Line {
        product_id: product_id.to_owned(),
        quantity,
        unit_price_cents,
    };
    let rich = format!("rich-{}", index % 3);
    let small = i64::try_from(1 + index % 3).unwrap_or(1);
    match index % 10 {
        0..=2 => (rich, vec![line("widget", small, 250)]),
        3 => (rich, vec![line("widget", 2, 250), line("widget", 1, 250)]),
        4 => (rich, vec![line("widget", 1, 100), line("gadget", 1, 900)]),
        5 => ("frugal".to_owned(), vec![line("widget", 1, 700)]),
        6 => ("ghost".to_owned(), vec![line("widget", 1, 100)]),
        7 => (rich, vec![line("gadget", 2, 900)]),
        8 => (rich, vec![line("gizmo", 1, 500)]),
        _ => (rich, vec![line("widget", small, 250)]),
    }
}

/// An order the fleet accepted (answered 202).
#[derive(Clone, Debug)]
pub struct AcceptedOrder {
    pub order_id: Uuid,
    pub idempotency_key: String,
    pub customer_id: String,
    pub lines: Vec<Line>,
}

impl AcceptedOrder {
    pub fn total_cents(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.quantity * l.unit_price_cents)
            .sum()
    }
}

/// What a finished stream did.
#[derive(Clone, Debug)]
pub struct Ledger {
    pub catalog: Catalog,
    pub accepted: Vec<AcceptedOrder>,
    /// Orders never accepted within their patience, with the last answer: each one is a failure.
    pub lost: Vec<(String, String)>,
}

/// How much and how fast.
#[derive(Clone, Copy, Debug)]
pub struct StreamPlan {
    pub orders: usize,
    /// Pause between two orders' first attempts.
    pub interval: Duration,
    /// How long one order may be retried before it counts as lost.
    pub patience: Duration,
}

impl Default for StreamPlan {
    /// About 100 orders over 12 seconds, each retried for up to 45 s (a RabbitMQ or PostgreSQL
    /// restart on a loaded 2-core machine is well inside that).
    fn default() -> Self {
        Self {
            orders: 100,
            interval: Duration::from_millis(120),
            patience: Duration::from_secs(45),
        }
    }
}

/// Live counters, so a scenario can inject its fault after N accepted orders, or once the stream
/// noticed an outage.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub accepted: usize,
    /// POST attempts that got no answer or a 5xx.
    pub unavailable: usize,
    pub finished: bool,
}

pub struct OrderStream {
    progress: watch::Receiver<Progress>,
    task: JoinHandle<Ledger>,
    plan: StreamPlan,
}

impl OrderStream {
    /// Installs nothing: call [`Catalog::install`] first.
    pub fn start(api: Api, catalog: Catalog, plan: StreamPlan) -> Self {
        let (report, progress) = watch::channel(Progress::default());
        let run_id = Uuid::new_v4().simple().to_string();
        let task = tokio::spawn(async move {
            let mut ledger = Ledger {
                catalog,
                accepted: Vec::new(),
                lost: Vec::new(),
            };
            let mut pace = tokio::time::interval(plan.interval);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for index in 0..plan.orders {
                pace.tick().await;
                let (customer_id, lines) = order_for(index);
                let key = format!("faults-{}-{index:04}", &run_id[..8]);
                let body = order_body(index);
                match place_patiently(&api, index, &body, &key, plan.patience, &report).await {
                    Ok(order_id) => {
                        ledger.accepted.push(AcceptedOrder {
                            order_id,
                            idempotency_key: key,
                            customer_id,
                            lines,
                        });
                        report.send_modify(|p| p.accepted += 1);
                    }
                    Err(error) => ledger.lost.push((key, error.to_string())),
                }
            }
            report.send_modify(|p| p.finished = true);
            ledger
        });
        Self {
            progress,
            task,
            plan,
        }
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Waits until `condition` holds for the stream's counters; panics after `timeout` naming
    /// `what`, or if the stream finished first.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&Progress) -> bool,
    ) {
        let waited = tokio::time::timeout(
            timeout,
            self.progress.wait_for(|p| condition(p) || p.finished),
        )
        .await
        .map(|outcome| outcome.is_ok());
        let progress = self.progress();
        match waited {
            Ok(true) if condition(&progress) => {}
            _ => panic!(
                "the order stream never reached `{what}` (within {timeout:?}; now {progress:?})"
            ),
        }
    }

    /// Waits until at least `count` orders were accepted.
    pub async fn accepted(&mut self, count: usize) {
        let timeout =
            self.plan.interval * u32::try_from(count).unwrap_or(u32::MAX) + self.plan.patience;
        self.wait_for(&format!("{count} accepted orders"), timeout, |p| {
            p.accepted >= count
        })
        .await;
    }

    /// Waits until the stream has placed every order (or given up on some) and returns its ledger.
    pub async fn finish(self) -> Ledger {
        let bound = self.plan.interval * u32::try_from(self.plan.orders).unwrap_or(u32::MAX)
            + self.plan.patience * 2;
        match tokio::time::timeout(bound, self.task).await {
            Ok(Ok(ledger)) => ledger,
            Ok(Err(error)) => panic!("the order stream failed: {error}"),
            Err(_) => panic!("the order stream did not finish within {bound:?}"),
        }
    }
}

/// POSTs one order until it is accepted: an unavailable orchestrator is retried (on the next
/// instance, same key) for up to `patience`; a definite refusal is returned at once.
async fn place_patiently(
    api: &Api,
    index: usize,
    body: &Value,
    key: &str,
    patience: Duration,
    report: &watch::Sender<Progress>,
) -> Result<Uuid, CallError> {
    let deadline = Instant::now() + patience;
    let mut instance = index;
    loop {
        match api.place_order(instance, body, key).await {
            Ok(order_id) => return Ok(order_id),
            Err(CallError::Unavailable(why)) => {
                report.send_modify(|p| p.unavailable += 1);
                if Instant::now() >= deadline {
                    return Err(CallError::Unavailable(format!(
                        "still unavailable after {patience:?}: {why}"
                    )));
                }
                instance += 1;
                // A pause between attempts, so an outage costs a few requests, not thousands.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(refused) => return Err(refused),
        }
    }
}
