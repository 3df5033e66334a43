//! `/api/console/services/{service}/{*path}`: the page's calls to the participants, forwarded
//! so the page talks to one origin (no CORS, no participant URL in the browser). Only the
//! routes of [`ROUTES`] pass (method and path), anything else is `404 not_found`: this is no open
//! relay. The caller's `Authorization` and `X-Correlation-Id` go along (the participant checks
//! the operator token again), with the query string and a body of at most 1 MiB; the
//! participant's status, media type and body come back. A participant that does not answer
//! within 30 s (a replay can take that long) is `502 peer_unavailable`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use saga_common::http::{ApiError, ErrorBody};

use super::ConsoleState;

/// The longest wait for a participant's answer.
pub const PROXY_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request body forwarded.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Which participants a route is open for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peers {
    All,
    Only(&'static str),
}

/// The routes the console may call, by method and path (`*`: any one segment, such as an id).
const ROUTES: &[(Peers, Method, &str)] = &[
    (Peers::All, Method::GET, "api/admin/dead-letters"),
    (Peers::All, Method::GET, "api/admin/dead-letters/groups"),
    (Peers::All, Method::POST, "api/admin/dead-letters/replay"),
    (Peers::All, Method::DELETE, "api/admin/dead-letters/*"),
    (Peers::Only("payment"), Method::GET, "api/payments"),
    (Peers::Only("inventory"), Method::GET, "api/reservations"),
    (
        Peers::Only("notification"),
        Method::GET,
        "api/notifications",
    ),
    (
        Peers::Only("notification"),
        Method::POST,
        "api/notifications/*/resend",
    ),
];

/// The headers of the caller's request that go along.
const FORWARDED: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    HeaderName::from_static("x-correlation-id"),
];

/// Whether `method path` is a route the console may call on `service`.
fn allowed(service: &str, method: &Method, segments: &[&str]) -> bool {
    ROUTES.iter().any(|(peers, route_method, pattern)| {
        let for_service = match peers {
            Peers::All => true,
            Peers::Only(name) => *name == service,
        };
        let pattern: Vec<&str> = pattern.split('/').collect();
        for_service
            && route_method == method
            && pattern.len() == segments.len()
            && pattern.iter().zip(segments).all(|(want, got)| match *want {
                "*" => !matches!(*got, "" | "." | ".."),
                literal => literal == *got,
            })
    })
}

/// Forwards one of the allowed calls to a participant and answers what it answered.
#[utoipa::path(get, path = "/api/console/services/{service}/{path}", tag = "console",
    security(("operator_token" = [])),
    params(
        ("service" = String, Path, description = "`payment`, `inventory` or `notification`"),
        ("path" = String, Path, description = "One of the allowed routes (docs/console.md): `api/admin/dead-letters`, `api/admin/dead-letters/groups`, `api/admin/dead-letters/replay` (POST), `api/admin/dead-letters/{message_id}` (DELETE), `api/payments` (payment), `api/reservations` (inventory), `api/notifications`, `api/notifications/{id}/resend` (POST, notification); the query string is passed on"),
    ),
    responses(
        (status = 200, description = "The participant's answer: its status, media type and body, whatever they are (errors included)", body = serde_json::Value),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 404, description = "Not a service or route the console may call (`not_found`)", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 502, description = "The participant did not answer within 30 s (`peer_unavailable`)", body = ErrorBody),
    ))]
pub async fn forward(
    State(state): State<ConsoleState>,
    Path((service, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let base = match service.as_str() {
        "payment" => &state.peers.payment_url,
        "inventory" => &state.peers.inventory_url,
        "notification" => &state.peers.notification_url,
        _ => return Err(ApiError::not_found(format!("no service `{service}`"))),
    };
    let segments: Vec<&str> = path.split('/').collect();
    if !allowed(&service, &method, &segments) {
        return Err(ApiError::not_found(format!(
            "the console does not forward {method} {path} to {service}"
        )));
    }
    let mut url = reqwest::Url::parse(base).map_err(|error| ApiError::internal(&error))?;
    url.path_segments_mut()
        .map_err(|()| ApiError::not_found(format!("no service `{service}`")))?
        .pop_if_empty()
        .extend(&segments);
    url.set_query(uri.query());

    let body = if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        axum::body::to_bytes(body, BODY_LIMIT)
            .await
            .map_err(|_| ApiError::payload_too_large(BODY_LIMIT))?
    } else {
        Bytes::new()
    };
    let mut request = state
        .client
        .request(method.clone(), url)
        .timeout(PROXY_TIMEOUT);
    for name in &FORWARDED {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    if !body.is_empty() {
        request = request.body(body);
    }
    let unavailable = |error: reqwest::Error| {
        // The error without its URL's query, and never a header: no token in the log.
        tracing::warn!(service, route = %path, error = %error.without_url(), "console proxy: participant unavailable");
        ApiError::peer_unavailable(format!("{service} did not answer"))
    };
    let answer = request.send().await.map_err(unavailable)?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let media_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let retry_after = answer.headers().get(header::RETRY_AFTER).cloned();
    let bytes = answer.bytes().await.map_err(unavailable)?;
    let mut response = (status, bytes).into_response();
    let out = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, media_type),
        (header::RETRY_AFTER, retry_after),
    ] {
        if let Some(value) = value {
            out.insert(name, value);
        }
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(service: &str, method: Method, path: &str) -> bool {
        allowed(service, &method, &path.split('/').collect::<Vec<_>>())
    }

    #[test]
    fn only_the_listed_routes_pass() {
        for service in ["payment", "inventory", "notification"] {
            assert!(check(service, Method::GET, "api/admin/dead-letters"));
            assert!(check(service, Method::GET, "api/admin/dead-letters/groups"));
            assert!(check(
                service,
                Method::POST,
                "api/admin/dead-letters/replay"
            ));
            assert!(check(service, Method::DELETE, "api/admin/dead-letters/abc"));
            assert!(!check(service, Method::POST, "api/admin/dead-letters"));
            assert!(!check(service, Method::DELETE, "api/admin/dead-letters/.."));
            assert!(!check(service, Method::DELETE, "api/admin/dead-letters/"));
            assert!(!check(
                service,
                Method::GET,
                "api/admin/dead-letters/groups/x"
            ));
            assert!(!check(service, Method::POST, "api/admin/retention/prune"));
            assert!(!check(service, Method::GET, "metrics"));
        }
        assert!(check("payment", Method::GET, "api/payments"));
        assert!(!check("payment", Method::PUT, "api/accounts/c-1"));
        assert!(!check("inventory", Method::GET, "api/payments"));
        assert!(check("inventory", Method::GET, "api/reservations"));
        assert!(!check("inventory", Method::PUT, "api/products/p-1"));
        assert!(check("notification", Method::GET, "api/notifications"));
        assert!(check(
            "notification",
            Method::POST,
            "api/notifications/0193/resend"
        ));
        assert!(!check(
            "payment",
            Method::POST,
            "api/notifications/0193/resend"
        ));
    }
}
