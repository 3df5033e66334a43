//! Rate limits: how many requests one caller may send (`rate_limit` settings).
//!
//! - [`key`]: who a request counts against, from the [`Caller`] the authentication layer put
//!   into its extensions (a missing one counts as anonymous) and the peer address.
//! - [`RateLimits`]: one GCRA limiter (the `governor` crate) per kind of key, each with its own
//!   quota, and a sweeper that forgets idle keys so memory does not grow with every address seen.
//! - [`layer`]: the middleware; over the limit it answers `429 rate_limited` with `Retry-After`.
//!
//! The layer must sit inside the authentication layer (which inserts the `Caller`) and outside
//! the routes; `server::finish` places it.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::auth::Caller;
use super::error::ApiError;
use crate::configuration::RateLimitSettings;

/// Paths never limited: probes and docs must answer whatever a client did, and a scraper of
/// `/metrics` is infrastructure, not a customer.
const EXEMPT_PREFIXES: [&str; 3] = ["/health/", "/api/docs", "/metrics"];

/// How often idle keys are forgotten. A key is idle once its bucket is full again (at most
/// burst / rate seconds after its last request), so a minute keeps the map to the callers of
/// roughly the last minute.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Who one request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// Not counted: the operator (trusted; a bulk repair must not be throttled) and the
    /// exempt paths.
    Exempt,
    /// A verified customer, whichever address they come from.
    Customer(String),
    /// Anyone without a customer token, by peer address. `None` when the server was not
    /// started with connection info (a router served without it): every such request then
    /// shares one bucket, which limits rather than lets everything through.
    Address(Option<IpAddr>),
}

/// The key of a request to `path` from `caller` (absent: no authentication layer ran, which is
/// anonymous) at `peer`.
pub fn key(path: &str, caller: Option<&Caller>, peer: Option<IpAddr>) -> Key {
    if EXEMPT_PREFIXES
        .iter()
        .any(|prefix| path.starts_with(prefix))
    {
        return Key::Exempt;
    }
    match caller {
        Some(Caller::Operator) => Key::Exempt,
        Some(Caller::Customer { id }) => Key::Customer(id.clone()),
        Some(Caller::Anonymous | Caller::Refused) | None => Key::Address(peer),
    }
}

/// The limiters of one service.
pub struct RateLimits {
    customers: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<Option<IpAddr>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("customers", &self.customers.len())
            .field("addresses", &self.addresses.len())
            .finish()
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    // `validate` refused zeros at start; `MIN` (1) only keeps this total.
    let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_second).allow_burst(burst)
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            customers: DefaultKeyedRateLimiter::dashmap(quota(
                settings.per_customer_per_second,
                settings.per_customer_burst,
            )),
            addresses: DefaultKeyedRateLimiter::dashmap(quota(
                settings.per_address_per_second,
                settings.per_address_burst,
            )),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request against `key`: `Ok` if it may pass, else the whole seconds until it
    /// would (at least 1).
    pub fn check(&self, key: &Key) -> Result<(), u64> {
        let outcome = match key {
            Key::Exempt => return Ok(()),
            Key::Customer(id) => self.customers.check_key(id),
            Key::Address(address) => self.addresses.check_key(address),
        };
        outcome.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            // Round up: a client told 0 would retry at once and be refused again.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            seconds.max(1)
        })
    }

    /// Keys tracked now (customers + addresses).
    pub fn len(&self) -> usize {
        self.customers.len() + self.addresses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the keys whose bucket is full again: they would behave exactly as a new key.
    pub fn sweep(&self) {
        self.customers.retain_recent();
        self.customers.shrink_to_fit();
        self.addresses.retain_recent();
        self.addresses.shrink_to_fit();
    }
}

/// Adds the rate-limit middleware to `router` (nothing when disabled) and starts its sweeper,
/// which ends by itself once the router (and so the limiters) is dropped. Must run inside a
/// Tokio runtime.
pub fn layer(router: Router, settings: &RateLimitSettings) -> Router {
    if !settings.enabled {
        return router;
    }
    let limits = Arc::new(RateLimits::new(settings));
    tokio::spawn(sweep_until_dropped(Arc::downgrade(&limits)));
    router.layer(axum::middleware::from_fn_with_state(limits, middleware))
}

