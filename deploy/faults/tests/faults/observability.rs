//! deploy/observability/ against the fleet: every metric an alert rule or a dashboard panel
//! reads is one the issue fixes and one the running services export; every alert links to a
//! runbook section; every metric the issue names is there from the first scrape; and the counts
//! of one completed and one declined order are exact (separate processes: no other test shares
//! their recorders).
//!
//! - [`files`]: the names and links read from rules.yml and grafana-dashboard.json.
//! - [`exposition`]: a reader of what `GET /metrics` answers.

mod exposition;
mod files;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::harness::fleet::{Fleet, FleetOptions, Service};
use crate::harness::{Watchdog, eventually};
use crate::scenario::slot;
use exposition::Exposition;
use files::{Rules, dashboard_exprs, metric_names, runbook_anchors};

/// Metrics of every service (issue 25 and the working agreement's process and pool names).
const EVERY_SERVICE: &[&str] = &[
    "http_server_request_duration_seconds",
    "messaging_consumed_messages_total",
    "messaging_process_duration_seconds",
    "messaging_published_messages_total",
    "messaging_batch_size",
    "amqp_connection_up",
    "outbox_pending_messages",
    "outbox_oldest_pending_age_seconds",
    "dead_letter_queue_messages",
    "dead_lettered_messages_total",
    "retried_messages_total",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "db_pool_connections",
];

/// Each service's own metrics.
fn own_metrics(service: Service) -> &'static [&'static str] {
    match service {
        Service::Orchestrator => &[
            "saga_started_total",
            "saga_ended_total",
            "saga_duration_seconds",
            "saga_in_flight",
            "saga_overdue",
            "saga_timeout_actions_total",
            "orders_rejected_total",
        ],
        Service::Payment => &["payment_charges_total", "payment_refunds_total"],
        Service::Inventory => &["inventory_reservations_total", "inventory_releases_total"],
    }
}

/// Label values the issue enumerates: each must have its series from the first scrape (a
/// counter at 0), so that an alert never reads an absent series as healthy.
fn enumerated_labels(
    service: Service,
) -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    let mut labels = vec![
        (
            "messaging_consumed_messages_total",
            "outcome",
            &["acked", "duplicate", "retried", "dead_lettered"][..],
        ),
        ("db_pool_connections", "state", &["in_use", "idle"][..]),
    ];
    labels.extend(match service {
        Service::Orchestrator => vec![
            ("saga_ended_total", "outcome", &["completed", "failed"][..]),
            (
                "saga_timeout_actions_total",
                "action",
                &["resend", "compensate"][..],
            ),
            (
                "orders_rejected_total",
                "reason",
                &["overloaded", "rate_limited", "unauthorized", "invalid"][..],
            ),
        ],
        Service::Payment => vec![(
            "payment_charges_total",
            "outcome",
            &["charged", "declined"][..],
        )],
        Service::Inventory => vec![(
            "inventory_reservations_total",
            "outcome",
            &["reserved", "rejected"][..],
        )],
    });
    labels
}

/// Metrics Prometheus makes itself rather than scraping them.
const SYNTHETIC: &[&str] = &["up"];

/// The family a referenced name belongs to: `x_bucket`, `x_sum` and `x_count` read histogram `x`.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// Every name the rules and the dashboard read, with where it is read (for failure messages);
/// recording rules (defined in rules.yml, named with a `:`) left out.
fn referenced_metrics() -> BTreeMap<String, String> {
    let rules = Rules::load();
    let mut sources: Vec<(&str, String)> = rules
        .exprs
        .iter()
        .map(|e| ("rules.yml", e.clone()))
        .collect();
    sources.extend(
        dashboard_exprs()
            .into_iter()
            .map(|e| ("grafana-dashboard.json", e)),
    );
    let mut referenced = BTreeMap::new();
    for (file, expr) in sources {
        for name in metric_names(&expr) {
            if name.contains(':') {
                assert!(
                    rules.records.contains(&name),
                    "{file} reads `{name}`, which no recording rule of rules.yml defines: {expr}"
                );
                continue;
            }
            referenced
                .entry(name)
                .or_insert_with(|| format!("{file}: {expr}"));
        }
    }
    referenced
}

