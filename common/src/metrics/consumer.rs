//! The consumer's metrics, as handles made once per session: recording a delivery costs an
//! atomic add, with no label building and no registry lookup per message.
//!
//! Each delivery settled is counted exactly once in `messaging_consumed_messages_total`:
//! `acked` (applied), `duplicate` (acknowledged with no effect: the inbox had it), `retried`
//! or `dead_lettered`. Acks and duplicates are counted after the commit, so a batch rolled back
//! and handled again one message at a time counts each delivery once.

use std::time::Duration;

use metrics::{Counter, Histogram};
use uuid::Uuid;

use super::names::*;
use super::register::consumed_types;
use crate::messaging::Envelope;

pub(crate) struct ConsumerMetrics {
    queue: &'static str,
    /// One per type of the queue's contract; few, so a scan beats a hash.
    types: Vec<(&'static str, TypeMetrics)>,
    /// Any other type, and a body that is not an envelope.
    unknown: TypeMetrics,
    batch_size: Histogram,
    retried: Counter,
}

struct TypeMetrics {
    acked: Counter,
    duplicate: Counter,
    retried: Counter,
    dead_lettered: Counter,
    duration: Histogram,
}

impl TypeMetrics {
    fn new(queue: &'static str, message_type: &'static str) -> Self {
        let outcome = |outcome: &'static str| metrics::counter!(CONSUMED, "queue" => queue, "type" => message_type, "outcome" => outcome);
        Self {
            acked: outcome(ACKED),
            duplicate: outcome(DUPLICATE),
            retried: outcome(RETRIED_OUTCOME),
            dead_lettered: outcome(DEAD_LETTERED_OUTCOME),
            duration: metrics::histogram!(PROCESS_DURATION, "queue" => queue, "type" => message_type),
        }
    }
}

impl ConsumerMetrics {
    pub(crate) fn new(queue: &'static str) -> Self {
        Self {
            queue,
            types: consumed_types(queue)
                .into_iter()
                .map(|name| (name, TypeMetrics::new(queue, name)))
                .collect(),
            unknown: TypeMetrics::new(queue, UNKNOWN_TYPE),
            batch_size: metrics::histogram!(BATCH_SIZE, "queue" => queue),
            retried: metrics::counter!(RETRIED, "queue" => queue),
        }
    }

    fn of(&self, message_type: Option<&str>) -> &TypeMetrics {
        message_type
            .and_then(|wanted| self.types.iter().find(|(name, _)| *name == wanted))
            .map_or(&self.unknown, |(_, metrics)| metrics)
    }

    /// `batch` committed after `elapsed`; `duplicates` are the message ids (once per copy) the
    /// handler found in its inbox, acknowledged with no effect.
    pub(crate) fn committed(&self, batch: &[Envelope], duplicates: &[Uuid], elapsed: Duration) {
        self.batch_size.record(batch.len() as f64);
        let seconds = elapsed.as_secs_f64();
        let mut duplicates = duplicates.to_vec();
        for envelope in batch {
            let metrics = self.of(Some(&envelope.message_type));
            metrics.duration.record(seconds);
            match duplicates.iter().position(|id| *id == envelope.message_id) {
                Some(i) => {
                    duplicates.swap_remove(i);
                    metrics.duplicate.increment(1);
                }
                None => metrics.acked.increment(1),
            }
        }
    }

    /// A delivery of `message_type` (`None`: unparseable) scheduled for a retry.
    pub(crate) fn retried(&self, message_type: Option<&str>) {
        self.of(message_type).retried.increment(1);
        self.retried.increment(1);
    }

    /// A delivery moved to the dead-letter queue for `reason`.
    pub(crate) fn dead_lettered(&self, message_type: Option<&str>, reason: &'static str) {
        self.of(message_type).dead_lettered.increment(1);
        // Rare: the labelled handle is made when needed.
        metrics::counter!(DEAD_LETTERED, "queue" => self.queue, "reason" => reason).increment(1);
    }
}
