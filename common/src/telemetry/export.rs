//! The tracer provider: span ids always (so context propagates and log lines carry ids), OTLP
//! export only when `telemetry.otlp_endpoint` is set.
//!
//! Export is OTLP/HTTP protobuf through a batch span processor. The exporter posts with the
//! workspace's reqwest client ([`TokioReqwest`]) rather than the one opentelemetry-otlp bundles
//! (a second reqwest major, and a blocking client): the batch processor runs on a thread of its
//! own, so each post is spawned onto the service's tokio runtime and awaited from there.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, TracerProviderBuilder};

use crate::configuration::TelemetrySettings;

/// How long one export may take before the batch is dropped (the service is not held up).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The provider for `service` under `settings`; must be called inside a tokio runtime when an
/// endpoint is set. A parent-based sampler keeps an upstream decision and samples new traces
/// at `sample_ratio`; with no endpoint, see [`unexported`].
pub fn provider(service: &str, settings: &TelemetrySettings) -> Result<SdkTracerProvider, String> {
    let Some(endpoint) = settings.otlp_endpoint.as_deref() else {
        return Ok(unexported(service));
    };
    let builder = builder(service, Sampler::TraceIdRatioBased(settings.sample_ratio));
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "trace export needs a tokio runtime".to_owned())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(TokioReqwest {
            client: reqwest::Client::new(),
            runtime,
        })
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
    Ok(builder.with_batch_exporter(exporter).build())
}

/// The provider of a service that exports nothing: the traces it starts are not sampled, so
/// their spans get ids (log lines and `traceparent` carry them) but record nothing, which is
/// most of what a span costs. A trace sampled upstream stays sampled (and recorded), so a
/// collector behind the next service still sees it whole.
pub fn unexported(service: &str) -> SdkTracerProvider {
    builder(service, Sampler::AlwaysOff).build()
}

/// A provider builder naming `service`, sampling traces it starts with `root`.
fn builder(service: &str, root: Sampler) -> TracerProviderBuilder {
    SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(root)))
        .with_resource(
            Resource::builder_empty()
                .with_service_name(service.to_owned())
                .build(),
        )
}

/// The endpoint's `/v1/traces` URL: the setting names the collector (`http://host:4318`), as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does; a URL that already names the path is kept.
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// Posts on the service's runtime: reqwest needs tokio's reactor, which the batch processor's
/// thread does not have.
#[derive(Debug, Clone)]
struct TokioReqwest {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HttpClient for TokioReqwest {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, HttpError>(Response::builder().status(status).body(body)?)
        });
        Box::pin(async move { sent.await? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_address_gets_the_traces_path_once() {
        assert_eq!(
            traces_url("http://jaeger:4318"),
            "http://jaeger:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://jaeger:4318/"),
            "http://jaeger:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
