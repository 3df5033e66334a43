//! One JSON-lines subscriber per process: bunyan format, with the fields of every enclosing span
//! (`correlation_id`, `saga_id`, `order_id`) copied onto each line.

use tracing::Subscriber;
use tracing::subscriber::set_global_default;
use tracing_bunyan_formatter::{BunyanFormattingLayer, JsonStorageLayer};
use tracing_subscriber::fmt::MakeWriter;
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
        .with(BunyanFormattingLayer::new(name.to_owned(), sink))
}

/// Installs the subscriber; a second call (several apps in one test process) is a no-op.
pub fn init(subscriber: impl Subscriber + Send + Sync) {
    let _ = set_global_default(subscriber);
}
