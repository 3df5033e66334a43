//! The rules every service database has: the outbox's published rows and the inbox's entries.

use super::{KeyType, Rule, Window};

/// Published rows older than `retention.published_outbox`: confirmed, so without an
/// `outbox_pending` row.
///
/// The id is a BIGSERIAL, in step with `created_at`, and there is no index on `created_at` (it
/// would cost every insert): each pass first finds its bound, the first row newer than the
/// cutoff, reading up the key from the oldest row, which pruning keeps a short walk; the
/// batches then take ids below it. With nothing eligible a run reads a handful of rows, never the
/// recent ones.
pub fn outbox() -> Rule {
    let eligible = "id < $4::bigint AND created_at < $1 \
        AND NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.id = outbox.id)"
        .to_owned();
    Rule {
        table: "outbox",
        window: Window::PublishedOutbox,
        key: "id",
        key_type: KeyType::BigInt,
        eligible,
        scopes: Some(
            "SELECT COALESCE((SELECT id FROM outbox WHERE created_at >= $1 ORDER BY id LIMIT 1), \
             9223372036854775807)::text AS scope",
        ),
        dependents: Vec::new(),
    }
}

/// Entries received before `retention.inbox_window` (plus the clock-skew margin), consumer by
/// consumer: the key is `(consumer, message_id)` and message ids are UUIDv7, so each consumer's
/// old entries are a range of the key. The consumers are found by a walk along the key (one
/// probe each), whatever names the service gives them.
pub fn inbox() -> Rule {
    Rule {
        table: "inbox",
        window: Window::Inbox,
        key: "message_id",
        key_type: KeyType::Uuid,
        eligible: "consumer = $4 AND message_id < $2 AND received_at < $1".to_owned(),
        scopes: Some(
            "WITH RECURSIVE consumers AS ( \
               (SELECT consumer FROM inbox ORDER BY consumer LIMIT 1) \
               UNION ALL \
               SELECT (SELECT i.consumer FROM inbox i WHERE i.consumer > c.consumer \
                       ORDER BY i.consumer LIMIT 1) \
               FROM consumers c WHERE c.consumer IS NOT NULL) \
             SELECT consumer AS scope FROM consumers WHERE consumer IS NOT NULL",
        ),
        dependents: Vec::new(),
    }
}
