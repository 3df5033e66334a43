//! Prometheus metrics (docs/observability.md, "Metrics"): one recorder per process, `GET
//! /metrics`, and the generic metrics every service has.
//!
//! - [`install`]: the `metrics-exporter-prometheus` recorder, installed once per process (the
//!   services of one test process share it); any code records through the `metrics` facade.
//! - [`names`]: the metric names the issue fixes, so dashboards and alerts can rely on them.
//! - `register`: describes every generic metric and registers it at zero at start-up, so every
//!   series is there from the first scrape.
//! - [`http`]: request durations by route template, and `orders_rejected_total`.
//! - [`consumer`]: the consumer's counters and histograms, as handles made once per queue.
//! - [`gauges`]: what is read from the database, the broker and `/proc`, on a timer: a scrape
//!   only renders what is already there.

pub mod consumer;
pub mod gauges;
pub mod http;
pub mod names;
mod register;

use std::sync::OnceLock;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use register::register;

/// Buckets of every `_seconds` histogram: 1 ms to 60 s, about three to a decade.
const SECONDS_BUCKETS: [f64; 16] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
];
/// Buckets of `messaging_batch_size`: powers of two up to `amqp.batch_size`'s ceiling.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on the first call. A second call (another service in the
/// same test process) gets the same one. If some other recorder was installed first, ours
/// still renders, but records nothing: said once, at warn.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if let Err(error) = metrics::set_global_recorder(recorder) {
            tracing::warn!(%error, "another metrics recorder is installed; /metrics stays empty");
        }
        handle
    })
}

/// The exporter with our buckets: every histogram a histogram (none a summary), in seconds
/// unless named otherwise.
fn builder() -> PrometheusBuilder {
    let builder = PrometheusBuilder::new()
        .set_buckets(&SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(names::BATCH_SIZE.into()), &BATCH_BUCKETS)
        });
    // Only empty buckets are refused, and ours are not; should it happen, the defaults serve.
    builder.unwrap_or_else(|error| {
        tracing::warn!(%error, "histogram buckets refused; using the exporter's defaults");
        PrometheusBuilder::new()
    })
}

/// The Prometheus text of everything recorded in this process.
pub fn render() -> String {
    install().render()
}

/// `GET /metrics`: open to anyone (no guard), never rate limited (an exempt path in
/// `http::rate_limit`), left out of the OpenAPI document like the Prometheus convention it
/// follows. The answer is rendered from memory: a scrape runs no query.
pub fn router() -> Router {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render(),
    )
}

/// The `messaging_published_messages_total` handle of `(exchange, message_type)`, made once
/// per process: the relay takes one per message it sends, so this is a short scan under a read
/// lock rather than a label set built and looked up per message. The pairs are the few the
/// services write to their outboxes.
pub(crate) fn published(exchange: &str, message_type: &str) -> metrics::Counter {
    type Handles = Vec<(String, String, metrics::Counter)>;
    static HANDLES: std::sync::RwLock<Handles> = std::sync::RwLock::new(Vec::new());
    let find = |handles: &Handles| {
        handles
            .iter()
            .find(|(e, t, _)| e == exchange && t == message_type)
            .map(|(_, _, counter)| counter.clone())
    };
    if let Some(counter) = find(&HANDLES.read().unwrap_or_else(|e| e.into_inner())) {
        return counter;
    }
    let mut handles = HANDLES.write().unwrap_or_else(|e| e.into_inner());
    if let Some(counter) = find(&handles) {
        return counter;
    }
    let counter = metrics::counter!(
        names::PUBLISHED,
        "exchange" => exchange.to_owned(),
        "type" => message_type.to_owned(),
    );
    handles.push((
        exchange.to_owned(),
        message_type.to_owned(),
        counter.clone(),
    ));
    counter
}
