//! Services that die: SIGKILL mid-stream and restart, and several instances consuming at once.

use std::time::Duration;

use saga_common::configuration::AmqpSettings;

use crate::duplicator::Duplicator;
use crate::harness::eventually;
use crate::harness::fleet::{Fleet, FleetOptions, Service};
use crate::invariants::Expectations;
use crate::scenario::Scenario;
use crate::stream::StreamPlan;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_end_and_balance_when_each_participant_is_killed_mid_stream_and_restarted() {
    let mut scenario = Scenario::begin("participants killed", FleetOptions::default()).await;
    let mut stream = scenario.stream(StreamPlan::default());

    // Each participant dies with deliveries in flight while orders keep coming and wait in its
    // queue; it is restarted, and killed again at once, while it works through that backlog.
    let mut accepted = 25;
    for participant in [Service::Payment, Service::Inventory] {
        stream.accepted(accepted).await;
        scenario.fleet.kill(participant, 0).await;
        stream.accepted(accepted + 15).await;
        scenario.fleet.restart(participant, 0).await;
        scenario.fleet.kill(participant, 0).await;
        scenario.fleet.restart(participant, 0).await;
        scenario.mark(&format!("{} killed twice", participant.name()));
        accepted += 30;
    }

    let ledger = stream.finish().await;
    scenario.check(&ledger, &Expectations::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_end_and_balance_when_the_orchestrator_is_killed_mid_stream_and_restarted() {
    let mut scenario = Scenario::begin("orchestrator killed", FleetOptions::default()).await;
    let mut stream = scenario.stream(StreamPlan::default());

    stream.accepted(30).await;
    let before = stream.progress().unavailable;
    scenario.fleet.kill(Service::Orchestrator, 0).await;
    scenario.mark("orchestrator killed");
    // Down until the stream has felt it: its POSTs fail and are retried with the same key.
    stream
        .wait_for(
            "POSTs refused by the dead orchestrator",
            Duration::from_secs(30),
            |p| p.unavailable >= before + 10,
        )
        .await;
    scenario.fleet.restart(Service::Orchestrator, 0).await;
    scenario.mark("orchestrator restarted");

    let ledger = stream.finish().await;
    scenario.check(&ledger, &Expectations::default()).await;
}

/// Asserts that every work queue has the consumers of `instances` instances (one per consuming
/// channel each): that the instances really share the work rather than one of them idling.
async fn every_work_queue_has_consumers(fleet: &Fleet, instances: u32) {
    let channels = u32::try_from(AmqpSettings::default().concurrency).unwrap_or(u32::MAX);
    let count = instances * channels;
    for (queue, _, _) in crate::harness::fleet::saga_work_queues() {
        let consumers = fleet.rabbitmq.consumers(queue).await;
        assert_eq!(consumers, Ok(Some(count)), "consumers of {queue}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_end_and_balance_with_two_instances_of_every_service_consuming_at_once() {
    let mut scenario = Scenario::begin(
        "two instances of each",
        FleetOptions::default().with_instances(2),
    )
    .await;
    // The stream alternates between the two orchestrators; each queue has two consumers.
    let mut stream = scenario.stream(StreamPlan::default());
    stream.accepted(50).await;
    every_work_queue_has_consumers(&scenario.fleet, 2).await;
    let ledger = stream.finish().await;
    scenario.check(&ledger, &Expectations::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_end_and_balance_with_two_instances_of_every_service_racing_on_duplicates() {
    let mut scenario = Scenario::begin(
        "two instances of each, every message twice",
        FleetOptions::default().with_instances(2),
    )
    .await;
    // Two copies of every message, two consumers on every queue: copies of one message are
    // often handled at the same moment by two processes, and must still act once.
    let duplicator = Duplicator::start(&scenario.fleet.rabbitmq.amqp_url()).await;
    let mut stream = scenario.stream(StreamPlan::default());
    stream.accepted(50).await;
    every_work_queue_has_consumers(&scenario.fleet, 2).await;
    let ledger = stream.finish().await;
    scenario.check(&ledger, &Expectations::default()).await;
    assert!(
        duplicator.duplicated() >= 2 * ledger.accepted.len(),
        "only {} messages were duplicated for {} orders",
        duplicator.duplicated(),
        ledger.accepted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_end_and_balance_through_a_rolling_restart_with_sigterm_of_two_instances_each() {
    let mut scenario =
        Scenario::begin("rolling restart", FleetOptions::default().with_instances(2)).await;
    let mut stream = scenario.stream(StreamPlan::default());

    // One instance at a time, as a deployment replaces them: SIGTERM (it must finish or hand
    // back its deliveries, flush its outbox and exit 0 within its grace period), then start it
    // again, while its twin carries the load.
    let mut accepted = 20;
    for service in [Service::Payment, Service::Inventory, Service::Orchestrator] {
        for instance in 0..2 {
            stream.accepted(accepted).await;
            scenario.fleet.terminate(service, instance).await;
            scenario.fleet.restart(service, instance).await;
            scenario.mark(&format!("{} {instance} replaced", service.name()));
            accepted += 10;
        }
    }

    let ledger = stream.finish().await;
    scenario.check(&ledger, &Expectations::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_a_service_can_start_at_once_on_a_fresh_database() {
    // As a deployment that scales a service to two replicas starts them: both at once.
    let _slot = crate::scenario::slot().await;
    let fleet = Fleet::start_all_at_once(FleetOptions::default().with_instances(2)).await;
    drop(fleet);
}

/// Kills `participant` mid-stream and keeps it down until the timeout worker has given up on
/// ten sagas (they wait in `compensating`, for the participant to undo what it may have done),
/// then restarts it: the commands queued for it arrive late, the compensations behind them undo
/// them, and the late replies must not move the sagas.
async fn participant_down_past_the_deadline(
    name: &'static str,
    participant: Service,
    compensating: &str,
) {
    // Deadlines short enough that an outage of a few seconds outlasts them: one resend after
    // 1.5 s, compensation 1.5 s later.
    let options = FleetOptions::default()
        .with_setting(
            Service::Orchestrator,
            "SAGA__AWAITING_PAYMENT_TIMEOUT_MS",
            1_500,
        )
        .with_setting(
            Service::Orchestrator,
            "SAGA__AWAITING_STOCK_TIMEOUT_MS",
            1_500,
        )
        .with_setting(
            Service::Orchestrator,
            "SAGA__COMPENSATION_TIMEOUT_MS",
            1_500,
        )
        .with_setting(Service::Orchestrator, "SAGA__MAX_RESENDS", 1);
    let mut scenario = Scenario::begin(name, options).await;
    let mut stream = scenario.stream(StreamPlan::default());

    stream.accepted(30).await;
    scenario.fleet.kill(participant, 0).await;
    scenario.mark("participant killed");
    let api = scenario.fleet.api.clone();
    eventually(
        &format!("10 sagas in {compensating}"),
        Duration::from_secs(60),
        || async {
            let sagas = api.sagas_in_progress().await.ok()?;
            let count = sagas.iter().filter(|(_, s)| s == compensating).count();
            (count >= 10).then_some(())
        },
    )
    .await;
    scenario.mark("10 sagas compensating");
    scenario.fleet.restart(participant, 0).await;
    scenario.mark("participant restarted");

    let ledger = stream.finish().await;
    let expect = Expectations {
        required_failure_reasons: vec!["payment_declined", "out_of_stock", "timed_out"],
        ..Expectations::default()
    };
    scenario.check(&ledger, &expect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_fail_timed_out_and_balance_when_payment_is_down_past_the_saga_deadline() {
    // Sagas waiting for a charge give up and refund; the queued charges arrive before the
    // refunds, so each may debit first and must be credited back.
    participant_down_past_the_deadline(
        "payment down past the deadline",
        Service::Payment,
        "REFUNDING_PAYMENT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_fail_timed_out_and_balance_when_inventory_is_down_past_the_saga_deadline() {
    // Sagas waiting for stock give up, release and then refund; the queued reservations arrive
    // before the releases, so each may take stock first and must give it back.
    participant_down_past_the_deadline(
        "inventory down past the deadline",
        Service::Inventory,
        "RELEASING_STOCK",
    )
    .await;
}
