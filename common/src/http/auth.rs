//! Who is calling: the operator (bearer operator token) or a customer (bearer JWT).
//!
//! The authentication layer classifies every request into a [`Caller`] and puts it into the
//! request's extensions; it never refuses by itself. Route guards turn a `Caller` into 401/403,
//! and the rate limiter keys on it.

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
    /// audience...): a guarded route answers 401.
    Refused,
}
