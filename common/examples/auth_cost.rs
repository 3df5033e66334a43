//! What classifying one request's credentials costs (`http::auth::Authenticator::classify`):
//! no header, the operator token, and a customer JWT signed HS256, RS256 and ES256.
//!
//! `cargo run --release -p saga-common --example auth_cost` prints microseconds per request,
//! one core, for comparison with the CPU a saga costs (docs/benchmarks.md, docs/security.md).

use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use saga_common::configuration::{AuthSettings, ServiceSettings};
use saga_common::http::auth::{Authenticator, Caller};

const ROUNDS: u32 = 20_000;
const OPERATOR: &str = "operator-token-for-the-cost-example";
const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes-long";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exp = chrono::Utc::now().timestamp() + 3600;
    let claims = serde_json::json!({"sub": "customer-0042", "exp": exp});
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes())?,
    )?;
    let cases: Vec<(&str, Authenticator, Option<String>)> = vec![
        ("no header", authenticator(None).await?, None),
        (
            "operator token",
            authenticator(None).await?,
            Some(OPERATOR.to_owned()),
        ),
        ("customer JWT, HS256", authenticator(None).await?, Some(hs)),
        signed("customer JWT, RS256", "rsa", Algorithm::RS256, &claims).await?,
        signed("customer JWT, ES256", "ec", Algorithm::ES256, &claims).await?,
    ];
    for (name, auth, bearer) in cases {
        let mut headers = HeaderMap::new();
        if let Some(token) = bearer {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
        }
        let (caller, refusal) = auth.classify(&headers).await;
        if matches!(caller, Caller::Refused) {
            return Err(format!("{name}: refused ({refusal:?})").into());
        }
        let started = Instant::now();
        for _ in 0..ROUNDS {
            std::hint::black_box(auth.classify(std::hint::black_box(&headers)).await);
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
        println!("{name:<22} {micros:>8.2} µs per request");
    }
    Ok(())
}

/// An authenticator with the operator token, the HS256 secret and `public_key` if given.
async fn authenticator(
    public_key: Option<String>,
) -> Result<Authenticator, Box<dyn std::error::Error>> {
    let mut settings = ServiceSettings::new(0, "unused");
    settings.auth = AuthSettings::with_secrets(OPERATOR, SECRET);
    settings.auth.jwt_public_key = public_key;
    Ok(Authenticator::from_settings(&settings).await?)
}

/// A case whose token is signed with the fixture key pair `<stem>_private.pem`/`_public.pem`.
async fn signed(
    name: &'static str,
    stem: &str,
    algorithm: Algorithm,
    claims: &serde_json::Value,
) -> Result<(&'static str, Authenticator, Option<String>), Box<dyn std::error::Error>> {
    let private = std::fs::read(format!("{FIXTURES}/{stem}_private.pem"))?;
    let public = std::fs::read_to_string(format!("{FIXTURES}/{stem}_public.pem"))?;
    let key = match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&private)?,
        _ => EncodingKey::from_rsa_pem(&private)?,
    };
    let token = encode(&Header::new(algorithm), claims, &key)?;
    Ok((name, authenticator(Some(public)).await?, Some(token)))
}
