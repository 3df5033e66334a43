//! Deciding a step in memory: the pure transition, and the messages, deadline and pending
//! command it implies. The first step ([`start`]) and every later one ([`plan`]) go through
//! the same [`step`], so one rule decides which command a saga waits on.
//!
//! Resends back off: the deadline after the n-th resend in a state is [`backoff`]`(timeout, n)`,
//! computed from the count the saga stores (`resends`), so planning stays a pure function of the
//! saga, the event and the clock. [`Plan::hold`] turns a resend into an attempt that sends
//! nothing (the sweep's choice when the participant is down and the copy sent before still
//! waits in its queue); [`waits_on`] names that queue.

use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use uuid::Uuid;

use saga_common::messaging::{OutgoingMessage, topology};

use super::effects::message_for;
use super::machine::{self, InvalidTransition, SagaCommand, SagaEvent, SagaState};
use super::store::{Saga, Step};
use crate::configuration::SagaSettings;

/// What the first timeline entry names as its trigger.
pub const ORDER_PLACED: &str = "order.placed";
/// Timeline trigger of a deadline that passed while the participant was down: counted as a
/// resend, no copy sent (see [`Plan::hold`]).
pub const PARTICIPANT_DOWN: &str = "deadline.participant_down";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
    #[error("saga {0} has no pending command to resend")]
    NothingPending(Uuid),
    #[error("cannot build a message: {0}")]
    Message(#[from] serde_json::Error),
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// What caused the step, for the timeline and the messages' causation.
#[derive(Debug, Clone)]
pub struct Trigger<'a> {
    /// Message type, or `order.placed`, `deadline.passed`, `operator.retry`, ...
    pub kind: &'a str,
    pub message_id: Uuid,
    pub correlation_id: &'a str,
    /// The trace context the step continues (`traceparent`, `tracestate`): the reply's, as its
    /// consumer span left it; `None` continues the span current here (the order's HTTP request)
    /// or, outside any, starts a trace.
    pub parent: Option<(&'a str, Option<&'a str>)>,
}

/// One step, decided and not yet written.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub order_id: Uuid,
    /// `None` for the first step: the saga is written with its order.
    pub from: Option<SagaState>,
    /// The version the step was decided on: the write only lands on a saga still at it.
    pub expected_version: i32,
    pub step: Step,
    /// Timeline trigger: message type or `deadline.passed`, ...
    pub trigger: String,
    pub trigger_message_id: Uuid,
    /// New messages, in order.
    pub messages: Vec<OutgoingMessage>,
    /// The pending command to publish again, by its message id (same id, same body).
    pub resend: Option<Uuid>,
}

impl Plan {
    /// Whether this step takes its saga from in flight to a final state.
    pub fn ends_saga(&self) -> bool {
        self.step.to.is_final() && self.from.is_none_or(|from| !from.is_final())
    }

    /// This resend as an attempt that sends no copy: the count and the backed-off deadline stay
    /// (so the forward path still runs out of resends and compensates), the outbox gets
    /// nothing, and the timeline names it [`PARTICIPANT_DOWN`]. Any other step is unchanged.
    pub fn hold(mut self) -> Self {
        if self.resend.take().is_some() {
            self.trigger = PARTICIPANT_DOWN.to_owned();
        }
        self
    }

    /// `saga` as it is once this step is written: the next event for the same saga in a batch
    /// is planned on it.
    pub fn advance(&self, saga: &mut Saga) {
        saga.state = self.step.to;
        saga.version += 1;
        saga.deadline_at = self.step.deadline_at;
        saga.resends = self.step.resends;
        saga.pending_message_id = self.step.pending_message_id;
    }
}

/// The first step of a new saga (`saga.state` is ignored: every saga starts the same way).
pub fn start(
    saga: &Saga,
    trigger: &Trigger<'_>,
    settings: &SagaSettings,
    now: DateTime<Utc>,
) -> Result<Plan, ApplyError> {
    let (to, commands) = machine::start();
    step(saga, None, to, &commands, trigger, settings, now)
}

