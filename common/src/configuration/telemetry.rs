//! What the fleet tells its operators (`APP__TELEMETRY__...`): trace export over OTLP, how many
//! lines successful saga steps write, and how often the gauges read from the database refresh.
//! See docs/observability.md.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// OTLP/HTTP endpoint traces are exported to (`http://collector:4318`); none: no export.
    /// Trace context is propagated (HTTP, outbox, AMQP headers, log lines) either way.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces exported, 0.0 to 1.0; a trace started upstream keeps its
    /// upstream's decision (parent-based sampling).
    pub sample_ratio: f64,
    /// Share of successful saga steps that write their `info` line, 0.0 to 1.0. Failures,
    /// compensations, retries and dead letters always write theirs.
    pub log_success_ratio: f64,
    /// How often gauges read from the database (outbox backlog, sagas in flight, overdue
    /// sagas) and from the broker (dead-letter queue depths) are refreshed; a scrape reads
    /// the last values and does no query.
    pub gauge_refresh_ms: u64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            log_success_ratio: 1.0,
            gauge_refresh_ms: 5_000,
        }
    }
}

impl TelemetrySettings {
    pub fn validate(&self) -> Result<(), String> {
        for (name, ratio) in [
            ("telemetry.sample_ratio", self.sample_ratio),
            ("telemetry.log_success_ratio", self.log_success_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(format!("{name} must be between 0.0 and 1.0, not {ratio}"));
            }
        }
        if self.gauge_refresh_ms == 0 {
            return Err("telemetry.gauge_refresh_ms must be at least 1".into());
        }
        Ok(())
    }
}
