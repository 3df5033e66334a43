//! One service as the overview sees it: its readiness (`GET /health/ready`, JSON `{status,
//! checks}`) and the few gauges of its `GET /metrics` the console shows (AMQP connection,
//! outbox backlog, dead letters), read with a short timeout. The orchestrator reads its own in
//! process. The Prometheus text is parsed by `prometheus-parse`.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use saga_common::http::health::{HealthReport, Readiness, ready};
use saga_common::messaging::topology;
use saga_common::metrics::names;

/// How long the overview waits for one service's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A service's state in the overview.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ServiceStatus {
    /// `orchestrator`, `payment`, `inventory` or `notification`.
    #[schema(example = "payment")]
    pub name: String,
    /// Its readiness probe answered 200.
    pub ready: bool,
    /// Each dependency of its readiness probe: `up` or `down`; `null` when it did not answer.
    pub checks: Option<BTreeMap<String, String>>,
    /// `amqp_connection_up`; `null` when its metrics could not be read.
    pub amqp_connected: Option<bool>,
    pub outbox: Option<Outbox>,
    /// Messages in its work queue's DLQ (`dead_letter_queue_messages`).
    pub dead_letters: Vec<QueueCount>,
    /// Why the probe or the metrics could not be read; `null` when both were.
    pub error: Option<String>,
}

/// The outbox backlog: messages not yet confirmed by the broker, and the oldest one's age.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Outbox {
    pub pending: i64,
    pub oldest_age_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct QueueCount {
    #[schema(example = "payment.commands.dlq")]
    pub queue: String,
    pub count: i64,
}

/// The readiness answer as read over HTTP.
#[derive(Debug, Deserialize)]
struct Report {
    checks: BTreeMap<String, String>,
}

/// Reads a participant at `base` (readiness and metrics at once).
pub async fn remote(
    client: &reqwest::Client,
    name: &str,
    queue: &str,
    base: &str,
) -> (ServiceStatus, Option<Scrape>) {
    let health = async {
        let response = client
            .get(format!("{base}/health/ready"))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .map_err(|error| unreachable(name, error))?;
        let ready = response.status().is_success();
        let report: Report = response
            .json()
            .await
            .map_err(|error| format!("{name}'s readiness answer is not its JSON: {error}"))?;
        Ok::<_, String>((ready, report.checks))
    };
    let metrics = async {
        let response = client
            .get(format!("{base}/metrics"))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .map_err(|error| unreachable(name, error))?;
        if !response.status().is_success() {
            return Err(format!("{name}'s /metrics answered {}", response.status()));
        }
        let text = response
            .text()
            .await
            .map_err(|error| unreachable(name, error))?;
        parse(&text).map_err(|error| format!("{name}'s /metrics could not be parsed: {error}"))
    };
    let (health, metrics) = tokio::join!(health, metrics);
    status(name, queue, health, metrics)
}

/// Reads the orchestrator itself: its readiness check and its recorder, in process.
pub async fn local(readiness: Readiness, queue: &str) -> (ServiceStatus, Option<Scrape>) {
    let (code, axum::Json(HealthReport { checks, .. })) =
        ready(axum::extract::State(readiness)).await;
    let metrics = parse(&saga_common::metrics::render())
        .map_err(|error| format!("the orchestrator's metrics could not be parsed: {error}"));
    status(
        "orchestrator",
        queue,
        Ok((code.is_success(), checks)),
        metrics,
    )
}

/// The work queue whose DLQ each service's `dead_letter_queue_messages` counts.
pub fn queue_of(name: &str) -> &'static str {
    match name {
        "payment" => topology::PAYMENT_COMMANDS,
        "inventory" => topology::INVENTORY_COMMANDS,
        "notification" => topology::NOTIFICATION_EVENTS,
        _ => topology::ORCHESTRATOR_REPLIES,
    }
}

fn unreachable(name: &str, error: reqwest::Error) -> String {
    // Without the URL: it is in the settings, and the error's text is enough to act on.
    let error = error.without_url();
    if error.is_timeout() {
        format!("{name} did not answer within {PROBE_TIMEOUT:?}")
    } else {
        format!("{name} could not be reached: {}", error_chain(&error))
    }
}

/// The error and its causes ("connection refused" is a cause of reqwest's "error sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub fn parse(text: &str) -> std::io::Result<Scrape> {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
}

