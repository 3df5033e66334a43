//! One order: placed with its customer's credentials, then followed to its terminal status
//! by its lifecycle event or by polling (the methods are described in [`crate::drive`]).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::drive::{Record, Shared, Tracking};
use crate::mix::{Kind, OrderRequest};
use crate::refusal::Refusal;
use crate::tap::{Ending, Registration, Tracker};

const FIRST_POLL: Duration = Duration::from_millis(20);
const MAX_POLL: Duration = Duration::from_millis(320);

#[derive(Debug, Deserialize)]
struct OrderView {
    order_id: Uuid,
    status: String,
    failure_reason: Option<String>,
    updated_at: DateTime<Utc>,
}

impl From<Ending> for OrderView {
    /// The event's time stands in for the terminal transition's `updated_at`.
    fn from(ending: Ending) -> Self {
        Self {
            order_id: ending.order_id,
            status: ending.status.to_owned(),
            failure_reason: ending.failure_reason,
            updated_at: ending.at,
        }
    }
}

/// Places one order (due at `due`) and follows it to its terminal status.
pub(crate) async fn place(
    shared: &Shared,
    kind: Kind,
    order: OrderRequest,
    due: Instant,
) -> Record {
    let s = &shared.settings;
    let c = &shared.counters;
    let seq = shared.seq.fetch_add(1, Relaxed);
    let sent_s = due.saturating_duration_since(shared.start).as_secs_f64();
    // When the order was due on the wall clock, which the orchestrator stamps the saga's end
    // with: mapped from the monotonic clock now rather than once at the start, so that a step
    // of the wall clock during a run (NTP, a paused VM) shifts only the orders in flight across
    // it, not every later one.
    let due_wall = Utc::now() - chrono::Duration::from_std(due.elapsed()).unwrap_or_default();
    let mut record = Record {
        seq,
        kind,
        customer_id: order.customer_id.clone(),
        total_cents: order.total_cents(),
        lines: order
            .items
            .iter()
            .map(|i| (i.product_id.clone(), i.quantity))
            .collect(),
        sent_s,
        accept_ms: None,
        http_status: None,
        refusal: None,
        error: None,
        order_id: None,
        status: None,
        failure_reason: None,
        e2e_ms: None,
        polls: 0,
        tracked_by: None,
    };
    c.sent.fetch_add(1, Relaxed);
    c.in_flight.fetch_add(1, Relaxed);
    let post = shared.http.post(format!("{}/api/orders", s.orchestrator));
    let posted = shared
        .credentials
        .customer(post, &order.customer_id)
        // An idempotency key per order, so a retried POST could never start a second saga.
        .header("idempotency-key", format!("{}-{seq}", s.run_id))
        .json(&order)
        .send()
        .await;
    let view = match posted {
        Ok(response) => {
            record.http_status = Some(response.status().as_u16());
            if response.status() == reqwest::StatusCode::ACCEPTED {
                match response.json::<OrderView>().await {
                    Ok(view) => Some(view),
                    Err(e) => {
                        record.error = Some(format!("202 with an unreadable body: {e}"));
                        None
                    }
                }
            } else {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = response.text().await.unwrap_or_default();
                record.refusal =
                    Refusal::of(status.as_u16(), retry_after.as_deref(), &body, Utc::now());
                // A 503 or 429 without Retry-After or its code (say, 503 service_unavailable
                // when a database is down) is an error, with no promise that nothing was
                // written; it is still kept as a refusal for the closed loop's pause and counted
                // as malformed.
                if !record.refusal.as_ref().is_some_and(Refusal::well_formed) {
                    record.error = Some(format!(
                        "HTTP {status}: {}",
                        body.chars().take(200).collect::<String>()
                    ));
                }
                None
            }
        }
        Err(e) => {
            record.error = Some(format!("POST failed: {e}"));
            None
        }
    };
    record.accept_ms = Some(due.elapsed().as_secs_f64() * 1000.0);
    let Some(view) = view else {
        match (&record.error, record.refusal.as_ref().map(|r| r.kind)) {
            (None, Some(crate::refusal::Kind::Shed)) => c.shed.fetch_add(1, Relaxed),
            (None, Some(crate::refusal::Kind::RateLimited)) => c.rate_limited.fetch_add(1, Relaxed),
            _ => c.errors.fetch_add(1, Relaxed),
        };
        c.in_flight.fetch_sub(1, Relaxed);
        return record;
    };
    c.accepted.fetch_add(1, Relaxed);
    record.order_id = Some(view.order_id);
    let deadline = Instant::now() + s.track_timeout;
    let last = match &shared.tracker {
        Some(tracker) => follow_event(shared, tracker, view, deadline, &mut record).await,
        None => {
            record.tracked_by = Some(Tracking::Polled);
            poll(shared, view, deadline, &mut record).await
        }
    };
    record.status = Some(last.status.clone());
    record.failure_reason = last.failure_reason.clone();
    match last.status.as_str() {
        "COMPLETED" => c.completed.fetch_add(1, Relaxed),
        "FAILED" => c.failed.fetch_add(1, Relaxed),
        _ => 0,
    };
    if record.terminal() {
        let ms = (last.updated_at - due_wall).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        record.e2e_ms = Some(ms.max(0.0));
    }
    c.in_flight.fetch_sub(1, Relaxed);
    record
}

