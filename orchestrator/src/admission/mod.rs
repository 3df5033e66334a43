//! Admission control: how much work `POST /api/orders` takes on before it answers
//! `503 overloaded` with `Retry-After` instead of accepting orders it would only start much later.
//!
//! - [`Admission`]: the running count of sagas in flight (status `PENDING`) and the bound on it.
//!   A request reserves a slot before its order is queued ([`Admission::admit`], a [`Ticket`]);
//!   the slot is kept once the order is inserted and given back otherwise; the reply consumer
//!   gives slots back as sagas end ([`Admission::ended`]). No database query per request.
//! - [`recount`]: the periodic `count(*)` of `PENDING` orders that seeds the count at start and
//!   corrects it: other instances' orders and ends, and anything this process missed.
//! - Refusals are counted (for metrics) and logged at most once per [`WARN_EVERY`].
//!
//! The intake's queue bound is the intake's own (`orders::intake`, `IntakeError::Full`); a
//! refusal there is recorded here too ([`Admission::refuse`]).
//!
//! A leaf like `state`: it imports only the settings, so both `orders` and `saga` use it.

pub mod recount;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use saga_common::http::ApiError;

use crate::configuration::AdmissionSettings;

/// While shedding, at most one warning per this long (with the refusals since the last one).
pub const WARN_EVERY: Duration = Duration::from_secs(5);

/// Why an order was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// `admission.max_in_flight` sagas have not ended yet.
    InFlight,
    /// `admission.max_queued` orders are waiting for the intake's writers.
    QueueFull,
}

impl Shed {
    fn as_str(self) -> &'static str {
        match self {
            Self::InFlight => "in_flight",
            Self::QueueFull => "queue_full",
        }
    }
}

/// A refused order: answered `503 overloaded` with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    pub reason: Shed,
    pub retry_after_secs: u64,
}

impl From<Overloaded> for ApiError {
    fn from(refused: Overloaded) -> Self {
        let message = match refused.reason {
            Shed::InFlight => {
                "the orchestrator has as many orders in progress as it takes on; retry later"
            }
            Shed::QueueFull => "orders arrive faster than they can be stored; retry later",
        };
        ApiError::overloaded(message).with_retry_after(refused.retry_after_secs)
    }
}

/// Orders refused so far, by reason (for metrics: issue 25 exports them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShedCounts {
    pub in_flight: u64,
    pub queue_full: u64,
}

impl ShedCounts {
    pub fn total(&self) -> u64 {
        self.in_flight + self.queue_full
    }
}

/// The bound and the count; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AdmissionSettings,
    /// Sagas in flight as this process knows them: the last database count, plus the orders
    /// inserted here since, minus the sagas ended here since. May go below zero between counts
    /// (another instance accepted what this one ended).
    in_flight: AtomicI64,
    /// Slots taken by orders not yet inserted (queued, or being written). Apart from
    /// `in_flight` because the recount must not correct them: they are not in the table yet,
    /// and an order committed while the count runs would otherwise be lost until the next one.
    reserved: AtomicI64,
    shed_in_flight: AtomicU64,
    shed_queue_full: AtomicU64,
    /// When the last warning was logged, as milliseconds since `started`.
    started: Instant,
    next_warning_ms: AtomicU64,
    /// Refusals already reported by a warning.
    reported: AtomicU64,
}

/// A reserved slot: kept with [`Ticket::keep`] once the order is inserted (its saga is then in
/// flight until it ends); given back when dropped otherwise (a replayed key, an error, a client
/// that went away).
#[must_use = "a ticket dropped gives its slot back"]
pub struct Ticket {
    admission: Option<Admission>,
}

impl Ticket {
    /// The order was inserted (committed): its slot stays taken until its saga ends.
    pub fn keep(mut self) {
        if let Some(admission) = self.admission.take() {
            // In flight first, then no longer reserved: the sum never dips below the truth.
            admission.inner.in_flight.fetch_add(1, Ordering::Relaxed);
            admission.inner.reserved.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            admission.inner.reserved.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Admission {
    pub fn new(settings: &AdmissionSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                in_flight: AtomicI64::new(0),
                reserved: AtomicI64::new(0),
                shed_in_flight: AtomicU64::new(0),
                shed_queue_full: AtomicU64::new(0),
                started: Instant::now(),
                next_warning_ms: AtomicU64::new(0),
                reported: AtomicU64::new(0),
            }),
        }
    }

    pub fn settings(&self) -> &AdmissionSettings {
        &self.inner.settings
    }

    /// Reserves a slot for one more saga, or refuses (and records the refusal) when
    /// `max_in_flight` are taken. Disabled: always admits, counting nothing.
    pub fn admit(&self) -> Result<Ticket, Overloaded> {
        let settings = &self.inner.settings;
        if !settings.enabled {
            return Ok(Ticket { admission: None });
        }
        let max = i64::try_from(settings.max_in_flight).unwrap_or(i64::MAX);
        // Reserve first, then check: requests racing for the last slot cannot all take it.
        let reserved = self.inner.reserved.fetch_add(1, Ordering::Relaxed);
        if self.counted().saturating_add(reserved) >= max {
            self.inner.reserved.fetch_sub(1, Ordering::Relaxed);
            return Err(self.refuse(Shed::InFlight));
        }
        Ok(Ticket {
            admission: Some(self.clone()),
        })
    }

