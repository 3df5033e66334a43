//! One supervised AMQP connection per service.
//!
//! [`Messaging::run`] connects, declares the topology, starts the consumer and the outbox relay,
//! and watches the connection. When anything breaks it marks itself not ready, backs off
//! (exponentially, capped) and starts over, so a broker restart needs no process restart. Given
//! several broker addresses (a cluster's nodes), it starts over on the next one, so losing a
//! node moves the consumer and the relay to another. On shutdown it cancels the consumer, lets
//! deliveries in flight finish (bounded by the grace period), flushes the outbox once more and
//! closes the connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use sea_orm::DatabaseConnection;

use super::consumer::{ConsumerContext, MessageHandler, consume};
use super::inbox::DedupWindow;
use super::outbox::{Relay, RelayError, RelayWakeup};
use super::probe::Probe;
use super::topology;
use crate::configuration::{AmqpSettings, OutboxSettings, RetrySettings};
use crate::secret::SecretUrl;
use crate::shutdown::Shutdown;

/// Live view of the broker side, read by readiness.
#[derive(Debug, Default)]
pub struct BrokerStatus {
    connected: AtomicBool,
    consuming: AtomicBool,
    /// A channel for asking about queues, open while the session is (see [`Probe`]).
    probe: Probe,
}

impl BrokerStatus {
    /// The connection and both channels are open.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The consumer is registered and its loop runs.
    pub fn consuming(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
    }

