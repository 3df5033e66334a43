//! A measurement, not a check (ignored; run by hand): what consuming the benchmark's events
//! costs this service when every notification is `SKIPPED` (no address).
//!
//! `cargo test -p notification --features saga-common/testing --test api cost -- --ignored --nocapture`

use std::time::Instant;

use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use saga_common::messaging::topology;
use saga_common::testing::{TestVhost, eventually, number};

use crate::helpers::{completed, spawn_app_on};
use crate::mailer::free_port;

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn cost_of_a_skipped_notification() {
    const EVENTS: i64 = 20_000;
    let vhost = TestVhost::create().await;
    // The queue first, then every event on it, then the service: what is measured is the
    // service consuming a backlog, not the publisher.
    let connection =
        lapin::Connection::connect(&vhost.amqp_url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    topology::declare(&channel).await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut confirms = Vec::new();
    for _ in 0..EVENTS {
        let (_, event) = completed("bench-customer-without-address");
        let body = serde_json::to_vec(&event).unwrap();
        confirms.push(
            channel
                .basic_publish(
                    topology::EVENTS_EXCHANGE.into(),
                    event.message_type.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default()
                        .with_content_type("application/json".into())
                        .with_delivery_mode(2),
                )
                .await
                .unwrap(),
        );
    }
    for confirm in confirms {
        confirm.await.unwrap();
    }
    let _ = connection.close(200, "published".into()).await;

    let (cpu, started) = (cpu_seconds(), Instant::now());
    let app = spawn_app_on(vhost, free_port(), |_| {}).await;
    eventually(
        "every event handled",
        std::time::Duration::from_secs(600),
        || async {
            let n = number(&app.database_url, "SELECT count(*) AS n FROM notifications").await;
            (n == EVENTS).then_some(())
        },
    )
    .await;
    let (cpu, wall) = (cpu_seconds() - cpu, started.elapsed().as_secs_f64());
    println!(
        "{EVENTS} SKIPPED notifications in {wall:.2} s ({:.0}/s); this process's CPU {cpu:.2} s, \
         {:.1} µs per event (service and polling; PostgreSQL and RabbitMQ not counted)",
        EVENTS as f64 / wall,
        cpu * 1e6 / EVENTS as f64
    );
    app.stop().await;
}