    /// `sagas` ended in this process (committed, or about to be): their slots are free.
    pub fn ended(&self, sagas: usize) {
        if sagas > 0 && self.inner.settings.enabled {
            let sagas = i64::try_from(sagas).unwrap_or(i64::MAX);
            self.inner.in_flight.fetch_sub(sagas, Ordering::Relaxed);
        }
    }

    /// Records a refusal for `reason` (counted, and logged at most once per [`WARN_EVERY`]).
    pub fn refuse(&self, reason: Shed) -> Overloaded {
        let counter = match reason {
            Shed::InFlight => &self.inner.shed_in_flight,
            Shed::QueueFull => &self.inner.shed_queue_full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.warn(reason);
        Overloaded {
            reason,
            retry_after_secs: self.inner.settings.retry_after_secs,
        }
    }

    /// What this process admits against: the sagas in flight and the orders on their way in.
    pub fn in_flight(&self) -> i64 {
        self.counted()
            .saturating_add(self.inner.reserved.load(Ordering::Relaxed))
    }

    /// The sagas in flight (the last count, corrected by what happened here since).
    fn counted(&self) -> i64 {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Orders refused since start, by reason.
    pub fn shed(&self) -> ShedCounts {
        ShedCounts {
            in_flight: self.inner.shed_in_flight.load(Ordering::Relaxed),
            queue_full: self.inner.shed_queue_full.load(Ordering::Relaxed),
        }
    }

    /// A database count `counted`, started when this process's count read `before`: the count
    /// becomes `counted` plus what changed here since `before` was read. A change committed
    /// while the count ran may be counted twice until the next count: an insert (counted only
    /// once committed) then counts too much, never too little; an end (counted just before its
    /// commit) either way.
    fn corrected(&self, counted: i64, before: i64) {
        self.inner
            .in_flight
            .fetch_add(counted - before, Ordering::Relaxed);
    }

    fn warn(&self, reason: Shed) {
        let inner = &self.inner;
        let now = u64::try_from(inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due = inner.next_warning_ms.load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        // One caller wins the exchange; the others refuse silently.
        if now < due
            || inner
                .next_warning_ms
                .compare_exchange(
                    due,
                    now.saturating_add(every),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let total = self.shed().total();
        let refused = total - inner.reported.swap(total, Ordering::Relaxed).min(total);
        tracing::warn!(
            refused,
            reason = reason.as_str(),
            in_flight = self.in_flight(),
            max_in_flight = inner.settings.max_in_flight,
            max_queued = inner.settings.max_queued,
            "shedding orders: answering 503 overloaded (at most one such line per {}s)",
            WARN_EVERY.as_secs(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(max_in_flight: u64) -> Admission {
        Admission::new(&AdmissionSettings {
            max_in_flight,
            ..AdmissionSettings::default()
        })
    }

    #[test]
    fn orders_past_the_bound_are_refused_and_counted() {
        let admission = bounded(2);
        let first = admission.admit();
        let second = admission.admit();
        assert!(first.is_ok() && second.is_ok());
        let refused = admission.admit().err();
        assert_eq!(
            refused,
            Some(Overloaded {
                reason: Shed::InFlight,
                retry_after_secs: 1
            })
        );
        assert_eq!(admission.in_flight(), 2);
        assert_eq!(admission.shed().in_flight, 1);
    }

    #[test]
    fn a_dropped_ticket_gives_its_slot_back_and_a_kept_one_holds_it_until_the_saga_ends() {
        let admission = bounded(1);
        drop(admission.admit());
        assert_eq!(admission.in_flight(), 0);
        if let Ok(ticket) = admission.admit() {
            ticket.keep();
        }
        assert_eq!(admission.in_flight(), 1);
        assert!(admission.admit().is_err());
        admission.ended(1);
        assert!(admission.admit().is_ok());
    }

    #[test]
    fn a_recount_keeps_what_changed_while_it_ran_and_leaves_reservations_alone() {
        let admission = bounded(10);
        let before = admission.counted();
        // Inserted while the count ran, after its snapshot: not in `counted`.
        if let Ok(ticket) = admission.admit() {
            ticket.keep();
        }
        // Still being written: in no count, but it holds its slot.
        let writing = admission.admit();
        admission.corrected(7, before);
        assert_eq!(admission.counted(), 8);
        assert_eq!(admission.in_flight(), 9);
        drop(writing);
        assert_eq!(admission.in_flight(), 8);
    }

    #[test]
    fn disabled_admits_everything_and_counts_nothing() {
        let admission = Admission::new(&AdmissionSettings {
            enabled: false,
            max_in_flight: 0,
            ..AdmissionSettings::default()
        });
        for _ in 0..3 {
            assert!(admission.admit().map(Ticket::keep).is_ok());
        }
        assert_eq!(admission.in_flight(), 0);
        assert_eq!(admission.shed(), ShedCounts::default());
    }

    #[test]
    fn refusals_are_counted_by_reason_and_warned_about_once_per_period() {
        let admission = bounded(0);
        for _ in 0..3 {
            assert!(admission.admit().is_err());
        }
        admission.refuse(Shed::QueueFull);
        assert_eq!(
            admission.shed(),
            ShedCounts {
                in_flight: 3,
                queue_full: 1
            }
        );
        // The first refusal warned and set the next warning a period later.
        let next = admission.inner.next_warning_ms.load(Ordering::Relaxed);
        assert!(next >= u64::try_from(WARN_EVERY.as_millis()).unwrap_or(0));
        assert_eq!(admission.inner.reported.load(Ordering::Relaxed), 1);
    }
}
