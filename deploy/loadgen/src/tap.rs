//! The event tap: learns that an order's saga ended from the orchestrator's lifecycle events
//! instead of polling `GET /api/orders/{id}`.
//!
//! The orchestrator publishes `order.completed` and `order.failed` through its outbox on the
//! `saga.events` topic exchange, routed by type, with the JSON envelope as the body (`saga_id` is
//! the order id, `occurred_at` the moment the terminal transition was written, and the payload
//! of `order.failed` carries the `reason`). [`Tap::open`] binds a server-named, exclusive,
//! auto-delete queue to that exchange with `order.#` before any order is sent, and hands every
//! event to the [`Tracker`], where the task following that order waits for it.
//!
//! The names below mirror saga-common (`contracts::OrderEvent`, `messaging::topology`,
//! `messaging::Envelope`) instead of depending on it. saga-common brings sea-orm, sqlx, axum and
//! utoipa, and `cargo build -p loadgen`, which bench.sh runs in release mode, resolves features for loadgen alone (chrono without its
//! default features, for one), so it would compile that whole stack once more instead of sharing
//! the fleet's artifacts. The test `the_mirrored_names_match_saga_common` reads saga-common's
//! sources so that the mirror cannot drift silently.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, Consumer, ExchangeKind};
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::drive::Error;

/// saga-common `messaging::topology::EVENTS_EXCHANGE`.
pub const EVENTS_EXCHANGE: &str = "saga.events";
/// saga-common `contracts::OrderEvent::Completed`.
pub const ORDER_COMPLETED: &str = "order.completed";
/// saga-common `contracts::OrderEvent::Failed`.
pub const ORDER_FAILED: &str = "order.failed";
/// Every order lifecycle event; those that do not end a saga are ignored.
const BINDING: &str = "order.#";
/// How often (at most) early arrivals nobody claimed are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How a saga ended, as its lifecycle event tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub order_id: Uuid,
    /// `COMPLETED` or `FAILED`, as `GET /api/orders/{id}` spells them.
    pub status: &'static str,
    /// The payload's `reason` for `order.failed`.
    pub failure_reason: Option<String>,
    /// The envelope's `occurred_at`; the arrival at the tap when the envelope has none.
    pub at: DateTime<Utc>,
}

/// The fields of saga-common's `Envelope` the tap reads; the others are ignored.
#[derive(Deserialize)]
struct EventEnvelope {
    #[serde(rename = "type")]
    message_type: String,
    saga_id: Uuid,
    #[serde(default)]
    occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    payload: serde_json::Value,
}

/// Reads one event body. `Ok(None)` for an order event that does not end a saga.
pub fn parse_event(body: &[u8], arrived: DateTime<Utc>) -> Result<Option<Ending>, String> {
    let envelope: EventEnvelope =
        serde_json::from_slice(body).map_err(|e| format!("unreadable event: {e}"))?;
    let (status, failure_reason) = match envelope.message_type.as_str() {
        ORDER_COMPLETED => ("COMPLETED", None),
        // A missing reason is recorded as none (the report counts it as "other"): the order
        // did fail, and waiting for --track-timeout would only blur its latency.
        ORDER_FAILED => (
            "FAILED",
            envelope
                .payload
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        ),
        _ => return Ok(None),
    };
    Ok(Some(Ending {
        order_id: envelope.saga_id,
        status,
        failure_reason,
        at: envelope.occurred_at.unwrap_or(arrived),
    }))
}

/// What [`Tracker::register`] found for an order.
#[derive(Debug)]
pub enum Registration {
    /// Its event came before the POST's answer was read.
    Ended(Ending),
    /// Its event will be sent here; the sender is dropped if the tap stops first.
    Waiting(oneshot::Receiver<Ending>),
    /// The tap has stopped: no event will come.
    TapClosed,
}

/// Matches events to the orders waiting for them.
///
/// An event may arrive before the task that placed the order has its id (the saga can finish
/// while the POST's answer is still on its way), so events nobody waits for are kept as early
/// arrivals until [`Tracker::sweep`] drops them. Duplicates (the outbox publishes at least once)
/// and other publishers' orders end up there too: only the first event of an order counts.
#[derive(Debug, Default)]
pub struct Tracker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    waiting: HashMap<Uuid, oneshot::Sender<Ending>>,
    /// Events nobody waited for yet, with their arrival.
    early: HashMap<Uuid, (Ending, Instant)>,
    closed: bool,
}

