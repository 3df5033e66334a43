//! The message envelope: `{"message_id", "type", "saga_id", "correlation_id", "causation_id",
//! "occurred_at", "payload"}`, with the same ids repeated in the AMQP properties and headers so the
//! management console and other tools see them without parsing the body.

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::topology;
use crate::contracts::{Contract, DecodeError, Message};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub message_id: Uuid,
    #[serde(rename = "type")]
    pub message_type: String,
    pub saga_id: Uuid,
    pub correlation_id: String,
    /// The message (or HTTP request) that caused this one.
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    /// W3C trace context (`00-<trace id>-<parent span id>-<flags>`) of the span that produced
    /// this message, stored with its outbox row and repeated in the AMQP headers; `None` on a
    /// message written before tracing, or by a tool (docs/observability.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate` carried beside `traceparent`, unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl Envelope {
    /// An envelope for `message`, under the type name the message carries.
    pub fn new<M: Message + ?Sized>(
        message: &M,
        saga_id: Uuid,
        correlation_id: &str,
        causation_id: Option<Uuid>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::with_payload(
            message.message_type(),
            saga_id,
            correlation_id,
            causation_id,
            message.to_payload()?,
        ))
    }

    /// An envelope of any type and payload, paired by the caller: for tests and tools that
    /// send what no contract allows (an unknown type, a payload that does not fit).
    pub fn untyped<P: Serialize>(
        message_type: &str,
        saga_id: Uuid,
        correlation_id: &str,
        causation_id: Option<Uuid>,
        payload: &P,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::with_payload(
            message_type,
            saga_id,
            correlation_id,
            causation_id,
            serde_json::to_value(payload)?,
        ))
    }

    fn with_payload(
        message_type: &str,
        saga_id: Uuid,
        correlation_id: &str,
        causation_id: Option<Uuid>,
        payload: serde_json::Value,
    ) -> Self {
        // The span producing it (a request, a message processed, a saga transition) is its
        // parent: the context is written with the outbox row and carried to the consumer.
        let (traceparent, tracestate) = crate::telemetry::context::current().unzip();
        Self {
            message_id: Uuid::now_v7(),
            message_type: message_type.to_owned(),
            saga_id,
            correlation_id: correlation_id.to_owned(),
            causation_id,
            occurred_at: Utc::now(),
            payload,
            traceparent,
            tracestate: tracestate.flatten(),
        }
    }

    /// Builds the reply to this message: same saga and correlation, caused by this message,
    /// and a child of the span processing it (whose context the consumer left on the envelope,
    /// see `telemetry::spans::consumer`).
    pub fn reply<M: Message + ?Sized>(&self, message: &M) -> Result<Self, serde_json::Error> {
        let mut reply = Self::new(
            message,
            self.saga_id,
            &self.correlation_id,
            Some(self.message_id),
        )?;
        if self.traceparent.is_some() {
            reply.traceparent.clone_from(&self.traceparent);
            reply.tracestate.clone_from(&self.tracestate);
        }
        Ok(reply)
    }

    /// This envelope as a message of contract `C`: the variant its type names, with its payload.
    pub fn decode<C: Contract>(&self) -> Result<C, DecodeError> {
        C::decode(&self.message_type, &self.payload)
    }

    /// The first field holding a NUL character, which PostgreSQL cannot store: `payload.` and
    /// its path for one in the payload (`payload.lines[0].product_id`), else the envelope's own
    /// field. `None` for every envelope this fleet writes.
    pub fn nul_field(&self) -> Option<String> {
        if crate::nul::has_nul(&self.message_type) {
            return Some("type".into());
        }
        if crate::nul::has_nul(&self.correlation_id) {
            return Some("correlation_id".into());
        }
        crate::nul::find_in_json(&self.payload).map(|path| match path.as_str() {
            "." => "payload".into(),
            _ => format!("payload.{path}"),
        })
    }

    /// This envelope without its payload: the ids and type its AMQP properties carry.
    pub fn header(&self) -> Self {
        Self {
            message_id: self.message_id,
            message_type: self.message_type.clone(),
            saga_id: self.saga_id,
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id,
            occurred_at: self.occurred_at,
            payload: serde_json::Value::Null,
            traceparent: self.traceparent.clone(),
            tracestate: self.tracestate.clone(),
        }
    }

    /// The trace id of `traceparent` (32 lowercase hex digits), for log lines; `None` when
    /// there is no well-formed one.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_field(1, 32)
    }

    /// The span id of `traceparent` (16 hex digits): in a handler, the span processing this
    /// message.
    pub fn span_id(&self) -> Option<&str> {
        self.trace_field(2, 16)
    }

    fn trace_field(&self, index: usize, len: usize) -> Option<&str> {
        let field = self.traceparent.as_deref()?.split('-').nth(index)?;
        (field.len() == len && field.bytes().all(|b| b.is_ascii_hexdigit())).then_some(field)
    }

    /// A span naming this message, for log lines about it written while a whole batch is
    /// handled (the consumer's span then names only the batch).
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "message",
            message_type = %self.message_type,
            message_id = %self.message_id,
            correlation_id = %self.correlation_id,
            saga_id = %self.saga_id,
            order_id = %self.saga_id,
            trace_id = self.trace_id(),
            span_id = self.span_id(),
        )
    }
}

/// An envelope together with where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    pub exchange: String,
    pub routing_key: String,
    pub envelope: Envelope,
}

impl OutgoingMessage {
    /// A command, routed on `saga.commands` by its type.
    pub fn command(envelope: Envelope) -> Self {
        Self::routed_by_type(topology::COMMANDS_EXCHANGE, envelope)
    }

