//! Keys of an identity provider's JWKS, served by the test on port 0: chosen by `kid`, rotated
//! in, and, over https, trusted only through `auth.jwks_ca_file` (or the system's roots): the
//! certificate is issued by a private CA made on the spot (`testing::PrivateCa`, rcgen).

use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use saga_common::configuration::AuthSettings;
use saga_common::http::auth::jwks::Jwks;
use saga_common::testing::ADMIN_TOKEN;

use crate::auth::{EC_PRIVATE, RSA_PRIVATE, RSA2_PRIVATE, claims, sign, verdict};
use crate::helpers::spawn_app_with;

/// A JWKS endpoint on port 0 whose key set a test changes; it counts the fetches (over https,
/// only those that got past the TLS handshake).
struct JwksServer {
    url: String,
    keys: Arc<Mutex<JwkSet>>,
    fetches: Arc<Mutex<u32>>,
}

impl JwksServer {
    /// Over http.
    async fn start(keys: JwkSet) -> Self {
        Self::serve(keys, None).await
    }

    /// Over https, with `ca`'s certificate for 127.0.0.1.
    async fn start_tls(keys: JwkSet, ca: &PrivateCa) -> Self {
        Self::serve(keys, Some(TlsAcceptor::from(ca.server.clone()))).await
    }

    async fn serve(keys: JwkSet, tls: Option<TlsAcceptor>) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(Mutex::new(0));
        let (served, counted) = (keys.clone(), fetches.clone());
        let router = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    *counted.lock().unwrap() += 1;
                    axum::Json(served.lock().unwrap().clone())
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let url = match tls {
            None => {
                tokio::spawn(async move { axum::serve(listener, router).await });
                format!("http://{address}/jwks.json")
            }
            Some(acceptor) => {
                let listener = TlsListener { listener, acceptor };
                tokio::spawn(async move { axum::serve(listener, router).await });
                format!("https://{address}/jwks.json")
            }
        };
        Self { url, keys, fetches }
    }

    fn fetches(&self) -> u32 {
        *self.fetches.lock().unwrap()
    }
}

/// TCP connections that completed a TLS handshake, for `axum::serve`.
struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, address) = axum::serve::Listener::accept(&mut self.listener).await;
            // A client that does not trust the certificate aborts the handshake: serve the next.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A private CA, as an identity provider inside a company has, and a TLS server configuration
/// with the certificate it issued for 127.0.0.1.
struct PrivateCa {
    ca: saga_common::testing::PrivateCa,
    server: Arc<ServerConfig>,
}

impl PrivateCa {
    fn new() -> Self {
        let ca = saga_common::testing::PrivateCa::new();
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(ca.server_cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.server_key_der.clone())),
            )
            .unwrap();
        Self {
            ca,
            server: Arc::new(server),
        }
    }

    fn pem_file(&self) -> String {
        self.ca.ca_file()
    }
}

fn jwk(kid: &str, algorithm: Algorithm, private_pem: &str) -> Jwk {
    let key = match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
    };
    let mut jwk = Jwk::from_encoding_key(&key, algorithm).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

