//! The `orchestrator.replies` consumer: replies in, saga steps out, a batch at a time.
//!
//! Two statements per batch: the first claims the replies in the inbox (duplicates drop out)
//! and locks their sagas in id order; each reply's step is then planned in memory, in delivery
//! order, and the second writes every step through the [`engine`](super::engine). The row locks
//! make a racing consumer or the timeout worker take turns, so two never both apply a
//! transition. A reply that contradicts its saga fails the batch, and is dead-lettered when
//! the consumer handles it alone. The sagas a batch ends free their admission slots
//! (`crate::admission`): replies are the only way a saga ends.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use saga_common::contracts::Reply;
use saga_common::db::{self, PartName, Reads};
use saga_common::lifecycle::OwnedSubject;
use saga_common::messaging::inbox;
use saga_common::messaging::outbox::Enqueued;
use saga_common::messaging::{Envelope, HandleError, MessageHandler};

use super::engine;
use super::facts::Ended;
use super::machine::SagaEvent;
use super::plan::{self, ApplyError, Trigger};
use super::store::{self, Saga};
use crate::admission::Admission;
use crate::configuration::SagaSettings;

/// Inbox consumer name.
pub const CONSUMER: &str = "orchestrator";

const CLAIMED: PartName = PartName::new("claimed");
const SAGAS: PartName = PartName::new("sagas");

pub struct SagaReplies {
    pub settings: SagaSettings,
    /// Told how many sagas each batch ended.
    pub admission: Admission,
}

/// Maps a reply to the saga event it reports, checking its payload on the way.
pub fn event_of(envelope: &Envelope) -> Result<SagaEvent, HandleError> {
    Ok(match envelope.decode::<Reply>()? {
        Reply::PaymentCharged(_) => SagaEvent::PaymentCharged,
        Reply::PaymentDeclined(_) => SagaEvent::PaymentDeclined,
        Reply::PaymentRefunded(_) => SagaEvent::PaymentRefunded,
        Reply::StockReserved(_) => SagaEvent::StockReserved,
        Reply::StockReservationFailed(_) => SagaEvent::StockReservationFailed,
        Reply::StockReleased(_) => SagaEvent::StockReleased,
    })
}

impl From<ApplyError> for HandleError {
    fn from(error: ApplyError) -> Self {
        match error {
            ApplyError::Invalid(invalid) => HandleError::permanent("invalid_transition", invalid),
            ApplyError::Message(error) => HandleError::invalid_payload(error),
            ApplyError::NothingPending(_) => HandleError::permanent("invalid_transition", error),
            ApplyError::Database(error) => error.into(),
        }
    }
}

impl MessageHandler for SagaReplies {
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        batch: &[Envelope],
    ) -> Result<Enqueued, HandleError> {
        let events = batch
            .iter()
            .map(event_of)
            .collect::<Result<Vec<SagaEvent>, HandleError>>()?;
        // One statement: claim the replies in the inbox, then lock their sagas.
        let order_ids: Vec<Uuid> = db::lock_order(batch.iter().map(|e| e.saga_id));
        let mut reads = Reads::new();
        reads
            .write(CLAIMED, inbox::claim_part(CONSUMER, batch)?)
            .read(SAGAS, Some(store::lock_read(&order_ids)));
        let mut loaded = reads.execute(txn).await?;
        let first: HashSet<Uuid> = loaded
            .take::<inbox::Claimed>(CLAIMED)?
            .into_iter()
            .map(|claimed| claimed.message_id)
            .collect();
        let mut orders: HashMap<Uuid, Saga> = store::sagas(&mut loaded, SAGAS)?
            .into_iter()
            .map(|order| (order.order_id, order))
            .collect();

        let now = Utc::now();
        let mut plans = Vec::new();
        let mut ended = Vec::new();
        let mut applied = HashSet::with_capacity(batch.len());
        let mut duplicates = Vec::new();
        for (envelope, event) in batch.iter().zip(events) {
            // A second copy of one message in the batch is a duplicate like any other.
            if !first.contains(&envelope.message_id) || !applied.insert(envelope.message_id) {
                duplicates.push(envelope.message_id);
                envelope
                    .span()
                    .in_scope(|| tracing::info!("duplicate reply; already applied"));
                continue;
            }
            let Some(order) = orders.get_mut(&envelope.saga_id) else {
                return Err(HandleError::permanent(
                    "unknown_saga",
                    format!("no saga {}", envelope.saga_id),
                ));
            };
            let trigger = Trigger {
                kind: &envelope.message_type,
                message_id: envelope.message_id,
                correlation_id: &envelope.correlation_id,
                parent: envelope
                    .traceparent
                    .as_deref()
                    .map(|p| (p, envelope.tracestate.as_deref())),
            };
            match plan::plan(order, event, &trigger, &self.settings, now)? {
                None => {
                    envelope.span().in_scope(|| {
                        tracing::info!(state = %order.state, ?event, "late or duplicate reply ignored");
                    });
                }
                Some(plan) => {
                    // The span records its fields whether or not a line is written: made only
                    // when one is.
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        envelope.span().in_scope(|| {
                            tracing::debug!(from = %order.state, to = %plan.step.to, "saga advanced");
                        });
                    }
                    if plan.ends_saga() {
                        ended.push(Ended {
                            subject: OwnedSubject::of(envelope),
                            state: plan.step.to,
                            created_at: order.created_at,
                        });
                    }
                    plan.advance(order);
                    plans.push(plan);
                }
            }
        }
        // The rows are locked, so only a writer that bypasses the locks can fail the check.
        let mut enqueued = engine::write(txn, &plans)
            .await?
            .ok_or_else(|| HandleError::Transient("a saga changed while it was locked".into()))?;
        // Counted before the consumer commits (the handler has no later moment): a commit that
        // fails then counts an end twice when the batch is handled again, which the next
        // recount corrects.
        self.admission.ended(ended.len());
        // Counted by the consumer once the batch commits.
        for message_id in duplicates {
            enqueued.duplicate(message_id);
        }
        // Metrics and lines, unlike the slots, wait for the commit: said exactly once.
        if !ended.is_empty() {
            enqueued.after_commit(move || ended.iter().for_each(Ended::report));
        }
        Ok(enqueued)
    }
}
