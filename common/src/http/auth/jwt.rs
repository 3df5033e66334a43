//! Customer JWTs: which key verifies a token, by its `alg` (and `kid`), and why one is refused.
//!
//! - HS256 only with `auth.jwt_secret` (and `auth.jwt_previous_secret` during a rotation).
//! - RS256 / ES256 only with `auth.jwt_public_key` or a key of the JWKS ([`super::jwks`]).
//!
//! The algorithm a key accepts is fixed by the key, never by the token: an HS256 token "signed"
//! with the RSA public key as an HMAC secret finds no HS256 key built from it, and `none` is
//! not an algorithm `jsonwebtoken` parses at all. Keys and validations are built once, at start.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::jwks::Jwks;
use crate::configuration::AuthSettings;

/// Longest customer id (`sub`) accepted, as the order API's `customer_id`.
pub const MAX_SUBJECT_CHARS: usize = 128;

/// Why a bearer proved nothing; the 401's message says it (never the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    WrongIssuer,
    AlgorithmNotAllowed,
    UnknownKey,
    MissingClaim,
    BadSubject,
    /// Not the operator token, and no customer key is configured.
    UnknownToken,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "the token is malformed",
            Self::BadSignature => "the token's signature does not verify",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::WrongAudience => "the token is for another audience",
            Self::WrongIssuer => "the token is from another issuer",
            Self::AlgorithmNotAllowed => "the token's algorithm is not allowed",
            Self::UnknownKey => "the token's key (kid) is unknown",
            Self::MissingClaim => "the token lacks a required claim (exp, iss or aud)",
            Self::BadSubject => "the token's sub must be 1 to 128 characters, none a control",
            Self::UnknownToken => "the token is not one this service accepts",
        }
    }

    fn of(error: &jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            ErrorKind::InvalidIssuer => Self::WrongIssuer,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Self::AlgorithmNotAllowed,
            ErrorKind::MissingRequiredClaim(_) => Self::MissingClaim,
            _ => Self::Malformed,
        }
    }
}

/// The only claim read besides those `jsonwebtoken` validates (`exp`, `nbf`, `iss`, `aud`).
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
}

/// Settings that cannot work, refused at start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The customer-token verifier: every key it accepts, with the one algorithm each takes.
pub struct Verifier {
    /// The current HS256 secret, then the previous one.
    secrets: Vec<DecodingKey>,
    /// `auth.jwt_public_key` and the one algorithm its type allows.
    public_key: Option<(Algorithm, DecodingKey)>,
    jwks: Option<Arc<Jwks>>,
    /// One validation per algorithm accepted, built once.
    validations: Vec<(Algorithm, Validation)>,
}

impl Verifier {
    /// Builds the keys of `settings`; a public key that does not parse is an error.
    pub fn new(settings: &AuthSettings, jwks: Option<Arc<Jwks>>) -> Result<Self, KeyError> {
        let mut secrets = Vec::new();
        for secret in [&settings.jwt_secret, &settings.jwt_previous_secret] {
            let secret = secret.expose_secret();
            if !secret.is_empty() {
                let key = DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| KeyError(format!("auth.jwt_secret cannot be used: {e}")))?;
                secrets.push(key);
            }
        }
        let public_key = match settings.jwt_public_key.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(pem) => Some(public_key(pem)?),
        };
        let validations = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256]
            .into_iter()
            .map(|algorithm| (algorithm, validation(settings, algorithm)))
            .collect();
        Ok(Self {
            secrets,
            public_key,
            jwks,
            validations,
        })
    }

    /// Whether any customer key is configured: without one every non-operator bearer is refused.
    pub fn accepts_customers(&self) -> bool {
        !self.secrets.is_empty() || self.public_key.is_some() || self.jwks.is_some()
    }

    /// The customer id (`sub`) of a token that verifies, or why it does not.
    pub async fn verify(&self, token: &str) -> Result<String, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| Refusal::of(&e))?;
        let validation = self
            .validations
            .iter()
            .find(|(algorithm, _)| *algorithm == header.alg)
            .map(|(_, validation)| validation)
            .ok_or(Refusal::AlgorithmNotAllowed)?;
        let claims = match header.alg {
            Algorithm::HS256 => self.with_secrets(token, validation)?,
            algorithm => {
                if let Some((allowed, key)) = &self.public_key
                    && *allowed == algorithm
                {
                    decode(token, key, validation)?
                } else if let Some(jwks) = &self.jwks {
                    let key = jwks.key(header.kid.as_deref(), algorithm).await?;
                    decode(token, &key, validation)?
                } else {
                    return Err(Refusal::AlgorithmNotAllowed);
                }
            }
        };
        subject(claims)
    }

    fn with_secrets(&self, token: &str, validation: &Validation) -> Result<Claims, Refusal> {
        let mut outcome = Err(Refusal::AlgorithmNotAllowed);
        for key in &self.secrets {
            outcome = decode(token, key, validation);
            // Only a signature that fails with the current secret is worth a second try.
            if !matches!(outcome, Err(Refusal::BadSignature)) {
                break;
            }
        }
        outcome
    }
}

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Claims, Refusal> {
    jsonwebtoken::decode::<Claims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| Refusal::of(&e))
}

/// `sub` is a customer id: present, 1 to 128 characters, no control character (it goes into
/// logs, queries and messages).
fn subject(claims: Claims) -> Result<String, Refusal> {
    let sub = claims.sub.ok_or(Refusal::MissingClaim)?;
    let fits = (1..=MAX_SUBJECT_CHARS).contains(&sub.chars().count())
        && !sub.chars().any(char::is_control);
    fits.then_some(sub).ok_or(Refusal::BadSubject)
}

/// RSA keys verify RS256, EC keys ES256; anything else is refused at start.
fn public_key(pem: &str) -> Result<(Algorithm, DecodingKey), KeyError> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((Algorithm::RS256, key));
    }
    DecodingKey::from_ec_pem(pem.as_bytes())
        .map(|key| (Algorithm::ES256, key))
        .map_err(|e| {
            KeyError(format!(
                "auth.jwt_public_key is neither an RSA nor an EC public key in PEM: {e}"
            ))
        })
}

fn validation(settings: &AuthSettings, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = settings.jwt_leeway.as_secs();
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    // Checked only when configured: `jsonwebtoken` would otherwise refuse any token with an
    // `aud` claim when no audience is set.
    validation.validate_aud = false;
    if let Some(audience) = settings.jwt_audience.as_deref().filter(|a| !a.is_empty()) {
        validation.set_audience(&[audience]);
        validation.validate_aud = true;
        required.push("aud");
    }
    if let Some(issuer) = settings.jwt_issuer.as_deref().filter(|i| !i.is_empty()) {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    validation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: Option<&str>) -> Claims {
        Claims {
            sub: sub.map(str::to_owned),
        }
    }

    #[test]
    fn a_subject_is_a_short_printable_id() {
        assert_eq!(subject(claims(Some("c-1"))), Ok("c-1".to_owned()));
        assert_eq!(subject(claims(None)), Err(Refusal::MissingClaim));
        assert_eq!(subject(claims(Some(""))), Err(Refusal::BadSubject));
        assert_eq!(subject(claims(Some("c\u{0}x"))), Err(Refusal::BadSubject));
        let long = "c".repeat(MAX_SUBJECT_CHARS + 1);
        assert_eq!(subject(claims(Some(&long))), Err(Refusal::BadSubject));
    }

    #[test]
    fn a_public_key_that_does_not_parse_is_refused() {
        let error = public_key("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(error.contains("auth.jwt_public_key"), "{error}");
    }
}