#[test]
fn every_metric_the_rules_and_dashboard_read_is_one_the_issue_fixes() {
    let fixed: BTreeSet<&str> = EVERY_SERVICE
        .iter()
        .chain(Service::ALL.iter().flat_map(|s| own_metrics(*s)))
        .chain(SYNTHETIC)
        .copied()
        .collect();
    let referenced = referenced_metrics();
    assert!(
        referenced.len() >= 20,
        "the extraction found too few names to be right: {referenced:?}"
    );
    for (name, place) in &referenced {
        assert!(
            fixed.contains(family(name)),
            "`{name}` is not a metric the issue names ({place})"
        );
    }
}

#[test]
fn every_alert_links_to_a_section_of_the_runbook() {
    let rules = Rules::load();
    let anchors = runbook_anchors();
    assert!(rules.alerts.len() >= 8, "alerts: {:?}", rules.alerts);
    for (alert, url) in &rules.alerts {
        let anchor = url
            .strip_prefix("docs/alerts.md#")
            .unwrap_or_else(|| panic!("{alert}: runbook_url `{url}` is not docs/alerts.md#..."));
        assert!(
            anchors.contains(anchor),
            "{alert}: docs/alerts.md has no heading with anchor `{anchor}`"
        );
    }
}

/// `GET /metrics` of one service, without credentials (it is open to scrapers).
async fn scrape(client: &reqwest::Client, fleet: &Fleet, service: Service) -> Exposition {
    let node = fleet
        .nodes
        .iter()
        .find(|n| n.service == service)
        .expect("every service runs");
    let url = format!("{}/metrics", node.base_url());
    let response = client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {url}");
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    Exposition::parse(&text).unwrap_or_else(|e| panic!("{url} is not Prometheus text: {e}"))
}

async fn scrape_all(client: &reqwest::Client, fleet: &Fleet) -> BTreeMap<Service, Exposition> {
    let mut scrapes = BTreeMap::new();
    for service in Service::ALL {
        scrapes.insert(service, scrape(client, fleet, service).await);
    }
    scrapes
}

/// What the first scrape after start must hold: every named metric, the enumerated label
/// values, counters at 0 and a live AMQP connection.
fn assert_first_scrape(service: Service, scrape: &Exposition) {
    let name = service.name();
    for metric in EVERY_SERVICE.iter().chain(own_metrics(service)) {
        assert!(
            scrape.has_family(metric),
            "{name}: `{metric}` is missing from the first scrape"
        );
    }
    for (metric, label, values) in enumerated_labels(service) {
        let present = scrape.label_values(metric, label);
        for value in values {
            assert!(
                present.contains(*value),
                "{name}: `{metric}{{{label}=\"{value}\"}}` is missing from the first scrape (has {present:?})"
            );
        }
    }
    assert_eq!(
        scrape.sum("amqp_connection_up", &[]),
        Some(1.0),
        "{name}: a ready service is connected"
    );
    if service == Service::Orchestrator {
        assert_eq!(scrape.sum("saga_started_total", &[]), Some(0.0));
        assert_eq!(scrape.sum("saga_ended_total", &[]), Some(0.0));
    }
}

/// A count the two orders leave exactly: service, metric, labels to match, value.
type ExactCount = (
    Service,
    &'static str,
    &'static [(&'static str, &'static str)],
    f64,
);

/// Places an order as `customer` for one 500-cent unit of `product`; returns its id.
async fn place(fleet: &Fleet, customer: &str, product: &str) -> Uuid {
    let body = json!({
        "customer_id": customer,
        "items": [{ "product_id": product, "quantity": 1, "unit_price_cents": 500 }],
    });
    let key = format!("observability-{customer}-{}", Uuid::new_v4().simple());
    fleet
        .api
        .place_order(0, &body, &key)
        .await
        .unwrap_or_else(|e| panic!("the order of {customer} was not accepted: {e}"))
}

