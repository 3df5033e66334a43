//! Asking the broker how a queue is doing, on a channel the supervised session keeps open.
//!
//! - [`Probe`]: the slot the session ([`super::broker`]) fills with a channel while connected;
//!   any task of the service asks through it (the orchestrator's timeout sweep, before it
//!   resends a command to a participant's queue).
//! - [`QueueDepth`]: what a passive `queue.declare` answers: ready messages and consumers.
//!
//! A channel of its own, not the publisher's: a passive declare of a missing queue makes the
//! broker close the channel (404), which must not end the relay's session. The session's
//! watchdog reopens it when that happens.

use std::sync::Mutex;
use std::time::Duration;

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

/// How long a probe waits for the broker: the caller may hold database locks meanwhile.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A queue as a passive declare sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages ready for delivery (not those delivered and unacknowledged).
    pub messages: u32,
    /// Consumers subscribed right now.
    pub consumers: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no open channel to the broker")]
    NotConnected,
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
}

/// The probe channel of a service's broker session; empty while disconnected.
#[derive(Debug, Default)]
pub struct Probe {
    channel: Mutex<Option<Channel>>,
}

impl Probe {
    /// Puts `channel` in (the session connected) or empties the slot (`None`: it ended).
    pub fn set(&self, channel: Option<Channel>) {
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = channel;
    }

    /// Whether a channel is in and open.
    pub fn is_open(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Channel> {
        self.channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|channel| channel.status().connected())
    }

    /// `queue`'s ready messages and consumers, by a passive declare (which creates nothing).
    pub async fn depth(&self, queue: &str) -> Result<QueueDepth, ProbeError> {
        let channel = self.current().ok_or(ProbeError::NotConnected)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = tokio::time::timeout(
            PROBE_TIMEOUT,
            channel.queue_declare(queue.into(), passive, FieldTable::default()),
        )
        .await
        .map_err(|_| ProbeError::Timeout(PROBE_TIMEOUT))??;
        Ok(QueueDepth {
            messages: declared.message_count(),
            consumers: declared.consumer_count(),
        })
    }
}
