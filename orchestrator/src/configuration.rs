//! The orchestrator's settings: everything every service has, plus the saga's deadlines.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use saga_common::configuration::ServiceSettings;

use crate::orders::intake::IntakeSettings;
use crate::saga::SagaState;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    #[serde(flatten)]
    pub service: ServiceSettings,
    pub saga: SagaSettings,
    /// How `POST /api/orders` writes (`APP__INTAKE__...`).
    pub intake: IntakeSettings,
}

/// When the timeout worker steps in, per state (`APP__SAGA__...`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SagaSettings {
    /// How long to wait for `payment.charged`/`declined` before resending the charge.
    pub awaiting_payment_timeout_ms: u64,
    /// How long to wait for `inventory.reserved`/`reservation_failed`.
    pub awaiting_stock_timeout_ms: u64,
    /// How long to wait for each compensation reply (release, refund) before resending it.
    pub compensation_timeout_ms: u64,
    /// Resends of a forward command before the saga compensates and fails `timed_out`.
    /// Compensating commands are resent without limit: compensation must finish.
    pub max_resends: i32,
    /// Cron expression (with seconds) of the sweep for overdue sagas.
    pub sweep_schedule: String,
    /// Most sagas handled per sweep, so one sweep stays short.
    pub sweep_batch: usize,
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            awaiting_payment_timeout_ms: 30_000,
            awaiting_stock_timeout_ms: 30_000,
            compensation_timeout_ms: 30_000,
            max_resends: 3,
            sweep_schedule: "*/1 * * * * *".into(),
            sweep_batch: 500,
        }
    }
}

impl SagaSettings {
    /// How long the saga may stay in `state` before the worker acts; `None` for final states.
    pub fn timeout(&self, state: SagaState) -> Option<Duration> {
        let ms = match state {
            SagaState::AwaitingPayment => self.awaiting_payment_timeout_ms,
            SagaState::AwaitingStock => self.awaiting_stock_timeout_ms,
            SagaState::ReleasingStock(_) | SagaState::RefundingPayment(_) => {
                self.compensation_timeout_ms
            }
            SagaState::Completed | SagaState::Failed(_) => return None,
        };
        Some(Duration::from_millis(ms))
    }
}

/// Port 3000, database `saga_orchestrator`.
pub fn default_settings() -> Settings {
    Settings {
        service: ServiceSettings::new(3000, "saga_orchestrator"),
        saga: SagaSettings::default(),
        intake: IntakeSettings::default(),
    }
}