/// Waits for the order's lifecycle event; one GET if none comes by `deadline`, polling if the
/// tap stops.
async fn follow_event(
    shared: &Shared,
    tracker: &Tracker,
    view: OrderView,
    deadline: Instant,
    record: &mut Record,
) -> OrderView {
    let order_id = view.order_id;
    // Cannot happen today (a new order is PENDING), but a terminal answer needs no waiting.
    if view.status != "PENDING" {
        record.tracked_by = Some(Tracking::Polled);
        return view;
    }
    let mut receiver = match tracker.register(order_id) {
        Registration::Ended(ending) => {
            record.tracked_by = Some(Tracking::Event);
            return ending.into();
        }
        Registration::Waiting(receiver) => receiver,
        Registration::TapClosed => {
            record.tracked_by = Some(Tracking::Polled);
            return poll(shared, view, deadline, record).await;
        }
    };
    match tokio::time::timeout_at(deadline.into(), &mut receiver).await {
        Ok(Ok(ending)) => {
            record.tracked_by = Some(Tracking::Event);
            ending.into()
        }
        // The sender was dropped: the tap stopped.
        Ok(Err(_)) => {
            record.tracked_by = Some(Tracking::Polled);
            poll(shared, view, deadline, record).await
        }
        Err(_elapsed) => {
            tracker.forget(order_id);
            // The event may have been sent between the deadline and forget().
            if let Ok(ending) = receiver.try_recv() {
                record.tracked_by = Some(Tracking::Event);
                return ending.into();
            }
            record.tracked_by = Some(Tracking::FallbackGet);
            record.polls += 1;
            get_order(shared, order_id, &record.customer_id)
                .await
                .unwrap_or(view)
        }
    }
}

/// Polls until the order is terminal or `deadline` passes; returns the last view read.
async fn poll(
    shared: &Shared,
    mut last: OrderView,
    deadline: Instant,
    record: &mut Record,
) -> OrderView {
    let (s, c) = (&shared.settings, &shared.counters);
    let mut delay = FIRST_POLL;
    while last.status == "PENDING" && Instant::now() < deadline {
        tokio::time::sleep(delay).await;
        let in_flight = c.in_flight.load(Relaxed) as f64;
        let fair_share = Duration::from_secs_f64(in_flight / s.poll_budget);
        delay = (delay * 2).min(MAX_POLL.max(fair_share));
        record.polls += 1;
        // A failed poll is retried at the next step; only the deadline ends tracking.
        if let Some(view) = get_order(shared, last.order_id, &record.customer_id).await {
            last = view;
        }
    }
    last
}

/// `GET /api/orders/{id}` as the order's customer; `None` when it fails or answers with an
/// error.
async fn get_order(shared: &Shared, order_id: Uuid, customer_id: &str) -> Option<OrderView> {
    let url = format!("{}/api/orders/{order_id}", shared.settings.orchestrator);
    let get = shared
        .credentials
        .customer(shared.http.get(&url), customer_id);
    let response = get.send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<OrderView>().await.ok()
}
