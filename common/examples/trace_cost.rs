//! What trace context costs per message, export off (the default), on the production subscriber
//! (JSON lines at `info`, the OpenTelemetry layer): the consumer span a message gets now
//! (`telemetry::spans::consumer`: parent from the envelope, ids recorded, its context left on
//! the envelope) against the plain span it had before, the saga transition span, and an
//! envelope built inside a traced span (which reads the current context).
//!
//! `cargo run --release -p saga-common --example trace_cost` prints microseconds per operation,
//! one core. A saga handles about 8 messages and 3 transitions (docs/observability.md, "What
//! telemetry costs").

use std::hint::black_box;
use std::time::Instant;

use saga_common::contracts;
use saga_common::messaging::Envelope;
use saga_common::telemetry::{self, spans};
use uuid::Uuid;

const ROUNDS: u32 = 200_000;
/// A parent as the fleet passes it with export off: not sampled (flags `00`).
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
/// A parent sampled upstream (a caller that exports): its spans are recorded, even here.
const SAMPLED_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init(telemetry::subscriber("cost", "info", std::io::sink));
    let mut command = Envelope::new(
        &contracts::ReleaseStock {
            order_id: Uuid::now_v7(),
        },
        Uuid::now_v7(),
        "corr-1",
        None,
    )?;
    let delivered = spans::Delivered {
        queue: "inventory.commands",
        exchange: "saga.commands",
        routing_key: "inventory.release",
        redelivered: false,
        attempt: 1,
        properties: &lapin::BasicProperties::default(),
    };

    let before = per_op(|| {
        // The span every message had before traces: the same fields, not traced.
        let span = tracing::info_span!(
            "handle_message",
            service = "inventory",
            queue = delivered.queue,
            message_type = %command.message_type,
            message_id = %command.message_id,
            correlation_id = %command.correlation_id,
            saga_id = %command.saga_id,
            order_id = %command.saga_id,
            redelivered = false,
            attempt = 1u32,
        );
        span.in_scope(|| black_box(&span));
    });
    let consumer = per_op(|| {
        command.traceparent = Some(PARENT.to_owned());
        let span = spans::consumer("inventory", &mut command, &delivered);
        span.in_scope(|| black_box(&span));
    });
    let consumer_sampled = per_op(|| {
        command.traceparent = Some(SAMPLED_PARENT.to_owned());
        let span = spans::consumer("inventory", &mut command, &delivered);
        span.in_scope(|| black_box(&span));
    });
    let transition = per_op(|| {
        let span = spans::transition(
            command.saga_id,
            "AWAITING_STOCK",
            "COMPLETED",
            "inventory.reserved",
            Some((PARENT, None)),
        );
        span.in_scope(|| black_box(&span));
    });
    let reply = per_op(|| {
        let reply = command.reply(&contracts::StockReleased {
            order_id: command.saga_id,
        });
        black_box(reply).ok();
    });
    let untraced = telemetry::context::current().is_none();
    let span = spans::transition(command.saga_id, "A", "B", "e", Some((PARENT, None)));
    let traced_envelope = span.in_scope(|| {
        per_op(|| {
            let envelope = Envelope::new(
                &contracts::StockReleased {
                    order_id: command.saga_id,
                },
                command.saga_id,
                "corr-1",
                None,
            );
            black_box(envelope).ok();
        })
    });
    drop(span);

    println!("per operation, one core, export off ({ROUNDS} rounds each):");
    println!("  message span before traces (plain)        {before:6.2} µs");
    println!("  consumer span (traced, parent, ids)       {consumer:6.2} µs");
    println!("  consumer span, parent sampled upstream    {consumer_sampled:6.2} µs");
    println!("  saga transition span                      {transition:6.2} µs");
    println!("  reply envelope (context copied)           {reply:6.2} µs");
    println!("  envelope inside a traced span (context)   {traced_envelope:6.2} µs");
    println!("  (outside any span, no context read: {untraced})");
    let per_saga = 8.0 * (consumer - before) + 3.0 * transition;
    println!("  added per saga (8 messages, 3 transitions) {per_saga:6.2} µs");
    Ok(())
}

/// Microseconds per call of `op`, after a warm-up.
fn per_op(mut op: impl FnMut()) -> f64 {
    for _ in 0..ROUNDS / 10 {
        op();
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        op();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
}