impl Tracker {
    fn state(&self) -> MutexGuard<'_, State> {
        // Only a panic while holding the lock poisons it; the maps are still consistent then
        // (every operation on them is a single insert or remove).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called once the POST has answered with the order's id.
    pub fn register(&self, order_id: Uuid) -> Registration {
        let mut state = self.state();
        if let Some((ending, _)) = state.early.remove(&order_id) {
            return Registration::Ended(ending);
        }
        if state.closed {
            return Registration::TapClosed;
        }
        let (sender, receiver) = oneshot::channel();
        state.waiting.insert(order_id, sender);
        Registration::Waiting(receiver)
    }

    /// Called for each event that ends a saga, `arrived` being when it reached the tap.
    pub fn deliver(&self, ending: Ending, arrived: Instant) {
        let mut state = self.state();
        match state.waiting.remove(&ending.order_id) {
            // A closed receiver means its order stopped waiting; nothing is left to tell.
            Some(sender) => drop(sender.send(ending)),
            None => {
                state
                    .early
                    .entry(ending.order_id)
                    .or_insert((ending, arrived));
            }
        }
    }

    /// Stops waiting for `order_id` (its deadline passed). An event already sent stays in the
    /// receiver; a later one becomes an early arrival and is swept.
    pub fn forget(&self, order_id: Uuid) {
        self.state().waiting.remove(&order_id);
    }

    /// The tap stopped: every waiting receiver is woken with an error, and later
    /// registrations are told so, so that their orders fall back to polling.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.waiting.clear();
    }

    /// Drops early arrivals that came before `before`; returns how many.
    pub fn sweep(&self, before: Instant) -> usize {
        let mut state = self.state();
        let was = state.early.len();
        state.early.retain(|_, (_, arrived)| *arrived >= before);
        was - state.early.len()
    }
}

/// One AMQP connection listening to `saga.events`.
pub struct Tap {
    pub tracker: Arc<Tracker>,
    /// Events that could not be read (their orders wait for --track-timeout).
    pub unreadable: Arc<AtomicU64>,
    connection: Connection,
    listener: JoinHandle<()>,
}

impl Tap {
    /// Connects and starts listening; returns once the queue is bound and consumed, so no
    /// event of an order sent afterwards can be missed. Early arrivals are kept for `keep_early`.
    pub async fn open(url: &str, name: &str, keep_early: Duration) -> Result<Self, Error> {
        let context = |what: &str| {
            let what = what.to_owned();
            move |e: lapin::Error| -> Error { format!("--amqp: {what}: {e}").into() }
        };
        let connection = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name(name.into()),
        )
        .await
        .map_err(context("cannot connect"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(context("cannot open a channel"))?;
        // Passive: the fleet declares its topology. A missing exchange means the URL names
        // another vhost than the fleet's, which is better said now than after --track-timeout
        // per order.
        channel
            .exchange_declare(
                EVENTS_EXCHANGE.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(context(&format!(
                "no exchange {EVENTS_EXCHANGE} (is the fleet running on this vhost?)"
            )))?;
        // Server-named, exclusive and auto-delete: private to this run, and gone with it.
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(context("cannot declare the tap queue"))?;
        channel
            .queue_bind(
                queue.name().clone(),
                EVENTS_EXCHANGE.into(),
                BINDING.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(context("cannot bind the tap queue"))?;
        // no_ack: this is a measurement tap, not a business consumer. Nothing here must be
        // redelivered or dead-lettered, and an ack per event would only add broker work to the
        // load being measured; an event the tap misses is made up for by one GET per order.
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                name.into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(context("cannot consume the tap queue"))?;
        let tracker = Arc::new(Tracker::default());
        let unreadable = Arc::new(AtomicU64::new(0));
        let listener = tokio::spawn(listen(
            consumer,
            tracker.clone(),
            unreadable.clone(),
            keep_early,
        ));
        Ok(Self {
            tracker,
            unreadable,
            connection,
            listener,
        })
    }

    /// Stops listening and closes the connection (its queue goes with it).
    pub async fn close(self) {
        self.listener.abort();
        // Best effort: the run is over, and the broker drops the queue with the connection.
        let _ = self.connection.close(200, "load finished".into()).await;
    }
}

async fn listen(
    mut consumer: Consumer,
    tracker: Arc<Tracker>,
    unreadable: Arc<AtomicU64>,
    keep_early: Duration,
) {
    let mut last_sweep = Instant::now();
    let why = loop {
        let delivery = match consumer.next().await {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => break e.to_string(),
            None => break "the broker cancelled the consumer".to_string(),
        };
        let arrived = Instant::now();
        match parse_event(&delivery.data, Utc::now()) {
            Ok(Some(ending)) => tracker.deliver(ending, arrived),
            Ok(None) => {}
            Err(e) => {
                if unreadable.fetch_add(1, Relaxed) == 0 {
                    eprintln!("\nloadgen: {e} (further ones are only counted)");
                }
            }
        }
        if arrived.duration_since(last_sweep) >= SWEEP_EVERY {
            if let Some(before) = arrived.checked_sub(keep_early) {
                tracker.sweep(before);
            }
            last_sweep = arrived;
        }
    };
    eprintln!("\nloadgen: the event tap stopped ({why}); orders in flight fall back to polling");
    tracker.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(message_type: &str, saga_id: Uuid, payload: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "message_id": Uuid::now_v7(),
            "type": message_type,
            "saga_id": saga_id,
            "correlation_id": "c-1",
            "causation_id": null,
            "occurred_at": "2026-11-22T03:46:01.250Z",
            "payload": payload,
        }))
        .unwrap()
    }

