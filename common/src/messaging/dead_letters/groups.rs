//! The DLQ grouped by failure reason (`GET /api/admin/dead-letters/groups`): how many messages
//! failed for each reason, and when the first and the last of them failed. A group is what an
//! operator replays at once (`Selection::Reason`) after fixing its cause.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{DeadLetterError, DeadLetterQueue, MAX_SCAN, bounded, reason};
use crate::messaging::headers;

/// The group of messages that carry no reason at all (neither ours nor RabbitMQ's); replaying
/// `{"reason": "unknown"}` selects them.
pub const UNKNOWN_REASON: &str = "unknown";

/// The DLQ's messages by reason, the biggest group first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterGroups {
    #[schema(example = "payment.commands.dlq")]
    pub queue: String,
    /// Messages in the DLQ when it was read.
    pub total: u32,
    /// Messages looked at: `total`, but at most 10,000.
    pub scanned: u32,
    pub groups: Vec<DeadLetterGroup>,
}

/// The messages that failed for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeadLetterGroup {
    /// The `reason` of its messages (`unknown` when they have none).
    #[schema(example = "invalid_payload")]
    pub reason: String,
    pub count: u32,
    /// The earliest first failure (`x-first-failed-at`, else `x-last-failed-at`); `null` when
    /// no message of the group says.
    pub first_seen: Option<DateTime<Utc>>,
    /// The latest last failure (`x-last-failed-at`).
    pub last_seen: Option<DateTime<Utc>>,
}

impl DeadLetterQueue {
    /// Groups up to [`MAX_SCAN`] messages by reason; all of them stay in the DLQ.
    pub async fn groups(&self) -> Result<DeadLetterGroups, DeadLetterError> {
        bounded(async {
            let (mut session, total) = self.open().await?;
            let mut groups = BTreeMap::<String, DeadLetterGroup>::new();
            let mut scanned = 0;
            for _ in 0..total.min(MAX_SCAN) {
                let Some(delivery) = session.next().await? else {
                    break;
                };
                session.keep(&delivery);
                scanned += 1;
                let table = delivery.properties.headers().clone().unwrap_or_default();
                let time = |name| {
                    headers::text(&table, name).and_then(|text| {
                        DateTime::parse_from_rfc3339(&text)
                            .ok()
                            .map(|at| at.with_timezone(&Utc))
                    })
                };
                let last = time(headers::LAST_FAILED_AT);
                let first = time(headers::FIRST_FAILED_AT).or(last);
                let reason = reason(&delivery).unwrap_or_else(|| UNKNOWN_REASON.to_owned());
                add(&mut groups, reason, first, last);
            }
            session.finish().await?;
            Ok(DeadLetterGroups {
                queue: self.dlq.clone(),
                total,
                scanned,
                groups: sorted(groups),
            })
        })
        .await
    }
}

/// Counts one message into its reason's group.
fn add(
    groups: &mut BTreeMap<String, DeadLetterGroup>,
    reason: String,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
) {
    let group = groups
        .entry(reason.clone())
        .or_insert_with(|| DeadLetterGroup {
            reason,
            count: 0,
            first_seen: None,
            last_seen: None,
        });
    group.count += 1;
    // `Option`'s order puts `None` first: the minimum of the known times, not `None`.
    group.first_seen = match (group.first_seen, first) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    group.last_seen = group.last_seen.max(last);
}

/// The biggest group first; equal counts by reason, so the order is stable between reads.
fn sorted(groups: BTreeMap<String, DeadLetterGroup>) -> Vec<DeadLetterGroup> {
    let mut groups: Vec<_> = groups.into_values().collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Option<DateTime<Utc>> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn groups_count_and_span_their_messages_biggest_first() {
        let mut groups = BTreeMap::new();
        let t1 = at("2026-01-01T10:00:00Z");
        let t2 = at("2026-01-01T11:00:00Z");
        let t3 = at("2026-01-01T12:00:00Z");
        add(&mut groups, "a".into(), t2, t2);
        add(&mut groups, "b".into(), t1, t3);
        add(&mut groups, "b".into(), None, None);
        add(&mut groups, "b".into(), t2, t2);
        add(&mut groups, "c".into(), None, None);
        let groups = sorted(groups);
        assert_eq!(
            groups,
            vec![
                DeadLetterGroup {
                    reason: "b".into(),
                    count: 3,
                    first_seen: t1,
                    last_seen: t3
                },
                DeadLetterGroup {
                    reason: "a".into(),
                    count: 1,
                    first_seen: t2,
                    last_seen: t2
                },
                DeadLetterGroup {
                    reason: "c".into(),
                    count: 1,
                    first_seen: None,
                    last_seen: None
                },
            ]
        );
    }
}
