//! Strict request parsing.
//!
//! axum's own `Json` answers some client mistakes in plain text and names no field; this one
//! answers every mistake with an [`ApiError`]: 415 for another content type, 413 over the body
//! limit, 400 for bytes that are not JSON, 422 naming the field for JSON of the wrong shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};

/// The request body limit every service applies (1 MiB).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&request) {
            return Err(ApiError::unsupported_media_type());
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::payload_too_large(BODY_LIMIT_BYTES)
                } else {
                    ApiError::bad_request(rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn is_json(request: &Request) -> bool {
    let Some(content_type) = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses JSON, telling syntax errors (400) from shape errors (422, with the field path). A
/// string or key holding a NUL is a 422 naming it, whatever `T` is (see `crate::nul`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Walked only when the escape is there at all; a body that is not JSON falls through to
    // the parse below, which says so.
    if crate::nul::may_hold_nul(bytes)
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(path) = crate::nul::find_in_json(&value)
    {
        let field = if path == "." { "body".to_owned() } else { path };
        return Err(ApiError::invalid_field(field, crate::nul::NUL_RULE));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                // "." is the document itself; "[0]…" means it was an array, not an object.
                let field = if path == "." || path.starts_with('[') {
                    "body".to_owned()
                } else {
                    path
                };
                ApiError::invalid_field(field, strip_position(&inner.to_string()))
            }
            _ => malformed(&inner),
        }
    })?;
    // Trailing garbage after the document is a syntax error too.
    deserializer.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::malformed_json(format!("the body is not valid JSON: {error}"))
}

/// serde_json appends " at line L column C"; for a field error the path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// What [`parse_uuid`] asks of a UUID parameter.
pub const UUID_RULE: &str = "must be a UUID";

/// Parses a UUID path or query parameter, naming it on failure.
pub fn parse_uuid(field: &str, value: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(value).map_err(|_| ApiError::invalid_field(field, UUID_RULE))
}

/// Collects field errors and turns them into one 422.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn check(&mut self, ok: bool, field: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.add(field, message);
        }
    }

    /// `Ok(value)` when nothing was added, else the 422.
    pub fn finish<T>(self, value: T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

/// What [`check_id`] asks of an identifier.
pub const ID_RULE: &str = "must be 1 to 64 characters long";

/// Whether `value` is an identifier: 1 to 64 characters, no NUL.
pub fn is_id(value: &str) -> bool {
    id_problem(value).is_none()
}

/// What is wrong with `value` as an identifier, if anything.
pub fn id_problem(value: &str) -> Option<&'static str> {
    if !(1..=64).contains(&value.chars().count()) {
        Some(ID_RULE)
    } else if crate::nul::has_nul(value) {
        Some(crate::nul::NUL_RULE)
    } else {
        None
    }
}

/// An identifier of 1 to 64 characters, without NUL.
pub fn check_id(violations: &mut Violations, field: &str, value: &str) {
    if let Some(problem) = id_problem(value) {
        violations.add(field, problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        items: Vec<Item>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Item {
        quantity: i64,
    }

    #[test]
    fn a_shape_error_names_the_field_path() {
        let error =
            parse_json::<Body>(br#"{"items":[{"quantity":1},{"quantity":"x"}]}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.body().details[0].field, "items[1].quantity");
    }

    #[test]
    fn a_nul_anywhere_in_the_body_is_a_422_naming_its_path() {
        let error =
            parse_json::<Body>(br#"{"items":[{"quantity":1,"note":"a\u0000"}]}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.body().details[0].field, "items[0].note");
        assert_eq!(error.body().details[0].message, crate::nul::NUL_RULE);
        let escaped_backslash = parse_json::<serde_json::Value>(br#"{"a":"\\u0000"}"#);
        assert!(
            escaped_backslash.is_ok(),
            "`\\u0000` is a backslash, not a NUL"
        );
        let mut violations = Violations::default();
        check_id(&mut violations, "customer_id", "c\0x");
        check_id(&mut violations, "customer_id", "c\u{0}x");
        let details = violations.finish(()).unwrap_err().body().details;
        assert_eq!(details.len(), 2);
        assert_eq!(details[1].message, crate::nul::NUL_RULE);
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        let error = parse_json::<Body>(br#"{"items": ["#).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error.code(), "malformed_json");
        let error = parse_json::<Body>(br#"{"items": []} trailing"#).unwrap_err();
        assert_eq!(error.code(), "malformed_json");
    }
}
