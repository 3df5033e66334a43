//! `X-Correlation-Id`: taken from the request when it is sane, generated otherwise, echoed on the
//! response, and recorded on the request span so every log line of the request carries it.
//! Handlers read it as `Extension<CorrelationId>` and put it in the messages they cause.
//!
//! The request span is also the request's trace span (kind `server`): a child of the caller's
//! W3C `traceparent` / `tracestate` when sent, the root of a new trace otherwise; the messages
//! the request writes carry its context (`telemetry::context`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: &str = "x-correlation-id";
/// W3C trace context request headers.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(pub String);

impl CorrelationId {
    /// Accepts 1 to 128 visible ASCII characters; anything else is replaced, not trusted.
    fn from_header(value: Option<&HeaderValue>) -> Self {
        value
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map_or_else(
                || Self(uuid::Uuid::new_v4().to_string()),
                |v| Self(v.to_owned()),
            )
    }
}

/// Middleware: wraps the request in a span with `correlation_id` (and an `order_id` slot the
/// handler fills in), logs one line per request, and echoes the id.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let correlation = CorrelationId::from_header(request.headers().get(HEADER));
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let span = tracing::info_span!(
        "http_request",
        otel.kind = "server",
        otel.name = %format_args!("{} {route}", request.method()),
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        method = %request.method(),
        route = %route,
        correlation_id = %correlation.0,
        order_id = tracing::field::Empty,
        saga_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        crate::telemetry::context::continue_from(&span, header(TRACEPARENT), header(TRACESTATE));
    }
    request.extensions_mut().insert(correlation.clone());
    let started = Instant::now();
    async move {
        let mut response = next.run(request).await;
        let status = response.status().as_u16();
        tracing::Span::current().record("http.response.status_code", status);
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::error!(status, latency_ms, "request failed");
        } else if status >= 400 {
            tracing::info!(status, latency_ms, "request refused");
        } else {
            tracing::debug!(status, latency_ms, "request handled");
        }
        if let Ok(value) = HeaderValue::from_str(&correlation.0) {
            response.headers_mut().insert(HEADER, value);
        }
        response
    }
    .instrument(span)
    .await
}

/// Records the order a request concerns on the current request span.
pub fn record_order(order_id: uuid::Uuid) {
    let span = tracing::Span::current();
    span.record("order_id", tracing::field::display(order_id));
    span.record("saga_id", tracing::field::display(order_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_header_is_kept_and_a_hostile_one_replaced() {
        let kept = CorrelationId::from_header(Some(&HeaderValue::from_static("abc-123")));
        assert_eq!(kept.0, "abc-123");
        let replaced = CorrelationId::from_header(Some(&HeaderValue::from_static("has space")));
        assert_ne!(replaced.0, "has space");
        assert!(uuid::Uuid::parse_str(&replaced.0).is_ok());
        assert!(uuid::Uuid::parse_str(&CorrelationId::from_header(None).0).is_ok());
    }
}
