//! Who may call a service and how often: `auth` (the operator token, the keys customer JWTs
//! are verified with; see docs/security.md), `rate_limit`, and `admin`, the operator token's old
//! home, read for one more release.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The old home of the operator token (`APP__ADMIN__TOKEN`), read for one more release when
/// `auth.operator_token` is empty, with a deprecation warning at start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AdminSettings {
    /// Deprecated alias of `auth.operator_token`. Never serialised.
    #[serde(skip_serializing, default)]
    pub token: SecretString,
}

impl AdminSettings {
    pub fn with_token(token: &str) -> Self {
        Self {
            token: SecretString::from(token),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.token.expose_secret().is_empty()
    }
}

/// Requests allowed per caller (`APP__RATE_LIMIT__...`), enforced by `crate::http::rate_limit`:
/// a steady rate and a burst on top of it, per customer id for customer tokens and per client
/// address for requests without one. The operator is never limited.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Off: no request is ever refused with 429.
    pub enabled: bool,
    /// Requests a second one customer may sustain.
    pub per_customer_per_second: u32,
    /// Requests one customer may send at once above the steady rate.
    pub per_customer_burst: u32,
    /// Requests a second one client address (without a customer token) may sustain.
    pub per_address_per_second: u32,
    /// Requests one client address may send at once above the steady rate.
    pub per_address_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        // A shopper clicks a few times a second at most; the benchmark's 2,200 orders/s over
        // 5,000 customers is under 0.5/s each. docs/configuration.md gives the reasoning.
        Self {
            enabled: true,
            per_customer_per_second: 10,
            per_customer_burst: 20,
            per_address_per_second: 50,
            per_address_burst: 100,
        }
    }
}

impl RateLimitSettings {
    /// Refuses a rate of 0 (nothing would ever pass) and a burst of 0 (the same).
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("per_customer_per_second", self.per_customer_per_second),
            ("per_customer_burst", self.per_customer_burst),
            ("per_address_per_second", self.per_address_per_second),
            ("per_address_burst", self.per_address_burst),
        ] {
            if value == 0 {
                return Err(format!("rate_limit.{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Who may call what (`APP__AUTH__...`; see `docs/security.md`): the operator's bearer token and
/// the keys customer JWTs are verified with. Secrets are never serialised nor shown in `Debug`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// Bearer token of the operator routes; empty (the default) turns them off (403
    /// `admin_disabled`), so a forgotten setting never means open access.
    #[serde(skip_serializing)]
    pub operator_token: SecretString,
    /// HS256 secret of customer JWTs; empty: no HS256 token is accepted.
    #[serde(skip_serializing)]
    pub jwt_secret: SecretString,
    /// The secret before the last rotation, also accepted, so tokens minted with it stay valid
    /// until they expire: a rotation without downtime. Empty: none.
    #[serde(skip_serializing)]
    pub jwt_previous_secret: SecretString,
    /// PEM public key (RSA: RS256, EC P-256: ES256) of customer JWTs; refused at start if it
    /// does not parse.
    pub jwt_public_key: Option<String>,
    /// JWKS of an identity provider: keys by `kid`, RS256 or ES256. `https://` (verified against
    /// the system's roots and `jwks_ca_file`) or `http://` (warned at start unless loopback).
    pub jwks_url: Option<String>,
    /// PEM file of CA certificates trusted for an `https://` `jwks_url` besides the system's
    /// roots (a private CA); unreadable or without a certificate: refused at start.
    pub jwks_ca_file: Option<String>,
    /// Required `iss` when set; not checked otherwise.
    pub jwt_issuer: Option<String>,
    /// Required `aud` when set; not checked otherwise.
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on `exp` (and `nbf`).
    #[serde(with = "humantime_serde")]
    pub jwt_leeway: Duration,
    /// Every request is the operator's: local experiments only; warned at start and on every
    /// readiness probe.
    pub disabled: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            operator_token: SecretString::default(),
            jwt_secret: SecretString::default(),
            jwt_previous_secret: SecretString::default(),
            jwt_public_key: None,
            jwks_url: None,
            jwks_ca_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: Duration::from_secs(30),
            disabled: false,
        }
    }
}

impl AuthSettings {
    /// Settings with an operator token and an HS256 secret (tests, examples).
    pub fn with_secrets(operator_token: &str, jwt_secret: &str) -> Self {
        Self {
            operator_token: SecretString::from(operator_token),
            jwt_secret: SecretString::from(jwt_secret),
            ..Self::default()
        }
    }
}