async fn wait_ended(fleet: &Fleet, order_id: Uuid) -> String {
    eventually(
        &format!("order {order_id} to end"),
        Duration::from_secs(60),
        || async move {
            let view = fleet.api.order(order_id).await.ok()?;
            let status = view["status"].as_str()?.to_owned();
            matches!(status.as_str(), "COMPLETED" | "FAILED").then_some(status)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_exports_every_metric_the_alerts_and_dashboard_read_and_counts_orders_exactly() {
    let _slot = slot().await;
    let fleet = Fleet::start(FleetOptions::default()).await;
    let _watchdog = Watchdog::arm("observability", Duration::from_secs(180), fleet.scratch());
    // No operator token: /metrics is open.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");

    for (service, scrape) in scrape_all(&client, &fleet).await {
        assert_first_scrape(service, &scrape);
    }

    fleet
        .api
        .put_account("obs-payer", 10_000)
        .await
        .expect("account");
    fleet
        .api
        .put_account("obs-broke", 100)
        .await
        .expect("account");
    fleet
        .api
        .put_product("obs-widget", 10)
        .await
        .expect("product");
    let completed = place(&fleet, "obs-payer", "obs-widget").await;
    let declined = place(&fleet, "obs-broke", "obs-widget").await;
    assert_eq!(wait_ended(&fleet, completed).await, "COMPLETED");
    assert_eq!(wait_ended(&fleet, declined).await, "FAILED");

    // Counted after their transactions commit, which may be a moment after the order reads as
    // ended: wait until every count has arrived, then require it exact.
    let exact: [ExactCount; 6] = [
        (Service::Orchestrator, "saga_started_total", &[], 2.0),
        (
            Service::Orchestrator,
            "saga_ended_total",
            &[("outcome", "completed")],
            1.0,
        ),
        (
            Service::Orchestrator,
            "saga_ended_total",
            &[("outcome", "failed")],
            1.0,
        ),
        (
            Service::Payment,
            "payment_charges_total",
            &[("outcome", "charged")],
            1.0,
        ),
        (
            Service::Payment,
            "payment_charges_total",
            &[("outcome", "declined")],
            1.0,
        ),
        (
            Service::Inventory,
            "inventory_reservations_total",
            &[("outcome", "reserved")],
            1.0,
        ),
    ];
    let client = &client;
    let fleet_ref = &fleet;
    let scrapes = eventually(
        "the orders' counts",
        Duration::from_secs(30),
        || async move {
            let scrapes = scrape_all(client, fleet_ref).await;
            exact
                .iter()
                .all(|(service, metric, labels, value)| {
                    scrapes[service].sum(metric, labels).unwrap_or(0.0) >= *value
                })
                .then_some(scrapes)
        },
    )
    .await;
    for (service, metric, labels, value) in exact {
        assert_eq!(
            scrapes[&service].sum(metric, labels),
            Some(value),
            "{}: {metric} {labels:?}",
            service.name()
        );
    }

    let exported: BTreeSet<String> = scrapes.values().flat_map(Exposition::names).collect();
    for (name, place) in referenced_metrics() {
        if SYNTHETIC.contains(&name.as_str()) {
            continue;
        }
        assert!(
            exported.contains(&name),
            "`{name}` is read by {place}, but no service exports it"
        );
    }
}

const HISTOGRAMS: &[&str] = &[
    "http_server_request_duration_seconds",
    "messaging_process_duration_seconds",
    "messaging_batch_size",
    "saga_duration_seconds",
];

/// A scrape with every metric a service must export from the start: what
/// [`assert_first_scrape`] must accept, so that its failures are about the services.
fn complete_first_scrape(service: Service) -> String {
    let mut text = String::new();
    let enumerated = enumerated_labels(service);
    for metric in EVERY_SERVICE.iter().chain(own_metrics(service)) {
        let value = if *metric == "amqp_connection_up" {
            1
        } else {
            0
        };
        match enumerated.iter().find(|(m, _, _)| m == metric) {
            Some((_, label, values)) => {
                for v in *values {
                    text += &format!("{metric}{{{label}=\"{v}\",queue=\"q\"}} {value}\n");
                }
            }
            None if HISTOGRAMS.contains(metric) => {
                text += &format!("{metric}_bucket{{le=\"+Inf\"}} 0\n{metric}_count 0\n");
            }
            None => text += &format!("{metric} {value}\n"),
        }
    }
    text
}

#[test]
fn the_first_scrape_check_accepts_a_complete_scrape_and_names_what_is_missing() {
    for service in Service::ALL {
        let complete = complete_first_scrape(service);
        let scrape = Exposition::parse(&complete).expect("valid exposition");
        assert_first_scrape(service, &scrape);

        let without_pool_idle = complete.replace("state=\"idle\"", "state=\"other\"");
        let scrape = Exposition::parse(&without_pool_idle).expect("valid exposition");
        let missing = std::panic::catch_unwind(|| assert_first_scrape(service, &scrape))
            .expect_err("a missing enumerated series fails the check");
        let message = missing
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            message.contains("db_pool_connections{state=\"idle\"}"),
            "{message}"
        );
    }
}
