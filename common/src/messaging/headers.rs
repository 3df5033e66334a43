//! The headers a failed delivery collects on its way through the delay queues to the DLQ, and
//! the helpers that read them back (the consumer counting attempts, the admin API listing and
//! replaying dead letters).
//!
//! Values an operator reads in the management console are plain text (times are RFC 3339) or
//! integers, never nested tables, so "Get messages" shows them as they are.

use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::Value;

/// The stable reason code (`malformed_message`, `retries_exhausted`, ...).
pub const REASON: &str = "x-dead-letter-reason";
/// The human explanation of the last failure (e.g. the JSON parse error).
pub const ERROR: &str = "x-error";
/// Which service gave up on the message.
pub const SERVICE: &str = "x-service";
/// On a message waiting in a delay queue: how many attempts have failed so far.
pub const ATTEMPT: &str = "x-attempt";
/// On a dead letter: how many attempts were made in all.
pub const ATTEMPTS: &str = "x-attempts";
pub const FIRST_FAILED_AT: &str = "x-first-failed-at";
pub const LAST_FAILED_AT: &str = "x-last-failed-at";
/// Same as [`LAST_FAILED_AT`]; kept because earlier dead letters and tools use it.
pub const FAILED_AT: &str = "x-failed-at";
/// Where the message was first published and consumed: a retry comes back through the default
/// exchange under the queue's name, so the consumer records the originals at the first failure.
pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";
pub const ORIGINAL_QUEUE: &str = "x-original-queue";
/// Whether the broker had delivered it before (a consumer died with it unacknowledged).
pub const REDELIVERED: &str = "x-redelivered";

/// Headers RabbitMQ itself adds when it dead-letters a message (TTL expiry in a delay queue,
/// the delivery limit of a quorum queue, a reject).
pub const X_DEATH: &str = "x-death";
pub const FIRST_DEATH_REASON: &str = "x-first-death-reason";
pub const FIRST_DEATH_QUEUE: &str = "x-first-death-queue";
pub const FIRST_DEATH_EXCHANGE: &str = "x-first-death-exchange";
/// Quorum queues count deliveries in this header.
pub const DELIVERY_COUNT: &str = "x-delivery-count";

/// Everything a failure wrote on a message. A replay removes these so the message starts over
/// as new: a fresh attempt count, no stale reason.
pub const FAILURE_BOOKKEEPING: &[&str] = &[
    REASON,
    ERROR,
    SERVICE,
    ATTEMPT,
    ATTEMPTS,
    FIRST_FAILED_AT,
    LAST_FAILED_AT,
    FAILED_AT,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
    ORIGINAL_QUEUE,
    REDELIVERED,
    X_DEATH,
    FIRST_DEATH_REASON,
    FIRST_DEATH_QUEUE,
    FIRST_DEATH_EXCHANGE,
    "x-last-death-reason",
    "x-last-death-queue",
    "x-last-death-exchange",
    DELIVERY_COUNT,
];

/// A text header (long or short string).
pub fn text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(value) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

/// An integer header, whatever width the producer chose.
pub fn integer(headers: &FieldTable, name: &str) -> Option<i64> {
    match headers.inner().get(name)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        AMQPValue::LongString(v) => String::from_utf8_lossy(v.as_bytes()).trim().parse().ok(),
        _ => None,
    }
}

/// `headers` without the named entries (lapin's `FieldTable` has no `remove`).
pub fn without(headers: &FieldTable, names: &[&str]) -> FieldTable {
    headers
        .inner()
        .iter()
        .filter(|(name, _)| !names.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect::<std::collections::BTreeMap<ShortString, AMQPValue>>()
        .into()
}

/// The headers as a JSON object, for the admin API.
pub fn to_json(headers: &FieldTable) -> serde_json::Map<String, Value> {
    headers
        .inner()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value_to_json(value)))
        .collect()
}

fn value_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(v) => Value::Bool(*v),
        AMQPValue::ShortShortInt(v) => Value::from(*v),
        AMQPValue::ShortShortUInt(v) => Value::from(*v),
        AMQPValue::ShortInt(v) => Value::from(*v),
        AMQPValue::ShortUInt(v) => Value::from(*v),
        AMQPValue::LongInt(v) => Value::from(*v),
        AMQPValue::LongUInt(v) => Value::from(*v),
        AMQPValue::LongLongInt(v) => Value::from(*v),
        AMQPValue::Float(v) => Value::from(f64::from(*v)),
        AMQPValue::Double(v) => Value::from(*v),
        AMQPValue::DecimalValue(v) => {
            Value::from(f64::from(v.value) / 10_f64.powi(i32::from(v.scale)))
        }
        AMQPValue::ShortString(v) => Value::from(v.as_str()),
        AMQPValue::LongString(v) => Value::from(String::from_utf8_lossy(v.as_bytes())),
        AMQPValue::FieldArray(v) => Value::Array(v.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::Timestamp(v) => Value::from(*v),
        AMQPValue::FieldTable(v) => Value::Object(to_json(v)),
        AMQPValue::ByteArray(v) => Value::from(String::from_utf8_lossy(v.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::FieldArray;

    use super::*;
    use crate::messaging::envelope::long_string;

    fn sample() -> FieldTable {
        let mut headers = FieldTable::default();
        headers.insert(REASON.into(), long_string("retries_exhausted"));
        headers.insert(ATTEMPTS.into(), AMQPValue::LongLongInt(5));
        headers.insert("x-correlation-id".into(), long_string("c-1"));
        let mut death = FieldTable::default();
        death.insert("reason".into(), long_string("expired"));
        death.insert("count".into(), AMQPValue::LongLongInt(2));
        headers.insert(
            X_DEATH.into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        headers
    }

    #[test]
    fn headers_read_back_as_text_and_integers() {
        let headers = sample();
        assert_eq!(text(&headers, REASON).as_deref(), Some("retries_exhausted"));
        assert_eq!(integer(&headers, ATTEMPTS), Some(5));
        assert_eq!(integer(&headers, REASON), None);
        assert_eq!(text(&headers, "absent"), None);
    }

    #[test]
    fn failure_bookkeeping_is_removed_and_the_rest_kept() {
        let cleaned = without(&sample(), FAILURE_BOOKKEEPING);
        assert_eq!(cleaned.inner().len(), 1);
        assert!(cleaned.contains_key("x-correlation-id"));
    }

    #[test]
    fn nested_headers_become_json() {
        let json = to_json(&sample());
        assert_eq!(json[REASON], "retries_exhausted");
        assert_eq!(json[ATTEMPTS], 5);
        assert_eq!(json[X_DEATH][0]["reason"], "expired");
        assert_eq!(json[X_DEATH][0]["count"], 2);
    }
}