/// The value of one sample of a counter, gauge or untyped metric.
fn number(sample: &Sample) -> Option<f64> {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
        _ => None,
    }
}

/// The value of `metric` whose labels include `labels`; `None` when there is no such sample.
pub fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| {
            labels
                .iter()
                .all(|(name, wanted)| sample.labels.get(name) == Some(*wanted))
        })
        .find_map(number)
}

fn status(
    name: &str,
    queue: &str,
    health: Result<(bool, BTreeMap<String, String>), String>,
    metrics: Result<Scrape, String>,
) -> (ServiceStatus, Option<Scrape>) {
    let mut errors = Vec::new();
    let (ready, checks) = match health {
        Ok((ready, checks)) => (ready, Some(checks)),
        Err(error) => {
            errors.push(error);
            (false, None)
        }
    };
    let scrape = metrics.map_err(|error| errors.push(error)).ok();
    let gauge = |metric| scrape.as_ref().and_then(|s| value(s, metric, &[]));
    let outbox = gauge(names::OUTBOX_PENDING).map(|pending| Outbox {
        pending: pending as i64,
        oldest_age_seconds: gauge(names::OUTBOX_OLDEST_AGE).unwrap_or(0.0),
    });
    let dead_letters = scrape
        .as_ref()
        .and_then(|s| value(s, names::DLQ_MESSAGES, &[("queue", queue)]))
        .map(|count| {
            vec![QueueCount {
                queue: topology::dead_letter_queue(queue),
                count: count as i64,
            }]
        })
        .unwrap_or_default();
    // Both failures are usually the same (the service is down): say it once.
    errors.dedup();
    let status = ServiceStatus {
        name: name.to_owned(),
        ready,
        checks,
        amqp_connected: gauge(names::AMQP_UP).map(|up| up >= 1.0),
        outbox,
        dead_letters,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    };
    (status, scrape)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE amqp_connection_up gauge\n\
        amqp_connection_up 1\n\
        # TYPE outbox_pending_messages gauge\n\
        outbox_pending_messages 3\n\
        # TYPE outbox_oldest_pending_age_seconds gauge\n\
        outbox_oldest_pending_age_seconds 1.5\n\
        # TYPE dead_letter_queue_messages gauge\n\
        dead_letter_queue_messages{queue=\"payment.commands\"} 2\n\
        dead_letter_queue_messages{queue=\"inventory.commands\"} 7\n\
        # TYPE orders_rejected_total counter\n\
        orders_rejected_total{reason=\"overloaded\"} 4\n";

    #[test]
    fn a_service_is_read_from_its_probe_and_its_gauges() {
        let checks = BTreeMap::from([("database".to_owned(), "up".to_owned())]);
        let (status, scrape) = status(
            "payment",
            queue_of("payment"),
            Ok((true, checks.clone())),
            parse(TEXT).map_err(|e| e.to_string()),
        );
        assert_eq!(
            status,
            ServiceStatus {
                name: "payment".into(),
                ready: true,
                checks: Some(checks),
                amqp_connected: Some(true),
                outbox: Some(Outbox {
                    pending: 3,
                    oldest_age_seconds: 1.5
                }),
                dead_letters: vec![QueueCount {
                    queue: "payment.commands.dlq".into(),
                    count: 2
                }],
                error: None,
            }
        );
        let scrape = scrape.unwrap();
        assert_eq!(
            value(
                &scrape,
                "orders_rejected_total",
                &[("reason", "overloaded")]
            ),
            Some(4.0)
        );
        assert_eq!(
            value(
                &scrape,
                "orders_rejected_total",
                &[("reason", "rate_limited")]
            ),
            None
        );
    }

    #[test]
    fn a_service_that_does_not_answer_is_not_ready_and_says_why() {
        let down =
            || Err::<(bool, BTreeMap<String, String>), _>("payment could not be reached".into());
        let (status, scrape) = status(
            "payment",
            queue_of("payment"),
            down(),
            Err("payment could not be reached".into()),
        );
        assert!(scrape.is_none());
        assert!(!status.ready);
        assert_eq!(status.checks, None);
        assert_eq!(status.amqp_connected, None);
        assert_eq!(
            status.error.as_deref(),
            Some("payment could not be reached")
        );
    }
}