/// Decides what `event` does to `saga`; `None` when it changes nothing (a duplicate or late
/// reply, a stale deadline).
pub fn plan(
    saga: &Saga,
    event: SagaEvent,
    trigger: &Trigger<'_>,
    settings: &SagaSettings,
    now: DateTime<Utc>,
) -> Result<Option<Plan>, ApplyError> {
    let (to, commands) = machine::transition(saga.state, event)?;
    if to == saga.state && commands.is_empty() {
        return Ok(None);
    }
    step(
        saga,
        Some(saga.state),
        to,
        &commands,
        trigger,
        settings,
        now,
    )
    .map(Some)
}

fn step(
    saga: &Saga,
    from: Option<SagaState>,
    to: SagaState,
    commands: &[SagaCommand],
    trigger: &Trigger<'_>,
    settings: &SagaSettings,
    now: DateTime<Utc>,
) -> Result<Plan, ApplyError> {
    // The step's span is the parent of the messages it writes (built while it is entered).
    let span = saga_common::telemetry::spans::transition(
        saga.order_id,
        from.map_or("new", SagaState::name),
        to.name(),
        trigger.kind,
        trigger.parent,
    );
    let _entered = span.enter();
    let mut messages: Vec<OutgoingMessage> = Vec::new();
    let mut resend = None;
    for command in commands {
        match message_for(
            *command,
            saga,
            trigger.correlation_id,
            Some(trigger.message_id),
        )? {
            Some(message) => messages.push(message),
            // ResendPending: the stored command again, same id.
            None => {
                resend = Some(
                    saga.pending_message_id
                        .ok_or(ApplyError::NothingPending(saga.order_id))?,
                );
            }
        }
    }
    let resends = if from != Some(to) {
        0
    } else if resend.is_some() {
        saga.resends + 1
    } else {
        saga.resends
    };
    // A new saga waits on nothing yet.
    let pending_message_id = pending(to, &messages, from.and(saga.pending_message_id));
    Ok(Plan {
        order_id: saga.order_id,
        from,
        expected_version: saga.version,
        step: Step {
            to,
            deadline_at: deadline(settings, to, resends, now),
            resends,
            pending_message_id,
        },
        trigger: trigger.kind.to_owned(),
        trigger_message_id: trigger.message_id,
        messages,
        resend,
    })
}

/// The command a saga in `to` waits on: the newest command sent, or the one it waited on
/// before (a resend, or a step that sent only events); none once final.
fn pending(to: SagaState, sent: &[OutgoingMessage], before: Option<Uuid>) -> Option<Uuid> {
    if to.is_final() {
        return None;
    }
    sent.iter()
        .rev()
        .find(|m| m.exchange == topology::COMMANDS_EXCHANGE)
        .map(|m| m.envelope.message_id)
        .or(before)
}

/// When a saga in `state` at `now`, having resent its command `resends` times in it, expires;
/// `None` for final states.
pub fn deadline(
    settings: &SagaSettings,
    state: SagaState,
    resends: i32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let timeout = match state {
        SagaState::AwaitingPayment => settings.awaiting_payment_timeout_ms,
        SagaState::AwaitingStock => settings.awaiting_stock_timeout_ms,
        SagaState::ReleasingStock(_) | SagaState::RefundingPayment(_) => {
            settings.compensation_timeout_ms
        }
        SagaState::Completed | SagaState::Failed(_) => return None,
    };
    // Clamped, so that no setting, however large, leaves a saga without a deadline.
    let ms = backoff(timeout, resends, settings.max_resend_interval_ms).min(LONGEST_WAIT_MS);
    now.checked_add_signed(chrono::Duration::try_milliseconds(i64::try_from(ms).ok()?)?)
}