    /// A participant's reply to the orchestrator.
    pub fn reply(envelope: Envelope) -> Self {
        Self::routed_by_type(topology::REPLIES_EXCHANGE, envelope)
    }

    /// An order lifecycle event for other consumers.
    pub fn event(envelope: Envelope) -> Self {
        Self::routed_by_type(topology::EVENTS_EXCHANGE, envelope)
    }

    fn routed_by_type(exchange: &str, envelope: Envelope) -> Self {
        Self {
            exchange: exchange.to_owned(),
            routing_key: envelope.message_type.clone(),
            envelope,
        }
    }
}

pub const HEADER_CORRELATION_ID: &str = "x-correlation-id";
pub const HEADER_SAGA_ID: &str = "x-saga-id";
pub const HEADER_CAUSATION_ID: &str = "x-causation-id";
/// W3C trace context, under the names the OpenTelemetry AMQP propagation uses; a consumer reads
/// them when the body has none (a message published by another tool).
pub const HEADER_TRACEPARENT: &str = "traceparent";
pub const HEADER_TRACESTATE: &str = "tracestate";

/// Persistent JSON message with the envelope's ids in the properties and headers.
pub fn properties(envelope: &Envelope, app_id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        HEADER_CORRELATION_ID.into(),
        long_string(&envelope.correlation_id),
    );
    headers.insert(
        HEADER_SAGA_ID.into(),
        long_string(&envelope.saga_id.to_string()),
    );
    if let Some(causation) = envelope.causation_id {
        headers.insert(
            HEADER_CAUSATION_ID.into(),
            long_string(&causation.to_string()),
        );
    }
    for (name, value) in [
        (HEADER_TRACEPARENT, &envelope.traceparent),
        (HEADER_TRACESTATE, &envelope.tracestate),
    ] {
        if let Some(value) = value {
            headers.insert(name.into(), long_string(value));
        }
    }
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2)
        .with_message_id(ShortString::from(envelope.message_id.to_string()))
        .with_correlation_id(ShortString::from(envelope.correlation_id.clone()))
        .with_type(ShortString::from(envelope.message_type.clone()))
        .with_app_id(ShortString::from(app_id))
        .with_timestamp(u64::try_from(envelope.occurred_at.timestamp()).unwrap_or_default())
        .with_headers(headers)
}

pub fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// The trace context in a delivery's headers, for a body that carries none.
pub fn trace_headers(properties: &BasicProperties) -> Option<(String, Option<String>)> {
    let headers = properties.headers().as_ref()?;
    let traceparent = super::headers::text(headers, HEADER_TRACEPARENT)?;
    Some((
        traceparent,
        super::headers::text(headers, HEADER_TRACESTATE),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_context_rides_in_the_headers_and_is_read_back() {
        let mut envelope =
            Envelope::untyped("payment.charge", Uuid::nil(), "c", None, &()).unwrap();
        assert_eq!(trace_headers(&properties(&envelope, "test")), None);
        envelope.traceparent =
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        envelope.tracestate = Some("congo=t61rcWkgMzE".into());
        let carried = trace_headers(&properties(&envelope, "test"));
        assert_eq!(
            carried,
            Some((
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                Some("congo=t61rcWkgMzE".into())
            ))
        );
        assert_eq!(
            envelope.trace_id(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(envelope.span_id(), Some("00f067aa0ba902b7"));
        // A reply is the child of the span that processed its command.
        let reply = envelope
            .reply(&crate::contracts::StockReleased {
                order_id: Uuid::nil(),
            })
            .unwrap();
        assert_eq!(reply.traceparent, envelope.traceparent);
        assert_eq!(reply.tracestate, envelope.tracestate);
    }

    #[test]
    fn a_nul_is_named_by_the_field_that_holds_it() {
        let lines = serde_json::json!({"lines": [{"product_id": "p\u{0}", "quantity": 1}]});
        let mut envelope =
            Envelope::untyped("inventory.reserve", Uuid::nil(), "c", None, &lines).unwrap();
        assert_eq!(
            envelope.nul_field().as_deref(),
            Some("payload.lines[0].product_id")
        );
        envelope.correlation_id = "c\0".into();
        assert_eq!(envelope.nul_field().as_deref(), Some("correlation_id"));
        let clean = Envelope::untyped("x", Uuid::nil(), "c", None, &1).unwrap();
        assert_eq!(clean.nul_field(), None);
    }

    #[test]
    fn envelope_serialises_with_the_documented_field_names() {
        let envelope = Envelope::untyped(
            "payment.charge",
            Uuid::nil(),
            "corr-1",
            None,
            &serde_json::json!({"a": 1}),
        )
        .unwrap();
        let json = serde_json::to_value(&envelope).unwrap();
        for field in [
            "message_id",
            "type",
            "saga_id",
            "correlation_id",
            "causation_id",
            "occurred_at",
            "payload",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, envelope);
    }

    #[test]
    fn a_reply_keeps_saga_and_correlation_and_points_at_its_cause() {
        let command =
            Envelope::untyped("payment.charge", Uuid::now_v7(), "corr-9", None, &()).unwrap();
        let reply = command
            .reply(&crate::contracts::StockReleased {
                order_id: Uuid::nil(),
            })
            .unwrap();
        assert_eq!(reply.saga_id, command.saga_id);
        assert_eq!(reply.correlation_id, "corr-9");
        assert_eq!(reply.causation_id, Some(command.message_id));
        assert_eq!(reply.message_type, "inventory.released");
        assert_ne!(reply.message_id, command.message_id);
    }
}
