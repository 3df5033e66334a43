//! The keys of an identity provider's JWKS (`auth.jwks_url`), cached by `kid`.
//!
//! Fetched at start, again every [`REFRESH_EVERY`], and on a token naming an unknown `kid` (a
//! key the provider has just rotated in) at most once per [`UNKNOWN_KID_PAUSE`], so tokens with
//! made-up kids cannot make the service hammer the provider. A failed fetch keeps the keys held
//! and logs a warning. Each key is built once, when its set is fetched.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::jwt::{KeyError, Refusal};

/// How often the set is fetched whatever happens.
pub const REFRESH_EVERY: Duration = Duration::from_secs(600);
/// Least time between two fetches caused by unknown kids.
pub const UNKNOWN_KID_PAUSE: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

type Keys = HashMap<String, (Algorithm, Arc<DecodingKey>)>;

/// The cached key set of one JWKS URL.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<Keys>>,
    /// When an unknown kid last caused a fetch; the lock also makes concurrent requests with the
    /// same new kid wait for one fetch instead of each making its own.
    unknown_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    /// Fetches the set once (a failure is a warning: the provider may come up after us) and
    /// keeps it fresh on a timer that ends when the returned `Arc` is dropped.
    pub async fn start(url: &str) -> Result<Arc<Self>, KeyError> {
        if !url.starts_with("http://") {
            // The workspace builds reqwest without TLS (see the root Cargo.toml): an https URL
            // could never be fetched, which is better said at start than on every request.
            return Err(KeyError(format!(
                "auth.jwks_url must be an http:// URL (this build has no TLS client; serve the \
                 JWKS through a local proxy or sidecar): {url}"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| KeyError(format!("cannot build the JWKS client: {e}")))?;
        let jwks = Arc::new(Self {
            url: url.to_owned(),
            client,
            keys: RwLock::new(Arc::default()),
            unknown_kid_fetch: tokio::sync::Mutex::new(None),
        });
        jwks.refresh().await;
        tokio::spawn(refresh_periodically(Arc::downgrade(&jwks)));
        Ok(jwks)
    }

    /// The key a token with `kid` and `algorithm` is verified with. Without a `kid`, the set's
    /// only key (a provider with several keys names them).
    pub async fn key(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Arc<DecodingKey>, Refusal> {
        let found = match self.lookup(kid) {
            Some(found) => found,
            None => {
                let kid = kid.ok_or(Refusal::UnknownKey)?;
                self.fetch_for_unknown(kid).await?
            }
        };
        let (allowed, key) = found;
        (allowed == algorithm)
            .then_some(key)
            .ok_or(Refusal::AlgorithmNotAllowed)
    }

    fn lookup(&self, kid: Option<&str>) -> Option<(Algorithm, Arc<DecodingKey>)> {
        let keys = self.keys.read().ok()?.clone();
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    async fn fetch_for_unknown(&self, kid: &str) -> Result<(Algorithm, Arc<DecodingKey>), Refusal> {
        let mut last = self.unknown_kid_fetch.lock().await;
        // Another request may have fetched it while this one waited for the lock.
        if let Some(found) = self.lookup(Some(kid)) {
            return Ok(found);
        }
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_PAUSE) {
            return Err(Refusal::UnknownKey);
        }
        *last = Some(Instant::now());
        self.refresh().await;
        self.lookup(Some(kid)).ok_or(Refusal::UnknownKey)
    }

    /// Fetches the set and replaces the keys held; on failure keeps them.
    async fn refresh(&self) {
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), url = %self.url, "JWKS fetched");
                if let Ok(mut held) = self.keys.write() {
                    *held = Arc::new(keys);
                }
            }
            Err(error) => {
                tracing::warn!(%error, url = %self.url, "JWKS fetch failed; keeping the keys held");
            }
        }
    }

    async fn fetch(&self) -> Result<Keys, reqwest::Error> {
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(usable_keys(&set))
    }
}

/// The RS256 and ES256 keys of `set` that have a kid; others are skipped with a note in the log.
fn usable_keys(set: &JwkSet) -> Keys {
    let mut keys = Keys::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        match algorithm_of(jwk).and_then(|alg| Some((alg, DecodingKey::from_jwk(jwk).ok()?))) {
            Some((algorithm, key)) => {
                keys.insert(kid, (algorithm, Arc::new(key)));
            }
            None => tracing::debug!(%kid, "JWKS key skipped: not an RS256 or ES256 key"),
        }
    }
    keys
}

/// The one algorithm a key verifies: its `alg` when given, else what its type implies.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(implied),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(implied),
        Some(_) => None,
    }
}

async fn refresh_periodically(jwks: Weak<Jwks>) {
    let mut timer = tokio::time::interval(REFRESH_EVERY);
    timer.tick().await;
    loop {
        timer.tick().await;
        let Some(jwks) = jwks.upgrade() else {
            return;
        };
        jwks.refresh().await;
    }
}