    /// Asks the broker about a queue over this service's connection.
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    fn set(&self, connected: bool, consuming: bool) {
        crate::metrics::gauges::amqp_connection(connected);
        self.connected.store(connected, Ordering::Relaxed);
        self.consuming.store(consuming, Ordering::Relaxed);
        if !connected {
            self.probe.set(None);
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error("the connection or a channel closed")]
    Disconnected,
    #[error("the consumer stopped")]
    ConsumerEnded,
}

pub struct Messaging<H> {
    pub service: String,
    pub amqp: AmqpSettings,
    pub outbox: OutboxSettings,
    /// Delays and attempts of transient-failure retries; sizes this queue's delay queues.
    pub retry: RetrySettings,
    /// `retention.inbox_window`: older messages are dead-lettered unapplied.
    pub dedup_window: DedupWindow,
    pub db: DatabaseConnection,
    /// The queue this service consumes.
    pub queue: &'static str,
    pub handler: Arc<H>,
    pub status: Arc<BrokerStatus>,
    pub wakeup: RelayWakeup,
    /// How long deliveries in flight may take to finish once shutdown starts.
    pub grace: Duration,
}

impl<H: MessageHandler> Messaging<H> {
    /// Runs until `shutdown`, reconnecting as often as needed.
    ///
    /// With several addresses, each attempt goes to the address after the one that failed
    /// (round robin), at once; the backoff is slept once per round in which none of them held.
    /// With one address this is the plain reconnect loop.
    pub async fn run(self, shutdown: Shutdown) {
        let addresses = self.amqp.addresses().unwrap_or_else(|problem| {
            // Start-up refuses such settings; a caller that skipped the check still gets the
            // driver's (scrubbed) errors below, once per attempt.
            tracing::error!(%problem, "the broker addresses are not usable as given");
            vec![self.amqp.url.clone()]
        });
        let initial_delay = Duration::from_millis(200);
        let max_delay = Duration::from_millis(self.amqp.max_reconnect_delay_ms.max(200));
        let mut delay = initial_delay;
        let mut next = 0;
        let mut failed_in_round = 0;
        while !shutdown.is_triggered() {
            let address = &addresses[next];
            let mut established = false;
            let outcome = self.session(address, &shutdown, &mut established).await;
            self.status.set(false, false);
            match outcome {
                Ok(()) => return,
                Err(error) => {
                    if established {
                        delay = initial_delay;
                        failed_in_round = 0;
                    }
                    // A driver's message may quote the URL it was given.
                    let error = address.scrub(&error.to_string());
                    next = (next + 1) % addresses.len();
                    failed_in_round += 1;
                    if failed_in_round < addresses.len() {
                        tracing::error!(%error, %address, next = %addresses[next], "messaging session ended; trying the next address");
                        continue;
                    }
                    failed_in_round = 0;
                    tracing::error!(%error, %address, retry_in_ms = delay.as_millis() as u64, "messaging session ended; reconnecting");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.wait() => return,
            }
            delay = (delay * 2).min(max_delay);
        }
    }

    async fn session(
        &self,
        address: &SecretUrl,
        shutdown: &Shutdown,
        established: &mut bool,
    ) -> Result<(), SessionError> {
        let connection = Connection::connect(
            address.expose(),
            ConnectionProperties::default().with_connection_name(self.service.as_str().into()),
        )
        .await?;
        let setup = connection.create_channel().await?;
        topology::declare_for_service(&setup, self.queue, &self.retry).await?;
        let _ = setup.close(200, "topology declared".into()).await;

        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        // One channel per concurrent batch: each channel has one batch in flight at a time,
        // which is what makes its multiple-acks exact (see the consumer module).
        let mut consumers = Vec::new();
        for slot in 0..self.amqp.concurrency.max(1) {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(self.amqp.prefetch, BasicQosOptions::default())
                .await?;
            let tag = format!("{}-{}-{slot}", self.service, uuid::Uuid::now_v7());
            let consumer = channel
                .basic_consume(
                    self.queue.into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumers.push((channel, tag, consumer));
        }
        self.status
            .probe
            .set(Some(connection.create_channel().await?));
        *established = true;
        self.status.set(true, true);
        tracing::info!(
            queue = self.queue,
            channels = consumers.len(),
            %address,
            "connected to RabbitMQ and consuming"
        );

        let context = Arc::new(ConsumerContext {
            service: self.service.clone(),
            queue: self.queue,
            publisher: publisher.clone(),
            wakeup: self.wakeup.clone(),
            batch_size: self.amqp.batch_size,
            batch_linger: Duration::from_millis(self.amqp.batch_linger_ms),
            retry: self.retry.clone(),
            dedup_window: self.dedup_window,
            db: self.db.clone(),
            metrics: crate::metrics::consumer::ConsumerMetrics::new(self.queue),
        });
        let relay = Relay {
            db: self.db.clone(),
            settings: self.outbox.clone(),
            wakeup: self.wakeup.clone(),
            app_id: self.service.clone(),
        };
        let relay_stop = Shutdown::new();

        let mut channels = Vec::with_capacity(consumers.len());
        let mut loops = Vec::with_capacity(consumers.len());
        for (channel, tag, consumer) in consumers {
            loops.push(consume(consumer, context.clone(), self.handler.clone()));
            channels.push((channel, tag));
        }
        let consuming = async {
            // Any one channel's consumer ending is the session ending.
            let mut deliveries = futures_util::future::select_all(loops.into_iter().map(Box::pin));
            tokio::select! {
                _ = &mut deliveries => Err(SessionError::ConsumerEnded),
                () = shutdown.wait() => {
                    for (channel, tag) in &channels {
                        let _ = channel
                            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                            .await;
                    }
                    // The batches in flight finish; their channels then end their streams.
                    let all = futures_util::future::join_all(deliveries.into_inner());
                    if tokio::time::timeout(self.grace, all).await.is_err() {
                        tracing::warn!("deliveries still in flight at the end of the grace period; the broker will redeliver them");
                    }
                    Ok(())
                }
            }
        };
        let watchdog = async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if !(connection.status().connected()
                    && publisher.status().connected()
                    && channels.iter().all(|(c, _)| c.status().connected()))
                {
                    return SessionError::Disconnected;
                }
                // The broker closes the probe's channel on a failed passive declare (a queue
                // that does not exist): reopened here, the session goes on.
                if !self.status.probe.is_open() {
                    match connection.create_channel().await {
                        Ok(channel) => self.status.probe.set(Some(channel)),
                        Err(_) => return SessionError::Disconnected,
                    }
                }
            }
        };

        let outcome = tokio::select! {
            result = relay.run(&publisher, &relay_stop) => Err(match result {
                Ok(()) => SessionError::Disconnected,
                Err(error) => error.into(),
            }),
            error = watchdog => Err(error),
            result = consuming => result,
        };
        self.status.set(false, false);
        if outcome.is_ok() {
            // Shutting down: publish what the last deliveries committed, then say goodbye.
            relay_stop.trigger();
            if let Err(error) = tokio::time::timeout(self.grace, relay.run(&publisher, &relay_stop))
                .await
                .unwrap_or(Ok(()))
            {
                tracing::warn!(%error, "final outbox flush failed; messages stay in the outbox");
            }
            let _ = connection.close(200, "shutdown".into()).await;
        }
        outcome
    }
}

/// A connection to the first of `addresses` that answers, for short-lived connections (the
/// dead-letter admin): the session's round robin is for a long-lived one. With every address
/// down, the last one's error.
pub(crate) async fn connect_first(
    addresses: &[SecretUrl],
    properties: ConnectionProperties,
) -> Result<Connection, lapin::Error> {
    let mut last = None;
    for address in addresses {
        match Connection::connect(address.expose(), properties.clone()).await {
            Ok(connection) => return Ok(connection),
            Err(error) => {
                tracing::debug!(error = %address.scrub(&error.to_string()), %address, "broker address did not answer; trying the next");
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no broker address given").into()))
}
