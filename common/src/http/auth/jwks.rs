//! The keys of an identity provider's JWKS (`auth.jwks_url`), cached by `kid`.
//!
//! Fetched at start, again every [`REFRESH_EVERY`], and on a token naming an unknown `kid` (a
//! key the provider has just rotated in) at most once per [`UNKNOWN_KID_PAUSE`], so tokens with
//! made-up kids cannot make the service hammer the provider. A failed fetch keeps the keys held
//! and logs a warning naming the URL and the whole cause (a TLS failure is several sources deep
//! in reqwest's error). Each key is built once, when its set is fetched.
//!
//! `https://` is verified against the system's roots plus, optionally, the PEM certificates of
//! `auth.jwks_ca_file` (a private CA); `http://` still works, with a warning at start unless the
//! host is a loopback address (keys fetched in clear can be swapped on the way).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::jwt::{KeyError, Refusal};
use crate::http::error::ErrorChain;

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
    /// keeps it fresh on a timer that ends when the returned `Arc` is dropped. `ca_file` names
    /// PEM certificates trusted for `https://` besides the system's roots. A URL that is neither
    /// `http://` nor `https://`, or a CA file that cannot be read or holds no certificate, is an
    /// error: those never heal by waiting.
    pub async fn start(url: &str, ca_file: Option<&str>) -> Result<Arc<Self>, KeyError> {
        let client = client(url, ca_file)?;
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

    /// Fetches the set and replaces the keys held; on failure keeps them and logs why.
    async fn refresh(&self) {
        if let Err(error) = self.refresh_now().await {
            tracing::warn!(%error, "JWKS fetch failed; keeping the keys held");
        }
    }

    /// Fetches the set now and replaces the keys held: the number of usable keys, or why the
    /// fetch failed (the URL and every cause, e.g. `invalid peer certificate: UnknownIssuer`),
    /// in which case the keys held are kept.
    pub async fn refresh_now(&self) -> Result<usize, KeyError> {
        let keys = self.fetch().await.map_err(|error| {
            KeyError(format!(
                "JWKS fetch from {} failed: {}",
                self.url,
                ErrorChain(&error.without_url())
            ))
        })?;
        let count = keys.len();
        tracing::debug!(keys = count, url = %self.url, "JWKS fetched");
        if let Ok(mut held) = self.keys.write() {
            *held = Arc::new(keys);
        }
        Ok(count)
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

/// The client of one JWKS URL: its scheme checked, the CA file's certificates trusted.
fn client(url: &str, ca_file: Option<&str>) -> Result<reqwest::Client, KeyError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| KeyError(format!("auth.jwks_url is not a URL ({e}): {url}")))?;
    let extra_roots = match ca_file {
        Some(path) => ca_certificates(path)?,
        None => Vec::new(),
    };
    let builder = reqwest::Client::builder().timeout(FETCH_TIMEOUT);
    let builder = match parsed.scheme() {
        // https_only: a redirect must not downgrade the fetch to clear text.
        "https" => builder.https_only(true).tls_certs_merge(extra_roots),
        "http" => {
            if !is_loopback(&parsed) {
                tracing::warn!(
                    %url,
                    "auth.jwks_url is http:// to another host: keys fetched in clear can be \
                     swapped on the way; use https://"
                );
            }
            if ca_file.is_some() {
                tracing::warn!("auth.jwks_ca_file is not used: auth.jwks_url is http://");
            }
            // Clear text needs no roots; not loading the system's keeps an http:// JWKS working
            // on a machine without a CA bundle (a redirect to https:// is then refused).
            builder.tls_certs_only(Vec::new())
        }
        other => {
            return Err(KeyError(format!(
                "auth.jwks_url must be https:// (or http://), not {other}://: {url}"
            )));
        }
    };
    builder.build().map_err(|e| {
        KeyError(format!(
            "cannot build the JWKS client for {url}: {}",
            ErrorChain(&e)
        ))
    })
}

/// The certificates of the PEM file `path` (`auth.jwks_ca_file`); at least one.
fn ca_certificates(path: &str) -> Result<Vec<reqwest::Certificate>, KeyError> {
    let pem = std::fs::read(path)
        .map_err(|e| KeyError(format!("cannot read auth.jwks_ca_file {path}: {e}")))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| KeyError(format!("auth.jwks_ca_file {path} is not PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(KeyError(format!(
            "auth.jwks_ca_file {path} holds no certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certificates)
}

/// `localhost` or a loopback address: clear text never leaves the machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    // host_str gives an IPv6 address in its brackets.
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(url: &str, ca_file: Option<&str>) -> String {
        match client(url, ca_file) {
            Ok(_) => panic!("{url} with {ca_file:?} was accepted"),
            Err(KeyError(message)) => message,
        }
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        assert!(client("https://id.example/jwks.json", None).is_ok());
        assert!(client("http://127.0.0.1:8080/jwks.json", None).is_ok());
        let refused = error_of("ftp://id.example/jwks.json", None);
        assert!(
            refused.contains("auth.jwks_url must be https://"),
            "{refused}"
        );
        let refused = error_of("id.example/jwks.json", None);
        assert!(refused.contains("not a URL"), "{refused}");
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_refused() {
        let missing = error_of("https://id.example/", Some("/nonexistent/ca.pem"));
        assert!(
            missing.contains("cannot read auth.jwks_ca_file /nonexistent/ca.pem"),
            "{missing}"
        );
        let path = std::env::temp_dir().join(format!("jwks-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let path_text = path.to_str().unwrap();
        let empty = error_of("https://id.example/", Some(path_text));
        std::fs::remove_file(&path).unwrap();
        assert!(empty.contains("holds no certificate"), "{empty}");
    }

    #[test]
    fn only_localhost_and_loopback_addresses_count_as_loopback() {
        for (url, loopback) in [
            ("http://localhost:8080/jwks", true),
            ("http://127.0.0.1/jwks", true),
            ("http://127.8.0.1/jwks", true),
            ("http://[::1]:80/jwks", true),
            ("http://10.0.0.5/jwks", false),
            ("http://jwks-proxy.internal/jwks", false),
            ("http://localhost.evil.example/jwks", false),
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert_eq!(is_loopback(&parsed), loopback, "{url}");
        }
    }
}
