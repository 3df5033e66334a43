//! What the saga lifecycle lines cost (`saga_common::lifecycle`): one line through the real
//! JSON subscriber (bunyan, `telemetry::subscriber`) into `/dev/null`, one write per line as on
//! stdout, inside a batch's span as in a consumer; a line of an order outside the sample; and
//! the owned copy of a message's ids a participant keeps for its note.
//!
//! `cargo run --release -p saga-common --example lifecycle_cost` prints microseconds per line
//! and per saga, one core: a COMPLETED saga writes 4 lines (started, charged, reserved,
//! completed), all of them successful steps that `telemetry.log_success_ratio` samples.

use std::fs::File;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

use saga_common::lifecycle::{self, Event, Line, OwnedSubject};
use saga_common::messaging::Envelope;
use uuid::Uuid;

const ROUNDS: u32 = 200_000;
/// Lines a COMPLETED saga writes across the three services.
const LINES_PER_COMPLETED_SAGA: f64 = 4.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let null = Mutex::new(File::create("/dev/null")?);
    saga_common::telemetry::init(saga_common::telemetry::subscriber("bench", "info", null));
    let envelope = Envelope {
        message_id: Uuid::now_v7(),
        message_type: "payment.charge".into(),
        saga_id: Uuid::now_v7(),
        correlation_id: "8f14e45f-ceea-467f-a0e6-1b2c3d4e5f60".into(),
        causation_id: Some(Uuid::now_v7()),
        occurred_at: chrono::Utc::now(),
        payload: serde_json::json!({}),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        tracestate: None,
    };
    let batch = tracing::info_span!("consume", queue = "payment.commands", batch_size = 50);
    let _entered = batch.enter();

    let line_us = time("a successful step's line, written", || {
        let subject = OwnedSubject::of(&envelope);
        Line::new(Event::PaymentCharged, subject.subject())
            .amount_cents(1_000)
            .write();
    });
    time("a failure's line (with its reason), written", || {
        Line::new(Event::SagaFailed, lifecycle::Subject::of(&envelope))
            .reason("payment_declined")
            .duration_ms(42)
            .write();
    });
    time("the owned ids a note keeps", || {
        black_box(OwnedSubject::of(black_box(&envelope)));
    });
    lifecycle::set_success_ratio(0.0);
    let skipped_us = time("a successful step's line, order not sampled", || {
        let subject = OwnedSubject::of(&envelope);
        Line::new(Event::PaymentCharged, subject.subject())
            .amount_cents(1_000)
            .write();
    });
    println!(
        "per COMPLETED saga ({LINES_PER_COMPLETED_SAGA} lines): {:.1} µs written, {:.2} µs \
         sampled out; at 1,000 sagas/s: {:.1} % of one core written",
        line_us * LINES_PER_COMPLETED_SAGA,
        skipped_us * LINES_PER_COMPLETED_SAGA,
        line_us * LINES_PER_COMPLETED_SAGA * 1_000.0 / 1e6 * 100.0,
    );
    Ok(())
}

/// Runs `f` `ROUNDS` times after a warm-up; prints and returns microseconds per call.
fn time(name: &str, mut f: impl FnMut()) -> f64 {
    for _ in 0..ROUNDS / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..ROUNDS {
        f();
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
    println!("{name}: {us:.2} µs");
    us
}
