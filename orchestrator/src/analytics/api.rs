//! `GET /api/analytics/summary`: the query (`from`, `to` in RFC 3339) and the handler. The route
//! sits behind the operator token (`saga_common::http::auth::protect`).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use utoipa::IntoParams;

use saga_common::http::query::{FromQuery, Params, QueryFields, QueryValue};
use saga_common::http::{ApiError, ErrorBody};

use super::summary::{self, Range, Summary};
use crate::state::AppState;

/// A date and time in RFC 3339 (`2026-12-07T00:00:00Z`; a `+` offset sent as `%2B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant(pub DateTime<Utc>);

impl QueryValue for Instant {
    fn parse_query(text: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(text)
            .map(|at| Self(at.to_utc()))
            .map_err(|_| "must be a date and time in RFC 3339, such as 2026-12-07T00:00:00Z".into())
    }
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Start of the range (RFC 3339), rounded down to the minute. Default: the start of today
    /// (UTC), or a day before `to`.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<Instant>,
    /// End of the range (RFC 3339, exclusive), rounded up to the minute; after `from`, at most
    /// 31 days after it. Default: a day after `from`.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<Instant>,
    /// The range both make, once checked.
    #[param(ignore)]
    pub range: Option<Range>,
}

impl FromQuery for SummaryQuery {
    fn from_query(fields: &mut QueryFields) -> Self {
        let from: Option<Instant> = fields.optional("from");
        let to: Option<Instant> = fields.optional("to");
        let range = match Range::new(from.map(|f| f.0), to.map(|t| t.0), Utc::now()) {
            Ok(range) => Some(range),
            Err(error) => {
                fields.violations().add(error.field, error.message);
                None
            }
        };
        Self { from, to, range }
    }
}

/// Sales over a range of minutes: orders placed, completed and failed by reason, success rate,
/// revenue, saga durations (mean, 95th percentile, histogram), orders per minute and the top
/// products. Read from per-minute rollups, never from the orders (docs/analytics.md).
#[utoipa::path(get, path = "/api/analytics/summary", tag = "analytics", params(SummaryQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The summary of the range", body = Summary),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "A bad `from` or `to`, `to` not after `from`, or a range over 31 days", body = ErrorBody),
    ))]
pub async fn get_summary(
    State(state): State<AppState>,
    Params(query): Params<SummaryQuery>,
) -> Result<Json<Summary>, ApiError> {
    // A bad parameter of either kind was a 422 already; without one the range was made.
    let range = query
        .range
        .ok_or_else(|| ApiError::invalid_field("from", "no range"))?;
    Ok(Json(summary::read(&state.db, &range).await?))
}
