//! Who is calling: the operator (bearer operator token) or a customer (bearer JWT).
//!
//! The authentication layer ([`middleware`], applied to every route by
//! `server::finish`) classifies every request into a [`Caller`] and puts it into the request's
//! extensions; it never refuses by itself. Route guards ([`guard`]) turn a `Caller` into
//! 401/403, and the rate limiter keys on it.
//!
//! - [`jwt`]: customer tokens: which key verifies which algorithm, and why one is refused.
//! - [`jwks`]: an identity provider's keys, cached by `kid` and refreshed.
//! - [`guard`]: the `Operator` and `CustomerOrOperator` extractors and [`guard::protect`].
//! - [`docs`]: the two OpenAPI security schemes.
//!
//! See `docs/security.md` for who may call what.

pub mod docs;
pub mod guard;
pub mod jwks;
pub mod jwt;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};

use crate::configuration::ServiceSettings;
pub use guard::{CustomerOrOperator, Operator, protect};
pub use jwt::{KeyError, Refusal};

/// What the credentials of one request proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator token: may do everything.
    Operator,
    /// A verified customer JWT; `id` is its `sub`.
    Customer { id: String },
    /// No `Authorization` header.
    Anonymous,
    /// An `Authorization` header that proved nothing (malformed, badly signed, expired, wrong
    /// audience...): a guarded route answers 401. The [`Refusal`] beside it in the extensions
    /// says why.
    Refused,
}

/// What the guards need to know of the configuration, put beside the [`Caller`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// An operator token is configured (or checking is disabled): without one the operator
    /// routes answer 403 `admin_disabled`, never open.
    pub operator_enabled: bool,
}

/// Classifies requests; built once at start from `auth.*`.
#[derive(Clone)]
pub struct Authenticator(Arc<Inner>);

struct Inner {
    operator_token: SecretString,
    verifier: jwt::Verifier,
    disabled: bool,
}

impl Authenticator {
    /// Builds the keys (fetching the JWKS once) and logs what the settings imply. A public key
    /// that does not parse, a JWKS URL that is not http(s), or a JWKS CA file that cannot be
    /// read, is an error.
    pub async fn from_settings(settings: &ServiceSettings) -> Result<Self, KeyError> {
        let auth = &settings.auth;
        let operator_token =
            if auth.operator_token.expose_secret().is_empty() && settings.admin.enabled() {
                tracing::warn!(
                    "APP__ADMIN__TOKEN (admin.token) is deprecated and will be removed in the next \
                 release: set APP__AUTH__OPERATOR_TOKEN (auth.operator_token) instead"
                );
                settings.admin.token.clone()
            } else {
                auth.operator_token.clone()
            };
        let token_chars = operator_token.expose_secret().chars().count();
        if auth.disabled {
            tracing::warn!(
                "auth.disabled is set: every request is treated as the operator's; never do \
                 this outside a local experiment"
            );
        } else if token_chars == 0 {
            tracing::warn!(
                "no auth.operator_token configured (APP__AUTH__OPERATOR_TOKEN): the operator \
                 routes answer 403"
            );
        } else if token_chars < 16 {
            tracing::warn!(
                "auth.operator_token is shorter than 16 characters; use a long random token"
            );
        }
        for (name, secret) in [
            ("auth.jwt_secret", &auth.jwt_secret),
            ("auth.jwt_previous_secret", &auth.jwt_previous_secret),
        ] {
            let bytes = secret.expose_secret().len();
            if (1..32).contains(&bytes) {
                tracing::warn!("{name} is shorter than 32 bytes; HS256 wants a long random secret");
            }
        }
        let ca_file = auth.jwks_ca_file.as_deref().map(str::trim);
        let ca_file = ca_file.filter(|path| !path.is_empty());
        let jwks = match auth.jwks_url.as_deref().map(str::trim) {
            None | Some("") => {
                if ca_file.is_some() {
                    tracing::warn!("auth.jwks_ca_file is not used: no auth.jwks_url is set");
                }
                None
            }
            Some(url) => Some(jwks::Jwks::start(url, ca_file).await?),
        };
        let verifier = jwt::Verifier::new(auth, jwks)?;
        if !verifier.accepts_customers() && !auth.disabled {
            tracing::warn!(
                "no customer key configured (auth.jwt_secret, auth.jwt_public_key or \
                 auth.jwks_url): customer routes accept only the operator"
            );
        }
        Ok(Self(Arc::new(Inner {
            operator_token,
            verifier,
            disabled: auth.disabled,
        })))
    }

    pub fn policy(&self) -> Policy {
        Policy {
            operator_enabled: self.0.disabled || !self.0.operator_token.expose_secret().is_empty(),
        }
    }

    /// Who the headers prove the caller to be, and why a bearer was refused.
    pub async fn classify(&self, headers: &HeaderMap) -> (Caller, Option<Refusal>) {
        if self.0.disabled {
            return (Caller::Operator, None);
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return (Caller::Anonymous, None);
        };
        let Some(token) = value.to_str().ok().and_then(bearer) else {
            return (Caller::Refused, Some(Refusal::Malformed));
        };
        let configured = self.0.operator_token.expose_secret();
        if !configured.is_empty() && same_token(configured.as_bytes(), token.as_bytes()) {
            return (Caller::Operator, None);
        }
        if !self.0.verifier.accepts_customers() {
            return (Caller::Refused, Some(Refusal::UnknownToken));
        }
        match self.0.verifier.verify(token).await {
            Ok(id) => (Caller::Customer { id }, None),
            Err(refusal) => (Caller::Refused, Some(refusal)),
        }
    }
}

/// The layer every route sits behind (see the module's notes):
/// `from_fn_with_state(authenticator, auth::middleware)`.
pub async fn middleware(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    let (caller, refusal) = auth.classify(request.headers()).await;
    if let Some(refusal) = refusal {
        tracing::debug!(reason = refusal.reason(), "bearer refused");
        request.extensions_mut().insert(refusal);
    }
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(auth.policy());
    next.run(request).await
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Compares every byte of the configured token whatever the given one holds, so the time taken
/// depends only on the configured token's length, never on how much of it a guess got right.
fn same_token(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = expected.len() ^ given.len();
    for (index, byte) in expected.iter().enumerate() {
        let other = given.get(index).copied().unwrap_or(!*byte);
        difference |= usize::from(byte ^ other);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_token(b"s3cret-token", b"s3cret-token"));
        assert!(!same_token(b"s3cret-token", b"s3cret-tokeN"));
        assert!(!same_token(b"s3cret-token", b"s3cret"));
        assert!(!same_token(b"s3cret", b"s3cret-token"));
        assert!(!same_token(b"abc", b""));
    }

    #[test]
    fn only_a_bearer_authorization_yields_a_token() {
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