    fn ending(order_id: Uuid) -> Ending {
        Ending {
            order_id,
            status: "COMPLETED",
            failure_reason: None,
            at: Utc::now(),
        }
    }

    #[test]
    fn a_completed_event_ends_the_order_at_its_occurred_at() {
        let id = Uuid::now_v7();
        let body = event(ORDER_COMPLETED, id, serde_json::json!({"order_id": id}));
        let parsed = parse_event(&body, Utc::now()).unwrap().unwrap();
        assert_eq!(parsed.order_id, id);
        assert_eq!(parsed.status, "COMPLETED");
        assert_eq!(parsed.failure_reason, None);
        assert_eq!(parsed.at.to_rfc3339(), "2026-11-22T03:46:01.250+00:00");
    }

    #[test]
    fn a_failed_event_carries_its_reason() {
        let id = Uuid::now_v7();
        let body = event(
            ORDER_FAILED,
            id,
            serde_json::json!({"order_id": id, "customer_id": "c", "reason": "out_of_stock"}),
        );
        let parsed = parse_event(&body, Utc::now()).unwrap().unwrap();
        assert_eq!(parsed.status, "FAILED");
        assert_eq!(parsed.failure_reason.as_deref(), Some("out_of_stock"));
    }

    #[test]
    fn a_failed_event_without_a_reason_still_ends_the_order() {
        let body = event(ORDER_FAILED, Uuid::now_v7(), serde_json::json!({}));
        let parsed = parse_event(&body, Utc::now()).unwrap().unwrap();
        assert_eq!((parsed.status, parsed.failure_reason), ("FAILED", None));
    }

    #[test]
    fn without_occurred_at_the_arrival_time_is_used() {
        let id = Uuid::now_v7();
        let body = serde_json::to_vec(&serde_json::json!({
            "type": ORDER_COMPLETED, "saga_id": id, "payload": {}
        }))
        .unwrap();
        let arrived = Utc::now();
        assert_eq!(parse_event(&body, arrived).unwrap().unwrap().at, arrived);
    }

    #[test]
    fn other_order_events_are_ignored_and_garbage_is_an_error() {
        let other = event("order.created", Uuid::now_v7(), serde_json::json!({}));
        assert_eq!(parse_event(&other, Utc::now()), Ok(None));
        assert!(parse_event(b"not json", Utc::now()).is_err());
        let no_saga = serde_json::to_vec(&serde_json::json!({"type": ORDER_COMPLETED})).unwrap();
        assert!(parse_event(&no_saga, Utc::now()).is_err());
    }

    #[test]
    fn an_event_before_registration_is_kept_for_it() {
        let tracker = Tracker::default();
        let id = Uuid::now_v7();
        tracker.deliver(ending(id), Instant::now());
        let Registration::Ended(found) = tracker.register(id) else {
            panic!("the early arrival should be found");
        };
        assert_eq!(found.order_id, id);
        // Claimed once: a second registration waits again.
        assert!(matches!(tracker.register(id), Registration::Waiting(_)));
    }