/// Ten years: the longest any deadline is set ahead.
const LONGEST_WAIT_MS: u64 = 10 * 366 * 24 * 3_600 * 1_000;

/// The wait after the `resends`-th resend: `timeout × 2^resends` ms, at most `cap` (but never
/// less than `timeout`, so a cap set below a timeout cannot make resends come faster than the
/// first deadline). Saturates instead of overflowing, whatever the count.
pub fn backoff(timeout: u64, resends: i32, cap: u64) -> u64 {
    let cap = cap.max(timeout);
    let factor = u32::try_from(resends.max(0))
        .ok()
        .and_then(|n| 2u64.checked_pow(n));
    factor
        .and_then(|factor| timeout.checked_mul(factor))
        .map_or(cap, |wait| wait.min(cap))
}

/// The work queue of the participant a saga in `state` waits on; `None` once final.
pub fn waits_on(state: SagaState) -> Option<&'static str> {
    match state {
        SagaState::AwaitingPayment | SagaState::RefundingPayment(_) => {
            Some(topology::PAYMENT_COMMANDS)
        }
        SagaState::AwaitingStock | SagaState::ReleasingStock(_) => {
            Some(topology::INVENTORY_COMMANDS)
        }
        SagaState::Completed | SagaState::Failed(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::machine::FailureReason;

    const CAP: u64 = 600_000;

    #[test]
    fn the_first_wait_is_the_timeout_and_each_resend_doubles_it() {
        assert_eq!(backoff(30_000, 0, CAP), 30_000);
        assert_eq!(backoff(30_000, 1, CAP), 60_000);
        assert_eq!(backoff(30_000, 2, CAP), 120_000);
        assert_eq!(backoff(30_000, 4, CAP), 480_000);
    }

    #[test]
    fn the_wait_stops_growing_at_the_cap() {
        assert_eq!(backoff(30_000, 5, CAP), CAP);
        assert_eq!(backoff(30_000, 40, CAP), CAP);
    }

    #[test]
    fn large_counts_and_timeouts_saturate_at_the_cap_instead_of_overflowing() {
        assert_eq!(backoff(30_000, 63, CAP), CAP);
        assert_eq!(backoff(30_000, 64, CAP), CAP);
        assert_eq!(backoff(30_000, i32::MAX, CAP), CAP);
        assert_eq!(backoff(u64::MAX / 2, 3, u64::MAX), u64::MAX);
        assert_eq!(backoff(30_000, i32::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn a_cap_below_the_timeout_never_shortens_the_wait() {
        assert_eq!(backoff(30_000, 0, 1_000), 30_000);
        assert_eq!(backoff(30_000, 3, 1_000), 30_000);
        assert_eq!(
            backoff(30_000, -1, CAP),
            30_000,
            "a negative count is no resend"
        );
    }

    #[test]
    fn a_deadline_exists_for_every_state_in_flight_whatever_the_settings() {
        let settings = SagaSettings {
            compensation_timeout_ms: u64::MAX,
            max_resend_interval_ms: u64::MAX,
            ..SagaSettings::default()
        };
        let now = Utc::now();
        let state = SagaState::RefundingPayment(FailureReason::TimedOut);
        for resends in [0, 1, 64, i32::MAX] {
            assert!(deadline(&settings, state, resends, now).is_some_and(|d| d > now));
        }
        assert_eq!(deadline(&settings, SagaState::Completed, 0, now), None);
    }

    fn saga(state: SagaState, resends: i32) -> Saga {
        Saga {
            order_id: Uuid::now_v7(),
            customer_id: "ann".into(),
            items: Vec::new(),
            total_cents: 100,
            state,
            version: 3,
            deadline_at: None,
            resends,
            pending_message_id: Some(Uuid::now_v7()),
            correlation_id: "c-1".into(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            traceparent: None,
        }
    }

    fn deadline_passed(saga: &Saga, settings: &SagaSettings, now: DateTime<Utc>) -> Plan {
        let trigger = Trigger {
            kind: "deadline.passed",
            message_id: Uuid::now_v7(),
            correlation_id: "c-1",
            parent: None,
        };
        plan(saga, SagaEvent::DeadlinePassed, &trigger, settings, now)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_resend_counts_and_waits_twice_as_long_as_the_one_before() {
        let settings = SagaSettings {
            compensation_timeout_ms: 1_000,
            max_resend_interval_ms: 5_000,
            ..SagaSettings::default()
        };
        let now = Utc::now();
        let state = SagaState::RefundingPayment(FailureReason::OutOfStock);
        for (before, wait_ms) in [(0, 2_000), (1, 4_000), (2, 5_000), (1_000, 5_000)] {
            let saga = saga(state, before);
            let plan = deadline_passed(&saga, &settings, now);
            assert_eq!(plan.resend, saga.pending_message_id);
            assert_eq!(plan.step.resends, before + 1);
            assert_eq!(
                plan.step.deadline_at,
                Some(now + chrono::Duration::milliseconds(wait_ms))
            );
        }
    }

    #[test]
    fn a_new_state_starts_again_at_its_timeout() {
        let settings = SagaSettings {
            awaiting_stock_timeout_ms: 1_000,
            ..SagaSettings::default()
        };
        let now = Utc::now();
        let trigger = Trigger {
            kind: "payment.charged",
            message_id: Uuid::now_v7(),
            correlation_id: "c-1",
            parent: None,
        };
        let saga = saga(SagaState::AwaitingPayment, 2);
        let plan = plan(&saga, SagaEvent::PaymentCharged, &trigger, &settings, now)
            .unwrap()
            .unwrap();
        assert_eq!(plan.step.resends, 0);
        assert_eq!(
            plan.step.deadline_at,
            Some(now + chrono::Duration::milliseconds(1_000))
        );
    }

    #[test]
    fn a_held_resend_counts_and_backs_off_but_sends_nothing() {
        let settings = SagaSettings::default();
        let now = Utc::now();
        let saga = saga(SagaState::AwaitingPayment, 1);
        let resend = deadline_passed(&saga, &settings, now);
        let held = resend.clone().hold();
        assert_eq!(held.resend, None);
        assert!(held.messages.is_empty());
        assert_eq!(held.trigger, PARTICIPANT_DOWN);
        assert_eq!(
            held.step, resend.step,
            "counted and backed off all the same"
        );
        assert_eq!(held.step.pending_message_id, saga.pending_message_id);
    }

    #[test]
    fn holding_a_step_that_resends_nothing_changes_nothing() {
        let settings = SagaSettings::default();
        let saga = saga(SagaState::AwaitingPayment, 3);
        let trigger = Trigger {
            kind: "deadline.resends_exhausted",
            message_id: Uuid::now_v7(),
            correlation_id: "c-1",
            parent: None,
        };
        let compensate = plan(
            &saga,
            SagaEvent::ResendsExhausted,
            &trigger,
            &settings,
            Utc::now(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(compensate.clone().hold(), compensate);
    }

    #[test]
    fn each_state_in_flight_waits_on_its_participant_s_queue() {
        let reason = FailureReason::TimedOut;
        assert_eq!(
            waits_on(SagaState::AwaitingPayment),
            Some(topology::PAYMENT_COMMANDS)
        );
        assert_eq!(
            waits_on(SagaState::RefundingPayment(reason)),
            Some(topology::PAYMENT_COMMANDS)
        );
        assert_eq!(
            waits_on(SagaState::AwaitingStock),
            Some(topology::INVENTORY_COMMANDS)
        );
        assert_eq!(
            waits_on(SagaState::ReleasingStock(reason)),
            Some(topology::INVENTORY_COMMANDS)
        );
        assert_eq!(waits_on(SagaState::Completed), None);
        assert_eq!(waits_on(SagaState::Failed(reason)), None);
    }
}