#[tokio::test]
async fn a_jwks_key_verifies_by_kid_and_a_rotated_in_key_is_fetched_once() {
    let server = JwksServer::start(JwkSet {
        keys: vec![
            jwk("k1", Algorithm::RS256, RSA_PRIVATE),
            jwk("e1", Algorithm::ES256, EC_PRIVATE),
        ],
    })
    .await;
    let app = spawn_app_with(|settings| {
        settings.auth = AuthSettings {
            operator_token: ADMIN_TOKEN.into(),
            jwks_url: Some(server.url.clone()),
            ..AuthSettings::default()
        };
    })
    .await;
    assert_eq!(server.fetches(), 1, "fetched once at start");
    let k1 = sign(Algorithm::RS256, Some("k1"), RSA_PRIVATE, &claims("c-1"));
    let e1 = sign(Algorithm::ES256, Some("e1"), EC_PRIVATE, &claims("c-1"));
    assert_eq!(verdict(&app, &k1).await.0, StatusCode::FORBIDDEN);
    assert_eq!(verdict(&app, &e1).await.0, StatusCode::FORBIDDEN);
    // A kid's key verifies only its own algorithm's tokens.
    let mislabelled = sign(Algorithm::ES256, Some("k1"), EC_PRIVATE, &claims("c-1"));
    assert_eq!(
        verdict(&app, &mislabelled).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The provider rotates: k2 replaces k1. The first token naming k2 makes the service fetch.
    *server.keys.lock().unwrap() = JwkSet {
        keys: vec![jwk("k2", Algorithm::RS256, RSA2_PRIVATE)],
    };
    let k2 = sign(Algorithm::RS256, Some("k2"), RSA2_PRIVATE, &claims("c-1"));
    assert_eq!(
        verdict(&app, &k2).await.0,
        StatusCode::FORBIDDEN,
        "k2 fetched"
    );
    assert_eq!(server.fetches(), 2);
    // k1 is gone; another unknown kid within 30 s does not fetch again.
    assert_eq!(verdict(&app, &k1).await.0, StatusCode::UNAUTHORIZED);
    let unknown = sign(Algorithm::RS256, Some("k9"), RSA2_PRIVATE, &claims("c-1"));
    assert_eq!(verdict(&app, &unknown).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(server.fetches(), 2, "unknown kids are throttled");
}

fn provider_keys() -> JwkSet {
    JwkSet {
        keys: vec![
            jwk("k1", Algorithm::RS256, RSA_PRIVATE),
            jwk("e1", Algorithm::ES256, EC_PRIVATE),
        ],
    }
}

fn jwks_settings(url: &str, ca_file: Option<String>) -> AuthSettings {
    AuthSettings {
        operator_token: ADMIN_TOKEN.into(),
        jwks_url: Some(url.to_owned()),
        jwks_ca_file: ca_file,
        ..AuthSettings::default()
    }
}

#[tokio::test]
async fn an_https_jwks_of_a_private_ca_verifies_its_keys_once_the_ca_file_is_trusted() {
    let ca = PrivateCa::new();
    let server = JwksServer::start_tls(provider_keys(), &ca).await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let app = spawn_app_with(|settings| {
        settings.auth = jwks_settings(&server.url, Some(ca.pem_file()));
    })
    .await;
    assert_eq!(server.fetches(), 1, "fetched once at start, over TLS");

    let k1 = sign(Algorithm::RS256, Some("k1"), RSA_PRIVATE, &claims("c-1"));
    let e1 = sign(Algorithm::ES256, Some("e1"), EC_PRIVATE, &claims("c-1"));
    assert_eq!(verdict(&app, &k1).await.0, StatusCode::FORBIDDEN, "RS256");
    assert_eq!(verdict(&app, &e1).await.0, StatusCode::FORBIDDEN, "ES256");
    // A token signed by a key the provider does not hold, even under a kid it does, is refused.
    let foreign = sign(Algorithm::RS256, Some("k1"), RSA2_PRIVATE, &claims("c-1"));
    assert_eq!(
        verdict(&app, &foreign).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
}

#[tokio::test]
async fn an_https_jwks_is_not_trusted_without_its_ca_and_the_error_names_the_url_and_the_tls_failure()
 {
    let ca = PrivateCa::new();
    let server = JwksServer::start_tls(provider_keys(), &ca).await;

    // The service starts (a participant keeps consuming while the provider is not trusted), but
    // holds no key: a token the provider's key signed proves nothing.
    let app = spawn_app_with(|settings| {
        settings.auth = jwks_settings(&server.url, None);
    })
    .await;
    let k1 = sign(Algorithm::RS256, Some("k1"), RSA_PRIVATE, &claims("c-1"));
    assert_eq!(verdict(&app, &k1).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(server.fetches(), 0, "no request got past the TLS handshake");

    // What the warning in the log says: the URL and the TLS cause, not just "error sending
    // request".
    let untrusted = Jwks::start(&server.url, None).await.unwrap();
    let error = untrusted.refresh_now().await.unwrap_err().0;
    assert!(error.contains(&server.url), "{error}");
    assert!(error.contains("invalid peer certificate"), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");

    // Another CA's file does not help, even one of the same name (BadSignature); this CA's does.
    let other = PrivateCa::new();
    let wrong_ca = Jwks::start(&server.url, Some(&other.pem_file()))
        .await
        .unwrap();
    let error = wrong_ca.refresh_now().await.unwrap_err().0;
    assert!(error.contains("invalid peer certificate"), "{error}");
    let trusted = Jwks::start(&server.url, Some(&ca.pem_file()))
        .await
        .unwrap();
    assert_eq!(trusted.refresh_now().await.unwrap(), 2, "both keys usable");
}
