//! Logs and traces, set up once per process.
//!
//! - this file: the subscriber. JSON lines (bunyan format) with the fields of every enclosing
//!   span (`correlation_id`, `saga_id`, `order_id`, `trace_id`, `span_id`) copied onto each
//!   line; and the OpenTelemetry layer, which gives the spans that declare `otel.kind` (an HTTP
//!   request, a message processed, a saga transition) W3C ids and, when export is on, sends them.
//! - [`context`]: `traceparent` / `tracestate` parsed, formatted, continued and recorded.
//! - [`export`]: the tracer provider (sampler, OTLP/HTTP exporter, `service.name`).
//! - [`spans`]: the spans themselves (consumer, saga transition), so their names and
//!   attributes are written once.
//!
//! Spans carry context; they write no lines of their own. The bunyan layer would otherwise add
//! a `[SPAN - START]` and a `[SPAN - END]` record around every request and every message: two
//! thirds of all lines under load, saying nothing the lines logged inside them do not. Requests
//! and messages that succeed log at `debug`; what an operator must see (client errors,
//! failures, retries, dead letters, duplicates, state changes of the service) logs at `info` or
//! above. See docs/observability.md ("Traces").

pub mod context;
pub mod export;
pub mod spans;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::subscriber::set_global_default;
use tracing::{Event, Subscriber};
use tracing_bunyan_formatter::{BunyanFormattingLayer, JsonStorageLayer};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt};

use crate::configuration::TelemetrySettings;

/// A process's tracer provider: kept to flush what is still unexported when the service stops.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Ids for every traced span; OTLP export when `settings.otlp_endpoint` is set (then inside
    /// a tokio runtime).
    pub fn start(service: &str, settings: &TelemetrySettings) -> Result<Self, String> {
        Ok(Self {
            provider: export::provider(service, settings)?,
        })
    }

    /// The process's subscriber: JSON lines on `sink` at `default_filter` (unless `RUST_LOG`
    /// says otherwise), and the spans' trace context, whatever the log level.
    pub fn subscriber<Sink>(
        &self,
        name: &str,
        default_filter: &str,
        sink: Sink,
    ) -> impl Subscriber + Send + Sync + use<Sink>
    where
        Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    {
        // sqlx reports every harmless notice (e.g. "relation already exists, skipping") at info.
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(format!("{default_filter},sqlx=warn")));
        // Only the spans that declare `otel.kind` are traced; the others (a batch, a message's
        // log context) are not units of work of their own. Events never become span events:
        // the log lines say the same, and recording them would double what a span costs.
        // Traced spans are `info` spans: the hint keeps `debug!` and `trace!` call sites off
        // unless the log filter wants them.
        let traced = filter_fn(|meta| meta.is_span() && meta.fields().field("otel.kind").is_some())
            .with_max_level_hint(tracing::level_filters::LevelFilter::INFO);
        let tracer = self.provider.tracer(name.to_owned());
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            .with_tracked_inactivity(false)
            .with_filter(traced);
        let lines = JsonStorageLayer
            .and_then(EventsOnly(BunyanFormattingLayer::new(
                name.to_owned(),
                sink,
            )))
            .with_filter(filter);
        Registry::default().with(otel).with(lines)
    }

    /// Exports what is still buffered and stops the exporter; a no-op without export.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "trace exporter did not shut down cleanly");
        }
    }
}

/// The subscriber of a process that exports no traces (tests, tools): ids and context still
/// propagate.
pub fn subscriber<Sink>(
    name: &str,
    default_filter: &str,
    sink: Sink,
) -> impl Subscriber + Send + Sync + use<Sink>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let telemetry = Telemetry {
        provider: export::unexported(name),
    };
    telemetry.subscriber(name, default_filter, sink)
}

/// Installs the subscriber; a second call (several apps in one test process) is a no-op.
pub fn init(subscriber: impl Subscriber + Send + Sync) {
    let _ = set_global_default(subscriber);
}

/// Passes only events to the wrapped layer, so spans write no start and end records.
struct EventsOnly<L>(L);

impl<S, L> Layer<S> for EventsOnly<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.0.on_event(event, ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn spans_write_no_lines_but_lend_their_fields_to_events() {
        let sink = Captured::default();
        let subscriber = subscriber("test", "info", sink.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("handle_message", correlation_id = "c-1");
            let _entered = span.enter();
            tracing::info!("saga advanced");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        // The formatter names the enclosing span in the message: `[HANDLE_MESSAGE - EVENT] ...`.
        let msg = lines[0]["msg"].as_str().unwrap_or_default();
        assert!(msg.ends_with("saga advanced"), "{msg}");
        assert_eq!(lines[0]["correlation_id"], "c-1");
    }

    #[test]
    fn a_line_inside_a_traced_span_carries_its_trace_and_span_ids() {
        let sink = Captured::default();
        let subscriber = subscriber("test", "info", sink.clone());
        let remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let own = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "handle_message",
                otel.kind = "consumer",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            let own = context::continue_from(&span, Some(remote), None);
            let _entered = span.enter();
            // A nested span that is not traced lends the ids on, and what is produced here
            // names the traced span as its parent. The remote parent was sampled, so its
            // child stays sampled (`-01`) though this process exports nothing.
            let inner = tracing::info_span!("message", message_id = "m-1");
            let _inner = inner.enter();
            tracing::info!("payment charged");
            assert_eq!(context::current(), own);
            own
        });
        let (own, _) = own.unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{text}"
        );
        let span_id = line["span_id"].as_str().unwrap();
        assert_eq!(span_id.len(), 16);
        assert_ne!(
            span_id, "00f067aa0ba902b7",
            "the line names its own span, not the remote one"
        );
        assert_eq!(
            own,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span_id}-01")
        );
    }

    #[test]
    fn a_request_without_a_traceparent_starts_a_trace() {
        let subscriber = subscriber("test", "off", std::io::sink);
        let (first, second) = tracing::subscriber::with_default(subscriber, || {
            let start = || {
                let span = tracing::info_span!(
                    "http_request",
                    otel.kind = "server",
                    trace_id = tracing::field::Empty,
                    span_id = tracing::field::Empty,
                );
                context::continue_from(&span, None, None)
            };
            (start(), start())
        });
        let (first, second) = (first.unwrap().0, second.unwrap().0);
        let first = context::parse(&first, None).unwrap();
        let second = context::parse(&second, None).unwrap();
        assert_ne!(first.trace_id(), second.trace_id());
        assert!(
            !first.is_sampled(),
            "without export, a trace started here is not sampled (its spans record nothing)"
        );
    }
}
