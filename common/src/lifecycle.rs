//! Saga lifecycle lines: what an operator reads at the default level, one line per saga event
//! that matters (docs/observability.md, "Logs").
//!
//! - [`Event`]: every such event, with its stable `event` code, its stable message and its level.
//! - [`Subject`]: whose saga it is (`order_id`, `saga_id`, `correlation_id`, `trace_id`);
//!   [`OwnedSubject`] keeps it for a note said after commit.
//! - [`Line`]: one line to write, with the few details an event has; [`Line::write`] writes it.
//! - Sampling: the lines of successful steps are written for a share of the orders
//!   (`telemetry.log_success_ratio`, [`set_success_ratio`]), chosen by a hash of the order id
//!   ([`sampled`]), so an order sampled in one service is sampled in every one and keeps all its
//!   lines. Failures, declines, compensations, timeouts and dead letters are always written.
//!
//! Callers write a line only once the fact it reports is committed: through
//! `Enqueued::after_commit` or after the commit call returned, so a batch rolled back and
//! handled again never says it twice.

use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use crate::messaging::Envelope;

/// A saga event an operator sees at the default level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Orchestrator: an order was accepted and its saga started.
    SagaStarted,
    /// Payment: the order's amount was charged.
    PaymentCharged,
    /// Payment: the charge was declined (insufficient funds, unknown account).
    PaymentDeclined,
    /// Payment: the charge was refunded (compensation).
    PaymentRefunded,
    /// Inventory: the order's stock was reserved.
    StockReserved,
    /// Inventory: the reservation was refused (out of stock, unknown product).
    StockRejected,
    /// Inventory: the reservation was released (compensation).
    StockReleased,
    /// Inventory: a reservation took a product below its low-stock threshold, and
    /// `inventory.low_stock` was published (once per crossing).
    StockLow,
    /// Orchestrator: the saga ended COMPLETED.
    SagaCompleted,
    /// Orchestrator: the saga ended FAILED, with its reason.
    SagaFailed,
    /// Orchestrator: a deadline passed and the pending command was sent again.
    TimeoutResent,
    /// Orchestrator: the last resend went unanswered; the saga compensates.
    TimeoutCompensating,
    /// Orchestrator: an operator resent the pending command (`POST /api/sagas/{id}/retry`).
    OperatorRetried,
    /// Orchestrator: an operator started compensation (`POST /api/sagas/{id}/compensate`).
    OperatorCompensating,
    /// Any service: a dead letter was published again (`POST /api/admin/dead-letters/replay`).
    DeadLetterReplayed,
    /// Any service: a dead letter was removed (`DELETE /api/admin/dead-letters/{id}`).
    DeadLetterDeleted,
    /// Notification: the order's e-mail (confirmation or failure notice) was accepted by the
    /// SMTP server.
    NotificationSent,
    /// Notification: the order's e-mail could not be sent, after its last attempt.
    NotificationFailed,
}

