//! Typed settings, layered: built-in defaults, then an optional TOML file named by `APP_CONFIG_FILE`,
//! then `APP__SECTION__KEY` environment variables (for example `APP__DATABASE__URL`).
//!
//! This is the only place that reads the process environment for configuration. Who may call
//! and how often (`auth`, `rate_limit`, the deprecated `admin`) are in [`access`]; what the
//! fleet tells its operators (`telemetry`) in [`telemetry`].

use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::secret::SecretUrl;

mod access;
mod amqp;
mod telemetry;

pub use access::{AdminSettings, AuthSettings, RateLimitSettings};
pub use amqp::AmqpSettings;
pub use telemetry::TelemetrySettings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
}

/// Loads `T` from its defaults, the optional file and the environment.
pub fn load<T>(defaults: &T) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned,
{
    layered(
        defaults,
        std::env::var("APP_CONFIG_FILE").ok(),
        config::Environment::default(),
    )
}

/// [`load`] on exactly `variables` (`APP__SECTION__KEY` names) instead of the process
/// environment, and without a file: how the deployment manifests' settings are checked against
/// the loader the services run (deploy/faults `packaging` tests).
pub fn load_from<T>(
    defaults: &T,
    variables: std::collections::HashMap<String, String>,
) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned,
{
    layered(
        defaults,
        None,
        config::Environment::default().source(Some(variables)),
    )
}

/// The layering itself; `environment` is the process environment in production and an explicit
/// map in tests (Rust 2024 makes `set_var` unsafe, and this workspace forbids unsafe code).
fn layered<T>(
    defaults: &T,
    file: Option<String>,
    environment: config::Environment,
) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned,
{
    let defaults = config::Config::try_from(defaults)?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(path) = file {
        builder = builder.add_source(config::File::with_name(&path).required(true));
    }
    let settings = builder
        .add_source(
            environment
                .prefix("APP")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()?;
    Ok(settings.try_deserialize()?)
}

/// Where the HTTP API listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpSettings {
    pub host: String,
    /// 0 picks a free port (tests use it).
    pub port: u16,
}

impl HttpSettings {
    pub fn with_port(port: u16) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// Carries the password: shown masked, exposed only to connect.
    pub url: SecretUrl,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a request waits for a pooled connection before failing (and readiness turning red).
    pub acquire_timeout_ms: u64,
    /// A pooled connection idle longer than this is checked before it is handed out; checking
    /// busy ones would cost a round trip per transaction and find nothing.
    #[serde(default = "default_check_idle_after_ms")]
    pub check_idle_after_ms: u64,
}

fn default_check_idle_after_ms() -> u64 {
    1_000
}

impl DatabaseSettings {
    pub fn for_database(name: &str) -> Self {
        Self {
            url: format!("postgres://postgres:postgres@127.0.0.1:5432/{name}").into(),
            max_connections: 8,
            min_connections: 1,
            acquire_timeout_ms: 3_000,
            check_idle_after_ms: default_check_idle_after_ms(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxSettings {
    /// Messages published per relay round (confirms for a whole batch are awaited together).
    pub batch_size: u32,
    /// How often the relay scans for rows no commit handed to it (left by a crash or another
    /// instance).
    pub poll_interval_ms: u64,
    /// How old an unpublished row must be for the scan to take it; younger ones are their
    /// writer's to publish.
    pub orphan_age_ms: u64,
    /// How long confirmed rows wait to be marked sent, so one statement marks many; a crash
    /// resends about this long's worth of messages, which the receivers' inboxes absorb.
    pub mark_delay_ms: u64,
    /// How long the broker may take to confirm a batch before the relay reconnects and resends it.
    pub confirm_timeout_ms: u64,
    /// Batches published and awaiting their confirms at once; more wait for the oldest's confirms.
    pub max_batches_in_flight: u32,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            batch_size: 200,
            poll_interval_ms: 500,
            orphan_age_ms: 5_000,
            // A mark is a transaction of its own; marking in batches keeps them a small share.
            mark_delay_ms: 100,
            confirm_timeout_ms: 30_000,
            max_batches_in_flight: 8,
        }
    }
}

/// Retries of transient failures through the delay queues `<queue>.retry.<delay>ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetrySettings {
    /// Attempts in all, the first delivery included, before a transient failure dead-letters
    /// the message as `retries_exhausted`.
    pub max_attempts: u32,
    /// Wait before the first retry; each later retry waits twice as long as the one before.
    pub base_delay_ms: u64,
    /// Upper bound of one wait, so a large `max_attempts` does not mean waits of days.
    pub max_delay_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay_ms: 1_000,
            max_delay_ms: 60_000,
        }
    }
}

impl RetrySettings {
    /// At least one attempt, whatever was configured.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }

    /// The wait after the `failures`-th failed attempt (from 1): base doubled each time, capped
    /// at `max_delay_ms`, never zero (a zero TTL would be a hot loop).
    pub fn delay_after(&self, failures: u32) -> Duration {
        let base = self.base_delay_ms.max(1);
        let factor = 1_u64
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u64::MAX);
        let cap = self.max_delay_ms.max(base);
        Duration::from_millis(base.saturating_mul(factor).min(cap))
    }

    /// Every distinct wait a message can be given, shortest first: one delay queue each.
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = (1..self.max_attempts())
            .map(|failures| self.delay_after(failures))
            .collect();
        delays.dedup();
        delays
    }
}

/// What a service keeps, and for how long (`APP__RETENTION__...`, durations such as `7d`, `10m`).
/// The pruner removes what is older, a batch at a time, on `schedule`; see `crate::retention`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionSettings {
    /// Off: nothing is pruned on schedule (the admin endpoint still runs a pass on request).
    pub enabled: bool,
    /// Cron expression (with seconds) of the pruning runs.
    pub schedule: String,
    /// How long the inbox remembers a message, so a copy of it is absorbed. A copy older than
    /// this (by its envelope's `occurred_at`) is refused: dead-lettered `outside_dedup_window`,
    /// and a dead-letter replay leaves it in the DLQ. Longer than any retry, resend or replay.
    #[serde(with = "humantime_serde")]
    pub inbox_window: Duration,
    /// How long a published (broker-confirmed) outbox row is kept for audit.
    #[serde(with = "humantime_serde")]
    pub published_outbox: Duration,
    /// How long finished business records (orders with their transitions, payments,
    /// reservations) are kept. Never less than `inbox_window`.
    #[serde(with = "humantime_serde")]
    pub history: Duration,
    /// Rows removed per statement: each batch is a short transaction of its own.
    pub batch_size: u32,
    /// Pause between batches, so a large backlog is removed as a trickle, not an I/O burst.
    #[serde(with = "humantime_serde")]
    pub batch_pause: Duration,
    /// Most batches per table in one run; what is left waits for the next run.
    pub max_batches_per_run: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            schedule: "0 * * * * *".into(),
            inbox_window: Duration::from_secs(7 * 24 * 3600),
            published_outbox: Duration::from_secs(10 * 60),
            history: Duration::from_secs(30 * 24 * 3600),
            batch_size: 1_000,
            batch_pause: Duration::from_millis(20),
            // 500 batches of 1,000: 500,000 rows a minute per rule (8,000/s), above the 3,000
            // outbox rows a second the orchestrator writes at 1,000 sagas/s.
            max_batches_per_run: 500,
        }
    }
}

impl RetentionSettings {
    /// Refuses settings the pruner cannot honour: history kept shorter than the inbox window
    /// would remove an order's records while a copy of one of its messages can still arrive and
    /// be taken for new; a batch of no rows would never end a backlog.
    pub fn validate(&self) -> Result<(), String> {
        if self.history < self.inbox_window {
            return Err(format!(
                "retention.history ({}) must not be shorter than retention.inbox_window ({})",
                humantime_serde::re::humantime::format_duration(self.history),
                humantime_serde::re::humantime::format_duration(self.inbox_window)
            ));
        }
        if self.batch_size == 0 || self.max_batches_per_run == 0 {
            return Err(
                "retention.batch_size and retention.max_batches_per_run must be at least 1".into(),
            );
        }
        Ok(())
    }
}

/// The settings every service has; a service adds its own sections next to these.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSettings {
    pub application: HttpSettings,
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub outbox: OutboxSettings,
    /// `#[serde(default)]` keeps older config files valid.
    #[serde(default)]
    pub retry: RetrySettings,
    /// Deprecated: `admin.token` is read as `auth.operator_token` when that is empty.
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub retention: RetentionSettings,
    #[serde(default)]
    pub rate_limit: RateLimitSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// Log filter in `tracing` env-filter syntax.
    pub log_level: String,
    /// How long a stop signal waits for work in flight before giving up.
    pub shutdown_grace_ms: u64,
}

/// Lets the service skeleton reach the common sections of any service's settings.
impl AsRef<ServiceSettings> for ServiceSettings {
    fn as_ref(&self) -> &ServiceSettings {
        self
    }
}

