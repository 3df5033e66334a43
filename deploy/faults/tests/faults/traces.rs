//! One order is one trace across the three services: the fleet, as separate processes, exports
//! to an OTLP/HTTP receiver that runs inside this test, and the spans of one order are checked
//! to arrive from all three under one trace id, with the parent links of docs/observability.md:
//! HTTP request → order.placed transition → payment's consumer span → the orchestrator's reply
//! consumer span → payment.charged transition → inventory's consumer span → its reply's
//! consumer span.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;
use uuid::Uuid;

use crate::harness::eventually;
use crate::harness::fleet::{FleetOptions, Service};
use crate::scenario::Scenario;

/// A span as received, with the `service.name` of the process that sent it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    kind: i32,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: Vec<KeyValue>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        let value = self
            .attributes
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?;
        match value.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            AnyValue::BoolValue(b) => Some(b.to_string()),
            other => Some(format!("{other:?}")),
        }
    }
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP/HTTP receiver on a free port: every span posted to `/v1/traces`, in `Spans`.
async fn receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return axum::http::StatusCode::BAD_REQUEST;
                };
                let mut kept = kept.lock().unwrap();
                for resource_spans in request.resource_spans {
                    let service = resource_spans
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                        .map(|v| match v {
                            AnyValue::StringValue(s) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for scope in resource_spans.scope_spans {
                        for span in scope.spans {
                            kept.push(Received {
                                service: service.clone(),
                                name: span.name,
                                kind: span.kind,
                                trace_id: span.trace_id,
                                span_id: span.span_id,
                                parent_span_id: span.parent_span_id,
                                attributes: span.attributes,
                            });
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_across_the_three_services_with_the_right_parents() {
    let (endpoint, spans) = receiver().await;
    let mut options = FleetOptions::default();
    for service in Service::ALL {
        options = options
            .with_setting(service, "TELEMETRY__OTLP_ENDPOINT", &endpoint)
            .with_setting(service, "TELEMETRY__SAMPLE_RATIO", 1.0);
    }
    let scenario = Scenario::begin("one_order_is_one_trace", options).await;
    let api = &scenario.fleet.api;

    let key = Uuid::now_v7().to_string();
    let body = json!({
        "customer_id": "rich-0",
        "items": [{"product_id": "widget", "quantity": 1, "unit_price_cents": 100}],
    });
    let order_id = api.place_order(0, &body, &key).await.unwrap();
    let order = order_id.to_string();

    // Every step's spans, exported in the processors' batches (every few seconds).
    let of_order = |spans: &Spans| -> Vec<Received> {
        spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.attribute("order_id").as_deref() == Some(order.as_str()))
            .cloned()
            .collect()
    };
    let received = eventually(
        "the order's spans from all three services",
        Duration::from_secs(60),
        || {
            let found = of_order(&spans);
            let consumed = |service: &str, routing_key: &str| {
                found.iter().any(|s| {
                    s.service == service
                        && s.attribute("messaging.rabbitmq.destination.routing_key")
                            .as_deref()
                            == Some(routing_key)
                })
            };
            let complete = consumed("payment", "payment.charge")
                && consumed("inventory", "inventory.reserve")
                && consumed("orchestrator", "payment.charged")
                && consumed("orchestrator", "inventory.reserved")
                && found.iter().any(|s| s.name == "saga inventory.reserved");
            async move { complete.then_some(found) }
        },
    )
    .await;

    let dump = || format!("{received:#?}");
    let trace_ids: std::collections::BTreeSet<_> = received.iter().map(|s| &s.trace_id).collect();
    assert_eq!(trace_ids.len(), 1, "one trace per order: {}", dump());
    let services: std::collections::BTreeSet<_> =
        received.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        ["inventory", "orchestrator", "payment"]
            .into_iter()
            .collect(),
        "{}",
        dump()
    );

    let one = |what: &str, found: Vec<&Received>| -> Received {
        assert_eq!(found.len(), 1, "exactly one {what}: {}", dump());
        found[0].clone()
    };
    let consumer = |service: &str, routing_key: &str| {
        one(
            &format!("{service} consumer span of {routing_key}"),
            received
                .iter()
                .filter(|s| {
                    s.service == service
                        && s.attribute("messaging.rabbitmq.destination.routing_key")
                            .as_deref()
                            == Some(routing_key)
                })
                .collect(),
        )
    };
    let named = |name: &str| one(name, received.iter().filter(|s| s.name == name).collect());

    let request = named("POST /api/orders");
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert!(
        request.parent_span_id.is_empty(),
        "no traceparent sent: a new trace"
    );
    let placed = named("saga order.placed");
    assert_eq!(
        placed.parent_span_id, request.span_id,
        "the first step is the request's child"
    );

    let charge = consumer("payment", "payment.charge");
    assert_eq!(charge.kind, SpanKind::Consumer as i32);
    assert_eq!(
        charge.parent_span_id, placed.span_id,
        "payment's span: the step that sent it"
    );
    assert_eq!(
        charge.attribute("messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        charge.attribute("messaging.operation").as_deref(),
        Some("process")
    );
    assert_eq!(
        charge.attribute("messaging.destination.name").as_deref(),
        Some("saga.commands")
    );
    assert!(charge.attribute("messaging.message.id").is_some());

    let charged = consumer("orchestrator", "payment.charged");
    assert_eq!(
        charged.parent_span_id, charge.span_id,
        "the reply's span: payment's span"
    );
    let step = named("saga payment.charged");
    assert_eq!(step.parent_span_id, charged.span_id);

    let reserve = consumer("inventory", "inventory.reserve");
    assert_eq!(reserve.parent_span_id, step.span_id);
    let reserved = consumer("orchestrator", "inventory.reserved");
    assert_eq!(reserved.parent_span_id, reserve.span_id);
    assert_eq!(
        named("saga inventory.reserved").parent_span_id,
        reserved.span_id
    );
}
