//! Typed query strings.
//!
//! [`Params<T>`] extracts a `T: FromQuery`, which reads its fields one by one from
//! [`QueryFields`]; each bad parameter is recorded, so a request with three mistakes gets one
//! 422 naming all three (serde's derive would stop at the first). [`Limit`] and [`Offset`] are
//! the page-size and position every list shares.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;

use super::error::ApiError;
use super::extract::Violations;

/// A value of one query parameter: parsed from its text, or the message naming what is wrong.
pub trait QueryValue: Sized {
    fn parse_query(text: &str) -> Result<Self, String>;
}

/// A query-string struct that reads its own fields from [`QueryFields`].
pub trait FromQuery: Sized {
    fn from_query(fields: &mut QueryFields) -> Self;
}

/// The parameters of one request, and the mistakes found so far.
#[derive(Debug, Default)]
pub struct QueryFields {
    values: HashMap<String, String>,
    violations: Violations,
}

impl QueryFields {
    /// Reads `pairs` (as sent); a parameter given twice is a 400, as axum's `Query` had it. A
    /// name or value holding a NUL (`%00`) is a 422 naming the parameter, whether or not the
    /// struct reads it.
    pub fn new(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        if let Some((name, _)) = pairs
            .iter()
            .find(|(name, value)| crate::nul::has_nul(name) || crate::nul::has_nul(value))
        {
            return Err(ApiError::invalid_field(
                name.replace('\0', "\\u0000"),
                crate::nul::NUL_RULE,
            ));
        }
        let mut values = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if values.insert(name.clone(), value).is_some() {
                return Err(ApiError::bad_request(format!(
                    "Failed to deserialize query string: duplicate field `{name}`"
                )));
            }
        }
        Ok(Self {
            values,
            violations: Violations::default(),
        })
    }

    /// The parameter `name` parsed; `None` when absent or bad (the mistake is recorded).
    pub fn optional<T: QueryValue>(&mut self, name: &str) -> Option<T> {
        let text = self.values.get(name)?;
        match T::parse_query(text) {
            Ok(value) => Some(value),
            Err(message) => {
                self.violations.add(name, message);
                None
            }
        }
    }

    /// The parameter `name` parsed, or its default when absent or bad.
    pub fn value<T: QueryValue + Default>(&mut self, name: &str) -> T {
        self.optional(name).unwrap_or_default()
    }

    /// Records a mistake the struct finds itself (a rule across fields, say).
    pub fn violations(&mut self) -> &mut Violations {
        &mut self.violations
    }

    /// The parsed struct, or the 422 naming every bad parameter in the order read.
    pub fn finish<T>(self, value: T) -> Result<T, ApiError> {
        self.violations.finish(value)
    }
}

/// The extractor: `Params(query): Params<ListQuery>`.
#[derive(Debug, Clone)]
pub struct Params<T>(pub T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: FromQuery,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        parse(pairs).map(Params)
    }
}

/// Parses `pairs` into a `T`, as the extractor does.
pub fn parse<T: FromQuery>(pairs: Vec<(String, String)>) -> Result<T, ApiError> {
    let mut fields = QueryFields::new(pairs)?;
    let value = T::from_query(&mut fields);
    fields.finish(value)
}

/// A whole number in `min..=max`.
fn whole_number(text: &str, min: u32, max: u32) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
}

/// Items per page: 1 to `MAX`, `DEFAULT` when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit<const DEFAULT: u32, const MAX: u32>(u32);

impl<const DEFAULT: u32, const MAX: u32> Limit<DEFAULT, MAX> {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<const DEFAULT: u32, const MAX: u32> Default for Limit<DEFAULT, MAX> {
    fn default() -> Self {
        Self(DEFAULT)
    }
}

impl<const DEFAULT: u32, const MAX: u32> QueryValue for Limit<DEFAULT, MAX> {
    fn parse_query(text: &str) -> Result<Self, String> {
        whole_number(text, 1, MAX).map(Self)
    }
}

/// Position of the first item of a page (0 = the first); 0 when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offset(pub u32);

impl QueryValue for Offset {
    fn parse_query(text: &str) -> Result<Self, String> {
        whole_number(text, 0, u32::MAX).map(Self)
    }
}

impl QueryValue for bool {
    fn parse_query(text: &str) -> Result<Self, String> {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("must be true or false".into()),
        }
    }
}