impl Event {
    /// The `event` field: stable, for grep and log queries.
    pub fn code(self) -> &'static str {
        match self {
            Self::SagaStarted => "saga.started",
            Self::PaymentCharged => "payment.charged",
            Self::PaymentDeclined => "payment.declined",
            Self::PaymentRefunded => "payment.refunded",
            Self::StockReserved => "stock.reserved",
            Self::StockRejected => "stock.rejected",
            Self::StockReleased => "stock.released",
            Self::StockLow => "stock.low",
            Self::SagaCompleted => "saga.completed",
            Self::SagaFailed => "saga.failed",
            Self::TimeoutResent => "saga.timeout_resent",
            Self::TimeoutCompensating => "saga.timeout_compensating",
            Self::OperatorRetried => "saga.operator_retried",
            Self::OperatorCompensating => "saga.operator_compensating",
            Self::DeadLetterReplayed => "dead_letter.replayed",
            Self::DeadLetterDeleted => "dead_letter.deleted",
            Self::NotificationSent => "notification.sent",
            Self::NotificationFailed => "notification.failed",
        }
    }

    /// The line's message, as stable as the code.
    pub fn message(self) -> &'static str {
        match self {
            Self::SagaStarted => "saga started",
            Self::PaymentCharged => "payment charged",
            Self::PaymentDeclined => "payment declined",
            Self::PaymentRefunded => "payment refunded",
            Self::StockReserved => "stock reserved",
            Self::StockRejected => "stock reservation rejected",
            Self::StockReleased => "stock released",
            Self::StockLow => "stock below its low-stock threshold",
            Self::SagaCompleted => "saga completed",
            Self::SagaFailed => "saga failed",
            Self::TimeoutResent => "saga past its deadline; pending command resent",
            Self::TimeoutCompensating => "saga past its deadline; compensating",
            Self::OperatorRetried => "operator resent the saga's pending command",
            Self::OperatorCompensating => "operator compensating the saga",
            Self::DeadLetterReplayed => "dead letter replayed",
            Self::DeadLetterDeleted => "dead letter deleted",
            Self::NotificationSent => "notification e-mail sent",
            Self::NotificationFailed => "notification e-mail failed",
        }
    }

    /// A step of the happy path: its line is sampled ([`sampled`]); every other line is
    /// always written.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Self::SagaStarted
                | Self::PaymentCharged
                | Self::StockReserved
                | Self::SagaCompleted
                | Self::NotificationSent
        )
    }

    /// `warn` for what no order meets on the happy path and may need a look (deadlines,
    /// operators' actions); `info` for the rest, declines and failures included: they are
    /// business outcomes, not faults.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Self::TimeoutResent
                | Self::TimeoutCompensating
                | Self::OperatorRetried
                | Self::OperatorCompensating
                | Self::NotificationFailed
        )
    }
}

/// Whose saga a line is about. In this fleet a saga's id is its order's id.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub order_id: Uuid,
    pub correlation_id: &'a str,
    /// The W3C trace id, when the message carried a `traceparent`; `None` leaves the field to
    /// the enclosing span (the HTTP request's).
    pub trace_id: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// The saga a message is about, with the trace it belongs to.
    pub fn of(envelope: &'a Envelope) -> Self {
        Self {
            order_id: envelope.saga_id,
            correlation_id: &envelope.correlation_id,
            trace_id: envelope.trace_id(),
        }
    }
}

/// A [`Subject`] that owns its strings, for a note said after commit.
#[derive(Debug, Clone)]
pub struct OwnedSubject {
    pub order_id: Uuid,
    pub correlation_id: String,
    pub trace_id: Option<String>,
}

impl OwnedSubject {
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            order_id: envelope.saga_id,
            correlation_id: envelope.correlation_id.clone(),
            trace_id: envelope.trace_id().map(str::to_owned),
        }
    }

    pub fn subject(&self) -> Subject<'_> {
        Subject {
            order_id: self.order_id,
            correlation_id: &self.correlation_id,
            trace_id: self.trace_id.as_deref(),
        }
    }
}

/// One lifecycle line: the event, its saga and the details the event has.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub event: Event,
    pub subject: Subject<'a>,
    /// Why: a failure reason code (`payment_declined`, `out_of_stock`, `timed_out`), a decline's
    /// or a rejection's reason, a dead letter's reason.
    pub reason: Option<&'a str>,
    /// The saga state it is in (or went to).
    pub state: Option<&'a str>,
    /// An amount charged or refunded.
    pub amount_cents: Option<i64>,
    /// Resends so far in the current state.
    pub resends: Option<i32>,
    /// From the order's creation to its end, for a saga that ended.
    pub duration_ms: Option<i64>,
    /// The message a dead-letter line is about.
    pub message_id: Option<&'a str>,
    /// The product a stock line is about, its `available` units and its low-stock threshold.
    pub product_id: Option<&'a str>,
    pub available: Option<i32>,
    pub threshold: Option<i32>,
}

