//! The servers the fleet depends on go away mid-stream and come back.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::harness::eventually;
use crate::harness::fleet::{Fleet, FleetOptions};
use crate::invariants::Expectations;
use crate::scenario::Scenario;
use crate::stream::StreamPlan;

/// Waits until the first orchestrator's readiness answers `status`.
async fn orchestrator_readiness_becomes(fleet: &Fleet, status: StatusCode) {
    let url = format!("{}/health/ready", fleet.api.orchestrators[0]);
    eventually(
        &format!("orchestrator readiness {status}"),
        Duration::from_secs(15),
        || async {
            let response = fleet.api.client.get(&url).send().await.ok()?;
            (response.status() == status).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_end_and_balance_when_rabbitmq_is_stopped_or_killed_mid_stream_and_started_again() {
    let mut scenario =
        Scenario::begin("rabbitmq stopped and killed", FleetOptions::default()).await;
    // Long enough that both outages fall in the middle of it: orders keep being accepted
    // during each, and the first (a stop, a start and the whole fleet ready again) took more
    // than the 18 s a stream of 150 orders lasts on a loaded machine, which left the crash
    // waiting for orders the stream had already finished placing. 48 s of orders.
    let mut stream = scenario.stream(StreamPlan {
        orders: 400,
        ..StreamPlan::default()
    });

    // A graceful stop first, then a crash: both times the orchestrator keeps taking orders,
    // which wait in its outbox, and every service reconnects by itself, without a restart.
    stream.accepted(30).await;
    scenario.fleet.rabbitmq.stop().await;
    scenario.mark("rabbitmq stopped");
    orchestrator_readiness_becomes(&scenario.fleet, StatusCode::SERVICE_UNAVAILABLE).await;
    stream.accepted(45).await;
    scenario.fleet.rabbitmq.start().await;
    scenario.fleet.wait_all_ready().await;
    scenario.mark("rabbitmq started, fleet ready again");

    // The crash comes while the fleet works off what piled up in the outboxes.
    let accepted = stream.progress().accepted;
    stream.accepted(accepted + 5).await;
    scenario.fleet.rabbitmq.kill().await;
    scenario.mark("rabbitmq killed");
    orchestrator_readiness_becomes(&scenario.fleet, StatusCode::SERVICE_UNAVAILABLE).await;
    stream.accepted(accepted + 15).await;
    scenario.fleet.rabbitmq.start().await;
    scenario.fleet.wait_all_ready().await;
    scenario.mark("rabbitmq started, fleet ready again");

    let ledger = stream.finish().await;
    scenario.check(&ledger, &Expectations::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_end_and_balance_when_postgresql_is_stopped_mid_stream_and_started_again() {
    let mut scenario = Scenario::begin("postgresql stopped", FleetOptions::default()).await;
    let mut stream = scenario.stream(StreamPlan::default());

    stream.accepted(30).await;
    let before = stream.progress().unavailable;
    scenario.fleet.postgres.stop().await;
    let stopped = Instant::now();
    scenario.mark("postgresql stopped");
    orchestrator_readiness_becomes(&scenario.fleet, StatusCode::SERVICE_UNAVAILABLE).await;
    // Down until the stream has felt it (orders refused with 503, retried with their key), and
    // for longer than a message's whole retry schedule: deliveries that fail because the
    // database is gone must wait for it, not use up their attempts and end in a DLQ.
    stream
        .wait_for(
            "POSTs refused without a database",
            Duration::from_secs(30),
            |p| p.unavailable >= before + 2,
        )
        .await;
    let retry_budget: Duration = (1..scenario.fleet.retry.max_attempts())
        .map(|failures| scenario.fleet.retry.delay_after(failures))
        .sum();
    // A fault's length, not a wait for an outcome: the outage itself is what is being tested.
    tokio::time::sleep((retry_budget + Duration::from_secs(2)).saturating_sub(stopped.elapsed()))
        .await;
    scenario.mark("outage outlasted the retry schedule");
    scenario.fleet.postgres.start().await;
    scenario.mark("postgresql started");
    scenario.fleet.wait_all_ready().await;
    scenario.mark("fleet ready again");

    let ledger = stream.finish().await;
    scenario.check(&ledger, &Expectations::default()).await;
}
