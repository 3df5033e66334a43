//! W3C trace context (`traceparent`, `tracestate`): parsed from what arrives (an HTTP header, an
//! envelope, an AMQP header), written into what leaves (every envelope created inside a span),
//! and recorded on the spans that start a unit of work, so their log lines carry `trace_id` and
//! `span_id`.
//!
//! Formats and parses by hand: a traceparent is four dash-separated fields, and the SDK's
//! propagator would build a map per message to do the same.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The only version this parser knows; a later version's first four fields are read the same way
/// (W3C: "parse as version 00"), as the spec asks.
const VERSION: &str = "00";

/// The span context a `traceparent` (and `tracestate`) names, marked remote; `None` when it is
/// not well-formed or names the all-zero ids, which W3C says to ignore (a new trace starts).
pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(version, 2) || version == "ff" || (version == VERSION && parts.next().is_some()) {
        return None;
    }
    if !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        state,
    ))
}

/// `00-<trace id>-<span id>-<flags>`.
pub fn format(context: &SpanContext) -> String {
    format!(
        "{VERSION}-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// `tracestate` as sent, `None` when empty.
pub fn format_state(context: &SpanContext) -> Option<String> {
    let state = context.trace_state().header();
    (!state.is_empty()).then_some(state)
}

/// The context of the innermost traced span entered on this thread (an HTTP request, a
/// message being processed, a saga transition): the `traceparent` and `tracestate` of what
/// it produces. `None` outside any.
pub fn current() -> Option<(String, Option<String>)> {
    let context = opentelemetry::Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| (format(span_context), format_state(span_context)))
}

/// Makes `span` (created with empty `trace_id` and `span_id` fields) a child of the remote
/// context `traceparent` names, or the root of a new trace when there is none, and records its
/// ids on it, so every log line inside carries them. Returns its own `traceparent` and
/// `tracestate`, for what it produces.
pub fn continue_from(
    span: &Span,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Option<(String, Option<String>)> {
    if let Some(remote) = traceparent.and_then(|t| parse(t, tracestate)) {
        // Fails only on a span already started, which a span just created is not.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    record_ids(span)
}

/// Records `span`'s ids on its `trace_id` and `span_id` fields; its own `traceparent` and
/// `tracestate`. `None` (and nothing recorded) when the span is disabled or untraced.
pub fn record_ids(span: &Span) -> Option<(String, Option<String>)> {
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    span.record("trace_id", tracing::field::display(span_context.trace_id()));
    span.record("span_id", tracing::field::display(span_context.span_id()));
    Some((format(span_context), format_state(span_context)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_parses_and_formats_back_unchanged() {
        let context = parse(SAMPLE, Some("congo=t61rcWkgMzE")).unwrap();
        assert!(context.is_remote() && context.is_sampled());
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(format(&context), SAMPLE);
        assert_eq!(format_state(&context).as_deref(), Some("congo=t61rcWkgMzE"));
        let unsampled = parse(&SAMPLE.replace("-01", "-00"), None).unwrap();
        assert!(!unsampled.is_sampled());
        assert_eq!(format_state(&unsampled), None);
    }

    #[test]
    fn a_malformed_or_all_zero_traceparent_is_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        ] {
            assert!(parse(bad, None).is_none(), "{bad}");
        }
        // A later version is read by its first four fields.
        assert!(parse(&format!("01{}-more", &SAMPLE[2..]), None).is_some());
    }
}