    #[test]
    fn an_event_after_registration_reaches_the_waiting_order() {
        let tracker = Tracker::default();
        let id = Uuid::now_v7();
        let Registration::Waiting(mut receiver) = tracker.register(id) else {
            panic!("should wait");
        };
        tracker.deliver(ending(Uuid::now_v7()), Instant::now()); // someone else's
        assert!(receiver.try_recv().is_err());
        tracker.deliver(ending(id), Instant::now());
        assert_eq!(receiver.try_recv().unwrap().order_id, id);
    }

    #[test]
    fn only_the_first_of_duplicate_early_events_counts() {
        let tracker = Tracker::default();
        let id = Uuid::now_v7();
        let first = ending(id);
        let mut second = ending(id);
        second.status = "FAILED";
        tracker.deliver(first.clone(), Instant::now());
        tracker.deliver(second, Instant::now());
        let Registration::Ended(found) = tracker.register(id) else {
            panic!("should be found");
        };
        assert_eq!(found, first);
    }

    #[test]
    fn an_event_sent_just_before_forget_is_still_in_the_receiver() {
        let tracker = Tracker::default();
        let id = Uuid::now_v7();
        let Registration::Waiting(mut receiver) = tracker.register(id) else {
            panic!("should wait");
        };
        tracker.deliver(ending(id), Instant::now());
        tracker.forget(id);
        assert_eq!(receiver.try_recv().unwrap().order_id, id);
        // After forget, a late duplicate is an early arrival, not a send to nobody.
        tracker.deliver(ending(id), Instant::now());
        assert!(matches!(tracker.register(id), Registration::Ended(_)));
    }

    #[test]
    fn closing_wakes_waiters_and_refuses_new_ones_but_keeps_early_arrivals() {
        let tracker = Tracker::default();
        let (waiting, early, late) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let Registration::Waiting(mut receiver) = tracker.register(waiting) else {
            panic!("should wait");
        };
        tracker.deliver(ending(early), Instant::now());
        tracker.close();
        assert_eq!(
            receiver.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        );
        assert!(matches!(tracker.register(late), Registration::TapClosed));
        assert!(matches!(tracker.register(early), Registration::Ended(_)));
    }

    #[test]
    fn sweeping_drops_only_old_early_arrivals() {
        let tracker = Tracker::default();
        let (old, new) = (Uuid::now_v7(), Uuid::now_v7());
        let t0 = Instant::now();
        tracker.deliver(ending(old), t0);
        tracker.deliver(ending(new), t0 + Duration::from_secs(10));
        assert_eq!(tracker.sweep(t0 + Duration::from_secs(5)), 1);
        assert!(matches!(tracker.register(old), Registration::Waiting(_)));
        assert!(matches!(tracker.register(new), Registration::Ended(_)));
    }

    /// The names and envelope fields this module mirrors, checked against saga-common's sources
    /// (read as text, so that the tests need not build saga-common's dependencies either).
    #[test]
    fn the_mirrored_names_match_saga_common() {
        let contracts = include_str!("../../../common/src/contracts.rs");
        let topology = include_str!("../../../common/src/messaging/topology.rs");
        let envelope = include_str!("../../../common/src/messaging/envelope.rs");
        for (source, needle) in [
            (
                contracts,
                format!("(OrderCompleted) = \"{ORDER_COMPLETED}\","),
            ),
            (contracts, format!("(OrderFailed) = \"{ORDER_FAILED}\",")),
            (
                topology,
                format!("EVENTS_EXCHANGE: &str = \"{EVENTS_EXCHANGE}\";"),
            ),
            (topology, "(EVENTS_EXCHANGE, ExchangeKind::Topic)".into()),
            (envelope, "#[serde(rename = \"type\")]".into()),
            (envelope, "pub message_type: String,".into()),
            (envelope, "pub saga_id: Uuid,".into()),
            (envelope, "pub occurred_at: DateTime<Utc>,".into()),
            (envelope, "pub payload: serde_json::Value,".into()),
        ] {
            assert!(
                source.contains(&needle),
                "saga-common no longer has {needle}"
            );
        }
        let order_failed = contracts
            .split("pub struct OrderFailed {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .unwrap_or_default();
        // The reason is an enum written as its snake_case name: a string on the wire.
        assert!(
            order_failed.contains("pub reason: OrderFailureReason,")
                && contracts
                    .contains("#[serde(rename_all = \"snake_case\")]\npub enum OrderFailureReason"),
            "saga-common's OrderFailed no longer has `reason`"
        );
    }
}
