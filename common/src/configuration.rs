//! Typed settings, layered: built-in defaults, then an optional TOML file named by `APP_CONFIG_FILE`,
//! then `APP__SECTION__KEY` environment variables (for example `APP__DATABASE__URL`).
//!
//! This is the only place that reads the process environment for configuration.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

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
    let defaults = config::Config::try_from(defaults)?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Ok(path) = std::env::var("APP_CONFIG_FILE") {
        builder = builder.add_source(config::File::with_name(&path).required(true));
    }
    let settings = builder
        .add_source(
            config::Environment::with_prefix("APP")
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
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a request waits for a pooled connection before failing (and readiness turning red).
    pub acquire_timeout_ms: u64,
}

impl DatabaseSettings {
    pub fn for_database(name: &str) -> Self {
        Self {
            url: format!("postgres://postgres:postgres@127.0.0.1:5432/{name}"),
            max_connections: 8,
            min_connections: 1,
            acquire_timeout_ms: 3_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:port/vhost` (`%2f` is the default vhost).
    pub url: String,
    /// Unacknowledged deliveries the broker may push to one consumer.
    pub prefetch: u16,
    /// Deliveries handled at the same time by one consumer (at most `prefetch`).
    pub concurrency: usize,
    /// Upper bound of the reconnect backoff.
    pub max_reconnect_delay_ms: u64,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefetch: 32,
            concurrency: 8,
            max_reconnect_delay_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxSettings {
    /// Messages published per relay round (confirms for a whole batch are awaited together).
    pub batch_size: u32,
    /// Safety-net poll; commits in this process wake the relay at once.
    pub poll_interval_ms: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            batch_size: 200,
            poll_interval_ms: 500,
        }
    }
}

/// The settings every service has; a service adds its own sections next to these.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSettings {
    pub application: HttpSettings,
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub outbox: OutboxSettings,
    /// Log filter in `tracing` env-filter syntax.
    pub log_level: String,
    /// How long a stop signal waits for work in flight before giving up.
    pub shutdown_grace_ms: u64,
}

impl ServiceSettings {
    pub fn new(port: u16, database: &str) -> Self {
        Self {
            application: HttpSettings::with_port(port),
            database: DatabaseSettings::for_database(database),
            amqp: AmqpSettings::default(),
            outbox: OutboxSettings::default(),
            log_level: "info".into(),
            shutdown_grace_ms: 10_000,
        }
    }
}
