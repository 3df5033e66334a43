//! The traced spans other than the HTTP request's (`http/correlation.rs`): a message processed
//! and a saga transition. Each declares `otel.kind` (which makes it traced, see the subscriber),
//! the OpenTelemetry attributes of its kind, and the `trace_id` / `span_id` fields its log lines
//! carry, recorded by [`context::continue_from`].

use tracing::Span;
use tracing::field::Empty;
use uuid::Uuid;

use super::context;
use crate::messaging::Envelope;

/// Where a delivery came from, for the consumer span's attributes.
pub struct Delivered<'a> {
    pub queue: &'a str,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub redelivered: bool,
    pub attempt: u32,
    /// Its AMQP properties, whose headers carry the trace context of a body without one.
    pub properties: &'a lapin::BasicProperties,
}

/// The consumer span of one message (OpenTelemetry messaging conventions: kind `consumer`,
/// operation `process`), a child of the context that produced it: `traceparent` from the
/// envelope, else from the AMQP headers; a new trace when neither has one. Its own
/// `traceparent` replaces the envelope's in memory, so what the handler produces for this
/// message (a reply, the saga transition it causes) is this span's child.
pub fn consumer(service: &str, envelope: &mut Envelope, delivered: &Delivered<'_>) -> Span {
    let span = tracing::info_span!(
        "handle_message",
        otel.kind = "consumer",
        otel.name = %format_args!("process {}", delivered.queue),
        messaging.system = "rabbitmq",
        messaging.operation = "process",
        messaging.destination.name = delivered.exchange,
        messaging.rabbitmq.destination.routing_key = delivered.routing_key,
        messaging.message.id = %envelope.message_id,
        service = %service,
        queue = delivered.queue,
        message_type = %envelope.message_type,
        message_id = %envelope.message_id,
        correlation_id = %envelope.correlation_id,
        saga_id = %envelope.saga_id,
        order_id = %envelope.saga_id,
        redelivered = delivered.redelivered,
        attempt = delivered.attempt,
        trace_id = Empty,
        span_id = Empty,
    );
    let (traceparent, tracestate) = match envelope.traceparent.take() {
        Some(traceparent) => (Some(traceparent), envelope.tracestate.take()),
        None => crate::messaging::envelope::trace_headers(delivered.properties)
            .map_or((None, None), |(p, s)| (Some(p), s)),
    };
    match context::continue_from(&span, traceparent.as_deref(), tracestate.as_deref()) {
        Some((own, state)) => {
            envelope.traceparent = Some(own);
            envelope.tracestate = state;
        }
        // An untraced span (no subscriber): what the handler produces keeps the producer's.
        None => {
            envelope.traceparent = traceparent;
            envelope.tracestate = tracestate;
        }
    }
    span
}

/// The span of one saga transition (`from` → `to` on `event`), a child of `parent` (the
/// message that caused it, as its consumer span left it on the envelope) or, without one, of
/// the span current here (the HTTP request that placed the order; none for a timeout sweep,
/// which starts a trace). Entered while the step's messages are built, so they are its
/// children.
pub fn transition(
    order_id: Uuid,
    from: &str,
    to: &str,
    event: &str,
    parent: Option<(&str, Option<&str>)>,
) -> Span {
    let span = tracing::info_span!(
        "saga_transition",
        otel.kind = "internal",
        otel.name = %format_args!("saga {event}"),
        saga.from = from,
        saga.to = to,
        saga.event = event,
        saga_id = %order_id,
        order_id = %order_id,
        trace_id = Empty,
        span_id = Empty,
    );
    match parent {
        Some((traceparent, tracestate)) => {
            context::continue_from(&span, Some(traceparent), tracestate);
        }
        None => {
            context::record_ids(&span);
        }
    }
    span
}
