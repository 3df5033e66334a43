//! The HTTP edge shared by every service.
//!
//! - [`error`]: `ApiError`, the one error type handlers return, rendered as
//!   `{"error", "message", "details"}`.
//! - [`extract`]: a strict JSON body extractor (415, 400, 413, 422 naming the field) and
//!   parameter parsing helpers.
//! - [`query`]: typed query strings (`Params<T>`), one 422 naming every bad parameter;
//!   the shared `Limit`, `Offset` and `OrderFilter`.
//! - [`correlation`]: `X-Correlation-Id` in, out, and on every log line of the request.
//! - [`health`]: `/health/live` and `/health/ready`.
//! - [`keyed`]: `GET`/`PUT` of rows kept under an id the client chooses.
//! - [`auth`]: who is calling ([`auth::Caller`]): the authentication layer, customer JWTs and
//!   JWKS, the `Operator` / `CustomerOrOperator` guards and the OpenAPI bearer schemes.
//! - [`rate_limit`]: requests per customer / per client address; `429 rate_limited`.
//! - [`admin`]: `/api/admin/dead-letters` (list, replay, delete), for the operator.
//! - [`retention`]: `POST /api/admin/retention/prune` (run the pruner now, or a dry run).
//! - [`server`]: router finishing touches (fallbacks, body limit, authentication, Swagger UI)
//!   and serving.

pub mod admin;
pub mod auth;
pub mod correlation;
pub mod error;
pub mod extract;
pub mod health;
pub mod keyed;
pub mod query;
pub mod rate_limit;
pub mod retention;
pub mod server;

pub use correlation::CorrelationId;
pub use error::{ApiError, ErrorBody, FieldError};
pub use extract::JsonBody;