/// Adds the `429` answer (`ErrorBody`, `Retry-After` header) to every operation of `openapi`
/// on a path that is not exempt, so clients see it where it can happen.
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{Content, Header, Ref, RefOr, ResponseBuilder, Schema};

    let response = ResponseBuilder::new()
        .description("Rate limited: too many requests from this customer or address")
        .header(
            "Retry-After",
            Header::new(RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .description(Some("Whole seconds until one more request would pass"))
                    .build(),
            ))),
        )
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build();
    for (path, item) in openapi.paths.paths.iter_mut() {
        if EXEMPT_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            continue;
        }
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            operation
                .responses
                .responses
                .entry("429".into())
                .or_insert_with(|| RefOr::T(response.clone()));
        }
    }
}

async fn sweep_until_dropped(limits: Weak<RateLimits>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.tick().await; // the first tick is immediate
    loop {
        ticks.tick().await;
        let Some(limits) = limits.upgrade() else {
            return;
        };
        limits.sweep();
    }
}

async fn middleware(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let key = key(
        request.uri().path(),
        request.extensions().get::<Caller>(),
        peer,
    );
    match limits.check(&key) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => {
            tracing::debug!(?key, retry_after, "rate limited");
            ApiError::rate_limited(retry_after).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn customers_are_keyed_by_id_and_everyone_else_by_address() {
        let customer = Caller::Customer { id: "c-1".into() };
        assert_eq!(
            key("/api/orders", Some(&customer), HOME),
            Key::Customer("c-1".into())
        );
        for caller in [None, Some(&Caller::Anonymous), Some(&Caller::Refused)] {
            assert_eq!(key("/api/orders", caller, HOME), Key::Address(HOME));
        }
        assert_eq!(key("/api/orders", None, None), Key::Address(None));
    }

    #[test]
    fn the_operator_and_the_exempt_paths_are_never_counted() {
        assert_eq!(
            key("/api/admin/dead-letters", Some(&Caller::Operator), HOME),
            Key::Exempt
        );
        for path in [
            "/health/live",
            "/health/ready",
            "/api/docs",
            "/api/docs/openapi.json",
            "/metrics",
        ] {
            assert_eq!(key(path, None, HOME), Key::Exempt, "{path}");
        }
        let limits = RateLimits::new(&RateLimitSettings {
            per_address_burst: 1,
            ..RateLimitSettings::default()
        });
        for _ in 0..100 {
            assert_eq!(limits.check(&Key::Exempt), Ok(()));
        }
        assert!(limits.is_empty(), "exempt requests leave no key behind");
    }

    #[test]
    fn past_the_burst_a_key_waits_whole_seconds_and_others_are_unaffected() {
        let limits = RateLimits::new(&RateLimitSettings {
            per_customer_per_second: 1,
            per_customer_burst: 2,
            ..RateLimitSettings::default()
        });
        let alice = Key::Customer("alice".into());
        assert_eq!(limits.check(&alice), Ok(()));
        assert_eq!(limits.check(&alice), Ok(()));
        assert_eq!(
            limits.check(&alice),
            Err(1),
            "1/s: the next one in under a second"
        );
        assert_eq!(limits.check(&Key::Customer("bob".into())), Ok(()));
        assert_eq!(limits.len(), 2);
    }
}

/// The layer on a real server (port 0, connection info as in production), with a stand-in for
/// the authentication layer: `x-test-caller: operator` or `customer:<id>`, else anonymous.
#[cfg(all(test, feature = "testing"))]
#[allow(clippy::unwrap_used)] // helpers of tests: a panic is the failure report
mod served {
    use axum::routing::get;
    use reqwest::StatusCode;

    use super::*;
    use crate::shutdown::Shutdown;
    use crate::testing::{PATIENCE, eventually};

    async fn stand_in_auth(mut request: Request, next: Next) -> Response {
        let caller = match request
            .headers()
            .get("x-test-caller")
            .and_then(|v| v.to_str().ok())
        {
            Some("operator") => Some(Caller::Operator),
            Some(other) => other
                .strip_prefix("customer:")
                .map(|id| Caller::Customer { id: id.into() }),
            None => None,
        };
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        next.run(request).await
    }

    struct Served {
        address: String,
        client: reqwest::Client,
        shutdown: Shutdown,
    }

    impl Drop for Served {
        fn drop(&mut self) {
            self.shutdown.trigger();
        }
    }

    impl Served {
        async fn start(settings: RateLimitSettings) -> Self {
            let routes = Router::new()
                .route("/api/thing", get(|| async { "ok" }))
                .route("/health/live", get(|| async { "ok" }));
            let router = layer(routes, &settings).layer(axum::middleware::from_fn(stand_in_auth));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = format!("http://{}", listener.local_addr().unwrap());
            let shutdown = Shutdown::new();
            tokio::spawn(crate::http::server::serve(
                listener,
                router,
                shutdown.clone(),
            ));
            Self {
                address,
                client: reqwest::Client::new(),
                shutdown,
            }
        }

        async fn get(&self, path: &str, caller: Option<&str>) -> reqwest::Response {
            let mut request = self.client.get(format!("{}{path}", self.address));
            if let Some(caller) = caller {
                request = request.header("x-test-caller", caller);
            }
            request.send().await.unwrap()
        }

        /// Statuses of `n` requests in a row.
        async fn statuses(&self, n: usize, path: &str, caller: Option<&str>) -> Vec<u16> {
            let mut statuses = Vec::with_capacity(n);
            for _ in 0..n {
                statuses.push(self.get(path, caller).await.status().as_u16());
            }
            statuses
        }
    }

    fn tight() -> RateLimitSettings {
        // One request a second: the bucket cannot refill between two requests of a test
        // even on a slow machine (it takes a whole second to earn one).
        RateLimitSettings {
            enabled: true,
            per_customer_per_second: 1,
            per_customer_burst: 3,
            per_address_per_second: 1,
            per_address_burst: 2,
        }
    }

    #[tokio::test]
    async fn a_customer_over_the_burst_is_refused_until_the_bucket_refills() {
        let served = Served::start(tight()).await;
        let alice = Some("customer:alice");
        assert_eq!(served.statuses(3, "/api/thing", alice).await, [200; 3]);

        let refused = served.get("/api/thing", alice).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(retry_after, 1, "1/s: back within a second, rounded up");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "rate_limited");

        // Another customer, and anonymous callers from the same address, are unaffected.
        assert_eq!(
            served.statuses(3, "/api/thing", Some("customer:bob")).await,
            [200; 3]
        );
        assert_eq!(
            served.get("/api/thing", None).await.status(),
            StatusCode::OK
        );

        eventually("alice's bucket to refill", PATIENCE, || async {
            (served.get("/api/thing", alice).await.status() == StatusCode::OK).then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn anonymous_callers_share_their_address_bucket_and_exempt_paths_are_never_limited() {
        let served = Served::start(tight()).await;
        assert_eq!(
            served.statuses(3, "/api/thing", None).await,
            [200, 200, 429],
            "burst 2 per address"
        );
        assert_eq!(
            served.get("/api/thing", Some("customer:")).await.status(),
            StatusCode::OK,
            "a customer is not counted against the address"
        );
        assert_eq!(served.statuses(20, "/health/live", None).await, [200; 20]);
    }

    #[tokio::test]
    async fn the_operator_is_never_limited_and_disabled_limits_refuse_nothing() {
        let served = Served::start(tight()).await;
        assert_eq!(
            served.statuses(20, "/api/thing", Some("operator")).await,
            [200; 20]
        );
        let off = Served::start(RateLimitSettings {
            enabled: false,
            ..tight()
        })
        .await;
        assert_eq!(off.statuses(20, "/api/thing", None).await, [200; 20]);
    }
}
