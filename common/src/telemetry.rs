//! One JSON-lines subscriber per process: bunyan format, with the fields of every enclosing span
//! (`correlation_id`, `saga_id`, `order_id`) copied onto each line.
//!
//! Spans carry context; they write no lines of their own. The bunyan layer would otherwise add
//! a `[SPAN - START]` and a `[SPAN - END]` record around every request and every message: two
//! thirds of all lines under load, saying nothing the lines logged inside them do not. Requests
//! and messages that succeed log at `debug`; what an operator must see (client errors,
//! failures, retries, dead letters, duplicates, state changes of the service) logs at `info` or
//! above.

use tracing::subscriber::set_global_default;
use tracing::{Event, Subscriber};
use tracing_bunyan_formatter::{BunyanFormattingLayer, JsonStorageLayer};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt};

pub fn subscriber<Sink>(
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
    Registry::default()
        .with(filter)
        .with(JsonStorageLayer)
        .with(EventsOnly(BunyanFormattingLayer::new(
            name.to_owned(),
            sink,
        )))
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
}