impl ServiceSettings {
    pub fn new(port: u16, database: &str) -> Self {
        Self {
            application: HttpSettings::with_port(port),
            database: DatabaseSettings::for_database(database),
            amqp: AmqpSettings::default(),
            outbox: OutboxSettings::default(),
            retry: RetrySettings::default(),
            admin: AdminSettings::default(),
            auth: AuthSettings::default(),
            retention: RetentionSettings::default(),
            rate_limit: RateLimitSettings::default(),
            telemetry: TelemetrySettings::default(),
            log_level: "info".into(),
            shutdown_grace_ms: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn from_environment(variables: &[(&str, &str)]) -> ServiceSettings {
        let map: HashMap<String, String> = variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        layered(
            &ServiceSettings::new(3001, "saga_test"),
            None,
            config::Environment::default().source(Some(map)),
        )
        .unwrap()
    }

    #[test]
    fn retry_and_admin_settings_come_from_the_environment() {
        let settings = from_environment(&[
            ("APP__RETRY__MAX_ATTEMPTS", "7"),
            ("APP__RETRY__BASE_DELAY_MS", "50"),
            ("APP__ADMIN__TOKEN", "s3cret-token"),
        ]);
        assert_eq!(settings.retry.max_attempts, 7);
        assert_eq!(settings.retry.base_delay_ms, 50);
        assert_eq!(settings.retry.max_delay_ms, 60_000, "default kept");
        assert!(settings.admin.enabled());
        assert_eq!(settings.admin.token.expose_secret(), "s3cret-token");
        assert!(
            !format!("{settings:?}").contains("s3cret-token"),
            "the token never shows in Debug output"
        );
    }

    #[test]
    fn auth_settings_come_from_the_environment_and_hide_their_secrets() {
        let settings = from_environment(&[
            ("APP__AUTH__OPERATOR_TOKEN", "op-s3cret-token-0123"),
            ("APP__AUTH__JWT_SECRET", "jwt-s3cret-0123456789"),
            (
                "APP__AUTH__JWT_PREVIOUS_SECRET",
                "old-jwt-s3cret-0123456789",
            ),
            ("APP__AUTH__JWT_AUDIENCE", "shop"),
            ("APP__AUTH__JWT_LEEWAY", "1m"),
        ]);
        let auth = &settings.auth;
        assert_eq!(auth.operator_token.expose_secret(), "op-s3cret-token-0123");
        assert_eq!(auth.jwt_secret.expose_secret(), "jwt-s3cret-0123456789");
        assert_eq!(auth.jwt_audience.as_deref(), Some("shop"));
        assert_eq!(auth.jwt_issuer, None);
        assert_eq!(auth.jwt_leeway, Duration::from_secs(60));
        assert!(!auth.disabled, "never the default");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let defaults = from_environment(&[]).auth;
        assert_eq!(defaults.jwt_leeway, Duration::from_secs(30));
        assert!(defaults.operator_token.expose_secret().is_empty());
    }

    #[test]
    fn settings_show_no_password_in_debug_output() {
        let settings = from_environment(&[
            ("APP__DATABASE__URL", "postgres://app:db-pa55word@db:5432/x"),
            ("APP__AMQP__URL", "amqp://app:mq-pa55word@mq:5672/%2f"),
        ]);
        assert_eq!(
            settings.database.url.expose(),
            "postgres://app:db-pa55word@db:5432/x"
        );
        let shown = format!("{settings:?}");
        assert!(!shown.contains("pa55word"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/x"), "{shown}");
    }

    #[test]
    fn without_a_token_the_admin_routes_are_disabled() {
        let settings = from_environment(&[]);
        assert!(!settings.admin.enabled());
        assert_eq!(settings.retry.max_attempts, 5);
    }

    #[test]
    fn retention_windows_read_as_durations_and_history_shorter_than_the_inbox_is_refused() {
        let settings = from_environment(&[
            ("APP__RETENTION__INBOX_WINDOW", "2d"),
            ("APP__RETENTION__HISTORY", "1d"),
        ]);
        assert_eq!(
            settings.retention.inbox_window,
            Duration::from_secs(2 * 86_400)
        );
        let refused = settings.retention.validate().unwrap_err();
        assert!(refused.contains("retention.history (1day)"), "{refused}");
        assert!(
            refused.contains("retention.inbox_window (2days)"),
            "{refused}"
        );
        assert!(RetentionSettings::default().validate().is_ok());
    }

    #[test]
    fn rate_limits_come_from_the_environment_and_a_zero_is_refused() {
        let settings = from_environment(&[
            ("APP__RATE_LIMIT__PER_CUSTOMER_PER_SECOND", "3"),
            ("APP__RATE_LIMIT__PER_ADDRESS_BURST", "0"),
        ]);
        assert!(settings.rate_limit.enabled, "on by default");
        assert_eq!(settings.rate_limit.per_customer_per_second, 3);
        assert_eq!(settings.rate_limit.per_customer_burst, 20, "default kept");
        let refused = settings.rate_limit.validate().unwrap_err();
        assert!(
            refused.contains("rate_limit.per_address_burst"),
            "{refused}"
        );
        assert!(RateLimitSettings::default().validate().is_ok());
    }

    #[test]
    fn retry_delays_double_from_the_base_up_to_the_cap() {
        let retry = RetrySettings {
            max_attempts: 6,
            base_delay_ms: 1_000,
            max_delay_ms: 5_000,
        };
        let millis: Vec<u128> = retry.delays().iter().map(Duration::as_millis).collect();
        assert_eq!(
            millis,
            [1_000, 2_000, 4_000, 5_000],
            "capped levels share a queue"
        );
        assert_eq!(retry.delay_after(60).as_millis(), 5_000, "no overflow");
        let zero = RetrySettings {
            max_attempts: 1,
            base_delay_ms: 0,
            max_delay_ms: 0,
        };
        assert!(zero.delays().is_empty(), "one attempt: no retries");
        assert_eq!(zero.delay_after(1).as_millis(), 1, "never a zero TTL");
    }
}
