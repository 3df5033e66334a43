//! The orchestrator's settings: everything every service has, plus the saga's deadlines, the
//! order intake's batching, admission control and where the console finds the participants. A leaf: the features read it, it imports
//! none of them.

use serde::{Deserialize, Serialize};

use saga_common::configuration::ServiceSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    #[serde(flatten)]
    pub service: ServiceSettings,
    pub saga: SagaSettings,
    pub intake: IntakeSettings,
    pub admission: AdmissionSettings,
    pub console: ConsoleSettings,
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
    /// The longest wait between two resends of one command. The n-th resend's deadline is its
    /// state's timeout × 2^n, capped here (never below the state's own timeout), so a saga
    /// stuck on a participant that is down asks less and less often, but at least this often.
    pub max_resend_interval_ms: u64,
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
            // Ten minutes: a participant back after an outage finds its queued copy at once
            // (the saga needs no resend for that); this only bounds how long a copy that was
            // really lost waits to be sent again.
            max_resend_interval_ms: 600_000,
            sweep_schedule: "*/1 * * * * *".into(),
            sweep_batch: 500,
        }
    }
}

/// How `POST /api/orders` writes (`APP__INTAKE__...`): see `orders::intake`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntakeSettings {
    /// Most orders written in one transaction.
    pub batch_size: usize,
    /// Transactions writing orders at the same time.
    pub concurrency: usize,
    /// Under load (the last batch held more than one order), how long a batch waits for more
    /// orders before it is written. An idle intake never waits.
    pub linger_ms: u64,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            batch_size: 64,
            concurrency: 1,
            // At a steady rate orders arrive one by one, each small batch paying a whole
            // transaction: a short wait under load lets them share one.
            linger_ms: 2,
        }
    }
}

/// How much work `POST /api/orders` takes on before it refuses (`APP__ADMISSION__...`): see
/// `admission`. Past either bound an order is answered `503 overloaded` with `Retry-After`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdmissionSettings {
    /// `false`: every order is accepted, and a full intake queue makes requests wait (the
    /// behaviour before admission control).
    pub enabled: bool,
    /// Most sagas not yet ended (status `PENDING`), counted over every instance sharing the
    /// database. By Little's law an accepted order's end-to-end latency under overload is about
    /// this divided by the completion rate.
    pub max_in_flight: u64,
    /// Most orders waiting for the intake's writers in this process.
    pub max_queued: usize,
    /// The `Retry-After` of a refusal, in seconds.
    pub retry_after_secs: u64,
    /// How often the count of sagas in flight is read from the database, correcting this
    /// process's running count (other instances' orders, restarts, missed ends).
    pub recount_interval_ms: u64,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            // Measured, not adaptive (docs/configuration.md#admission): ~1,100 sagas end per
            // second on the reference machine, so 1,000 in flight is under 1 s from acceptance
            // to the end; at 80 % of peak about 100 are in flight, so it never bites then.
            max_in_flight: 1_000,
            // Eight batches of 64: at the intake's ~3,000 orders/s, about 0.2 s of waiting.
            max_queued: 512,
            retry_after_secs: 1,
            recount_interval_ms: 500,
        }
    }
}

/// Where the operator console (`console`) reaches the participants (`APP__CONSOLE__...`): the
/// overview reads their `/metrics` and `/health/ready`, the proxy forwards the page's calls.
/// Base URLs without a trailing slash, e.g. `http://127.0.0.1:3001`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsoleSettings {
    pub payment_url: String,
    pub inventory_url: String,
    pub notification_url: String,
}

impl Default for ConsoleSettings {
    /// The participants' default ports on this host (deploy/run.sh).
    fn default() -> Self {
        Self {
            payment_url: "http://127.0.0.1:3001".into(),
            inventory_url: "http://127.0.0.1:3002".into(),
            notification_url: "http://127.0.0.1:3003".into(),
        }
    }
}

impl ConsoleSettings {
    /// Each URL must be an absolute `http` or `https` URL with a host: a typo is refused at
    /// start-up rather than shown as an unreachable service in the console.
    pub fn validate(&self) -> Result<(), String> {
        for (name, url) in [
            ("console.payment_url", &self.payment_url),
            ("console.inventory_url", &self.inventory_url),
            ("console.notification_url", &self.notification_url),
        ] {
            let parsed = reqwest::Url::parse(url)
                .map_err(|error| format!("{name} is not a URL ({error}): {url:?}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(format!(
                    "{name} must be an http(s) URL with a host, not {url:?}"
                ));
            }
        }
        Ok(())
    }
}

/// Port 3000, database `saga_orchestrator`.
pub fn default_settings() -> Settings {
    Settings {
        service: ServiceSettings::new(3000, "saga_orchestrator"),
        saga: SagaSettings::default(),
        intake: IntakeSettings::default(),
        admission: AdmissionSettings::default(),
        console: ConsoleSettings::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_urls_must_be_http() {
        assert_eq!(ConsoleSettings::default().validate(), Ok(()));
        let mut settings = ConsoleSettings {
            inventory_url: "127.0.0.1:3002".into(),
            ..ConsoleSettings::default()
        };
        assert!(
            settings
                .validate()
                .unwrap_err()
                .contains("console.inventory_url")
        );
        settings.inventory_url = "ftp://host/".into();
        assert!(settings.validate().is_err());
        settings.inventory_url = "https://inventory.internal:8443".into();
        assert_eq!(settings.validate(), Ok(()));
    }
}