impl<'a> Line<'a> {
    pub fn new(event: Event, subject: Subject<'a>) -> Self {
        Self {
            event,
            subject,
            reason: None,
            state: None,
            amount_cents: None,
            resends: None,
            duration_ms: None,
            message_id: None,
            product_id: None,
            available: None,
            threshold: None,
        }
    }

    pub fn reason(mut self, reason: &'a str) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn state(mut self, state: &'a str) -> Self {
        self.state = Some(state);
        self
    }

    pub fn amount_cents(mut self, amount: i64) -> Self {
        self.amount_cents = Some(amount);
        self
    }

    pub fn resends(mut self, resends: i32) -> Self {
        self.resends = Some(resends);
        self
    }

    pub fn duration_ms(mut self, duration_ms: i64) -> Self {
        self.duration_ms = Some(duration_ms);
        self
    }

    pub fn message_id(mut self, message_id: &'a str) -> Self {
        self.message_id = Some(message_id);
        self
    }

    /// A product's stock: its id, `available` units and low-stock threshold.
    pub fn stock(mut self, product_id: &'a str, available: i32, threshold: i32) -> Self {
        self.product_id = Some(product_id);
        self.available = Some(available);
        self.threshold = Some(threshold);
        self
    }

    /// Writes the line, unless its level is filtered out or it is a successful step of an order
    /// outside the sample. Its saga's fields go on a span of their own around it, so they
    /// replace (rather than repeat) those of an enclosing span, such as a whole batch's.
    pub fn write(&self) {
        let warning = self.event.is_warning();
        let enabled = if warning {
            tracing::enabled!(tracing::Level::WARN)
        } else {
            tracing::enabled!(tracing::Level::INFO)
        };
        if !enabled || (self.event.is_success() && !sampled(self.subject.order_id, success_ratio()))
        {
            return;
        }
        let span = tracing::info_span!(
            "saga",
            order_id = %self.subject.order_id,
            saga_id = %self.subject.order_id,
            correlation_id = self.subject.correlation_id,
            trace_id = self.subject.trace_id,
        );
        let _entered = span.enter();
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    event = self.event.code(),
                    reason = self.reason,
                    state = self.state,
                    amount_cents = self.amount_cents,
                    resends = self.resends,
                    duration_ms = self.duration_ms,
                    message_id = self.message_id,
                    product_id = self.product_id,
                    available = self.available,
                    threshold = self.threshold,
                    "{}",
                    self.event.message()
                )
            };
        }
        if warning {
            line!(warn);
        } else {
            line!(info);
        }
    }
}

/// `telemetry.log_success_ratio`, as the bits of an `f64`: one per process, set at start.
static SUCCESS_RATIO: AtomicU64 = AtomicU64::new(0x3FF0_0000_0000_0000); // 1.0

/// Sets the share of orders whose successful steps write their lines (clamped to 0.0..=1.0).
/// Called by `Application::build`; several services in one test process share it.
pub fn set_success_ratio(ratio: f64) {
    SUCCESS_RATIO.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
}

pub fn success_ratio() -> f64 {
    f64::from_bits(SUCCESS_RATIO.load(Ordering::Relaxed))
}

/// Whether `order_id` is among the `ratio` of orders whose successful steps are logged. A pure
/// function of the id, the same in every process, so a sampled order has all its lines.
pub fn sampled(order_id: Uuid, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    // splitmix64's finaliser over both halves: a UUIDv7's first half is its clock, so the id
    // is mixed whole rather than cut.
    let (high, low) = order_id.as_u64_pair();
    let mut z = high ^ low.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 53 bits as a fraction in [0, 1).
    ((z >> 11) as f64) / ((1u64 << 53) as f64) < ratio
}

#[cfg(test)]
mod tests;