/// An identifier of 1 to 64 characters (a customer's, a product's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(pub String);

impl QueryValue for Id {
    fn parse_query(text: &str) -> Result<Self, String> {
        match super::extract::id_problem(text) {
            None => Ok(Self(text.to_owned())),
            Some(problem) => Err(problem.into()),
        }
    }
}

impl QueryValue for uuid::Uuid {
    fn parse_query(text: &str) -> Result<Self, String> {
        uuid::Uuid::parse_str(text).map_err(|_| super::extract::UUID_RULE.into())
    }
}

/// `?order_id=`, the filter of the participants' lists: the rows of one order, or without it
/// the newest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderFilter {
    /// Only this order's (UUID). Without it: the 100 newest.
    pub order_id: Option<uuid::Uuid>,
}

impl FromQuery for OrderFilter {
    fn from_query(fields: &mut QueryFields) -> Self {
        Self {
            order_id: fields.optional("order_id"),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Page {
        stuck: Option<bool>,
        limit: Limit<20, 100>,
        offset: Offset,
    }

    impl FromQuery for Page {
        fn from_query(fields: &mut QueryFields) -> Self {
            Self {
                stuck: fields.optional("stuck"),
                limit: fields.value("limit"),
                offset: fields.value("offset"),
            }
        }
    }

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn absent_parameters_take_their_defaults() {
        let page: Page = parse(pairs("")).unwrap();
        assert_eq!(page.limit.get(), 20);
        assert_eq!(page.offset, Offset(0));
        assert_eq!(page.stuck, None);
        let page: Page = parse(pairs("limit=100&offset=7&stuck=true")).unwrap();
        assert_eq!(
            (page.limit.get(), page.offset, page.stuck),
            (100, Offset(7), Some(true))
        );
    }

    #[test]
    fn every_bad_parameter_is_named_in_the_order_read() {
        let error = parse::<Page>(pairs("offset=-1&limit=101&stuck=maybe")).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = error.body();
        let fields: Vec<_> = body.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["stuck", "limit", "offset"]);
        assert_eq!(
            body.details[1].message,
            "must be a whole number from 1 to 100"
        );
        assert_eq!(
            parse::<Page>(pairs("limit=0")).unwrap_err().body().details[0].field,
            "limit"
        );
    }

    #[test]
    fn an_order_filter_names_an_order_id_that_is_not_a_uuid() {
        let id = uuid::Uuid::now_v7();
        let filter: OrderFilter = parse(pairs(&format!("order_id={id}"))).unwrap();
        assert_eq!(filter.order_id, Some(id));
        assert_eq!(parse::<OrderFilter>(pairs("")).unwrap().order_id, None);
        let body = parse::<OrderFilter>(pairs("order_id=x"))
            .unwrap_err()
            .body();
        assert_eq!(
            (
                body.details[0].field.as_str(),
                body.details[0].message.as_str()
            ),
            ("order_id", "must be a UUID")
        );
    }

    #[test]
    fn a_nul_in_any_parameter_is_named() {
        let error = parse::<Page>(pairs(
            "limit=1&customer_id=c%00x".replace("%00", "\0").as_str(),
        ))
        .unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.body().details[0].field, "customer_id");
        assert_eq!(Id::parse_query("c\0x"), Err(crate::nul::NUL_RULE.into()));
    }

    #[test]
    fn a_parameter_given_twice_is_a_bad_request() {
        let error = parse::<Page>(pairs("limit=1&limit=2")).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }
}
