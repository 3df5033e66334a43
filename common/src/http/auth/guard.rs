//! Route guards over the [`Caller`] the authentication layer found: a handler states what it
//! needs in its signature ([`Operator`], [`CustomerOrOperator`]), and a whole router of operator
//! routes is put behind [`protect`].
//!
//! Answers: no or refused credentials → 401 `unauthorized` with `WWW-Authenticate: Bearer`;
//! a customer on an operator route → 403 `forbidden`; no operator token configured → 403
//! `admin_disabled` on operator routes (a forgotten setting never means open access).

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Caller, Policy, Refusal};
use crate::http::ApiError;

/// The operator, proven by the operator token.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

/// Who may act on a customer's business: the operator, or that customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerOrOperator {
    Operator,
    Customer(String),
}

impl CustomerOrOperator {
    /// The customer an answer must be limited to; `None` for the operator.
    pub fn customer(&self) -> Option<&str> {
        match self {
            Self::Operator => None,
            Self::Customer(id) => Some(id),
        }
    }
}

fn caller(parts: &Parts) -> Caller {
    // Absent only if the layer is not installed: then nobody is anybody.
    parts
        .extensions
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Anonymous)
}

fn policy(parts: &Parts) -> Policy {
    parts.extensions.get::<Policy>().copied().unwrap_or(Policy {
        operator_enabled: false,
    })
}

/// 401 with `WWW-Authenticate: Bearer` (RFC 6750: `error="invalid_token"` for a refused one)
/// and the refusal's reason in the message.
pub fn unauthorized(refusal: Option<Refusal>) -> Response {
    let (message, challenge) = match refusal {
        None => (
            "this route requires `Authorization: Bearer <token>` (the operator token or a \
             customer JWT)"
                .to_owned(),
            HeaderValue::from_static("Bearer"),
        ),
        Some(refusal) => (
            format!("the bearer token was refused: {}", refusal.reason()),
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        ),
    };
    let mut response = ApiError::unauthorized(message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    response
}

/// Why a guard turned a request away; rendered as the answers in the module's notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No or refused credentials: 401.
    Unauthenticated(Option<Refusal>),
    /// A customer on an operator route: 403 `forbidden`.
    NotOperator,
    /// No operator token configured: 403 `admin_disabled`.
    OperatorDisabled,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated(refusal) => unauthorized(refusal),
            Self::NotOperator => ApiError::forbidden(
                "forbidden",
                "this route is the operator's; a customer token does not open it",
            )
            .into_response(),
            Self::OperatorDisabled => ApiError::forbidden(
                "admin_disabled",
                "the operator API is disabled: no operator token is configured \
                 (APP__AUTH__OPERATOR_TOKEN)",
            )
            .into_response(),
        }
    }
}

fn operator_check(parts: &Parts) -> Result<Operator, Denied> {
    match caller(parts) {
        Caller::Operator => Ok(Operator),
        _ if !policy(parts).operator_enabled => Err(Denied::OperatorDisabled),
        Caller::Customer { .. } => Err(Denied::NotOperator),
        Caller::Anonymous | Caller::Refused => Err(Denied::Unauthenticated(
            parts.extensions.get::<Refusal>().copied(),
        )),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        operator_check(parts)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CustomerOrOperator {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match caller(parts) {
            Caller::Operator => Ok(Self::Operator),
            Caller::Customer { id } => Ok(Self::Customer(id)),
            Caller::Anonymous | Caller::Refused => Err(Denied::Unauthenticated(
                parts.extensions.get::<Refusal>().copied(),
            )),
        }
    }
}

/// Puts every route of `routes` behind [`Operator`]. `route_layer`: only matched routes are
/// guarded, so an unknown path is still a plain 404. Document such a route with
/// `security(("operator_token" = []))`.
pub fn protect<S>(routes: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes.route_layer(axum::middleware::from_fn(require_operator))
}

async fn require_operator(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match operator_check(&parts) {
        Ok(Operator) => next.run(Request::from_parts(parts, body)).await,
        Err(denied) => denied.into_response(),
    }
}
