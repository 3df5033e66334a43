//! The HTTP metrics middleware, outermost on every service's router (`http::server::finish`),
//! so refusals by the rate limits and the guards are timed and counted like any answer.
//!
//! `route` is the matched route's template (`/api/orders/{id}`), `unmatched` when no route
//! matched: never the raw path, whose ids would make a series per order.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::names::{HTTP_DURATION, ORDERS_REJECTED};

/// The `route` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// What the middleware needs to know about its service.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpMetrics {
    /// The route template whose `POST` refusals are `orders_rejected_total` (the
    /// orchestrator's `/api/orders`); `None` in a service that takes no orders.
    pub order_route: Option<&'static str>,
}

pub async fn middleware(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let status = response.status();
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    metrics::histogram!(
        HTTP_DURATION,
        "method" => method,
        "route" => route.to_owned(),
        "status" => status.as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    if method == "POST" && metrics.order_route == Some(route) {
        let retry_after = response.headers().contains_key(RETRY_AFTER);
        if let Some(reason) = rejection(status, retry_after) {
            metrics::counter!(ORDERS_REJECTED, "reason" => reason).increment(1);
        }
    }
    response
}

/// The standard methods by name; anything else is one value, so a client cannot grow the
/// label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Why an order was refused, from its answer: 503 with `Retry-After` is admission control
/// shedding load (a 503 without it is the database away: a failure, not a refusal), 429 a
/// rate limit, 401/403 a caller not allowed to order, 400/413/415/422 a body or order that
/// does not hold. Anything else is not a refusal of the order as such.
pub fn rejection(status: StatusCode, retry_after: bool) -> Option<&'static str> {
    match status.as_u16() {
        503 if retry_after => Some("overloaded"),
        429 => Some("rate_limited"),
        401 | 403 => Some("unauthorized"),
        400 | 413 | 415 | 422 => Some("invalid"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_status_has_its_reason_and_success_has_none() {
        assert_eq!(rejection(StatusCode::SERVICE_UNAVAILABLE, false), None);
        for (status, reason) in [
            (503, Some("overloaded")),
            (429, Some("rate_limited")),
            (401, Some("unauthorized")),
            (403, Some("unauthorized")),
            (400, Some("invalid")),
            (422, Some("invalid")),
            (202, None),
            (500, None),
        ] {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
            assert_eq!(rejection(status, true), reason, "{status}");
        }
    }

    /// Through the whole of `server::finish`: the rate limit's 429 is inside the metrics layer,
    /// so a throttled order is counted, under its route's template.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn an_order_refused_by_the_rate_limit_is_counted_rate_limited() {
        use axum::Router;
        use axum::routing::post;

        use crate::configuration::{AuthSettings, RateLimitSettings, ServiceSettings};
        use crate::testing::{JWT_SECRET, OPERATOR_TOKEN, Scrape};

        let mut settings = ServiceSettings::new(0, "unused");
        settings.auth = AuthSettings::with_secrets(OPERATOR_TOKEN, JWT_SECRET);
        let auth = crate::http::auth::Authenticator::from_settings(&settings)
            .await
            .unwrap();
        let tight = RateLimitSettings {
            enabled: true,
            per_customer_per_second: 1,
            per_customer_burst: 1,
            per_address_per_second: 1,
            per_address_burst: 1,
        };
        crate::metrics::register("no.queue", true);
        let routes = Router::new().route("/api/orders", post(|| async { StatusCode::ACCEPTED }));
        let metrics = HttpMetrics {
            order_route: Some("/api/orders"),
        };
        let router = crate::http::server::finish(
            routes,
            utoipa::openapi::OpenApi::default(),
            &auth,
            &tight,
            metrics,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}/api/orders", listener.local_addr().unwrap());
        let shutdown = crate::shutdown::Shutdown::new();
        tokio::spawn(crate::http::server::serve(
            listener,
            router,
            shutdown.clone(),
        ));
        let rate_limited =
            |scrape: &Scrape| scrape.value(ORDERS_REJECTED, &[("reason", "rate_limited")]);
        let before = Scrape::parse(&crate::metrics::render());

        let client = reqwest::Client::new();
        let statuses = [
            client.post(&address).send().await.unwrap().status(),
            client.post(&address).send().await.unwrap().status(),
        ];

        assert_eq!(
            statuses,
            [StatusCode::ACCEPTED, StatusCode::TOO_MANY_REQUESTS]
        );
        let now = Scrape::parse(&crate::metrics::render());
        assert!(rate_limited(&now) >= rate_limited(&before) + 1.0);
        let throttled = [
            ("method", "POST"),
            ("route", "/api/orders"),
            ("status", "429"),
        ];
        let count = "http_server_request_duration_seconds_count";
        assert!(now.value(count, &throttled) >= before.value(count, &throttled) + 1.0);
        shutdown.trigger();
    }
}
