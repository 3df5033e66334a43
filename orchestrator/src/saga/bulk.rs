//! Bulk repair (`POST /api/sagas/bulk/retry`, `/bulk/compensate`): the sagas a
//! [`SagaFilter`](super::search::SagaFilter) selects, retried or compensated one by one through
//! the single-saga path ([`api::apply`]), so the same rules hold (a final saga is skipped). A dry
//! run only counts and names them. A real run needs a filter: an empty one would select every
//! saga. Each action is logged at info with the operator's request (correlation) id.

use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use saga_common::http::query::{self, FromQuery};
use saga_common::http::{ApiError, CorrelationId, ErrorBody, JsonBody};

use super::api::{self, Action};
use super::search::SagaFilter;
use super::store;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/sagas/bulk/retry", post(bulk_retry))
        .route("/api/sagas/bulk/compensate", post(bulk_compensate))
        .with_state(state)
}

/// Counting the matches stops here: a dry run over millions of sagas still answers at once.
pub const COUNT_CAP: u64 = 10_000;

/// The fields of `GET /api/sagas`'s query, except `cursor` and `limit`, with the same rules.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterRequest {
    pub state: Option<String>,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub customer_id: Option<String>,
    /// A duration: `10m`, `2h`, `7d`.
    pub older_than: Option<String>,
    pub overdue: Option<bool>,
    /// An order id or a correlation id.
    pub q: Option<String>,
}

impl FilterRequest {
    /// Read as the list reads its query, so the two agree on every rule and message.
    fn parse(self) -> Result<SagaFilter, ApiError> {
        let pairs = [
            ("state", self.state),
            ("status", self.status),
            ("reason", self.reason),
            ("customer_id", self.customer_id),
            ("older_than", self.older_than),
            ("overdue", self.overdue.map(|b| b.to_string())),
            ("q", self.q),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
        .collect();
        query::parse::<Filter>(pairs).map(|f| f.0)
    }
}

struct Filter(SagaFilter);

impl FromQuery for Filter {
    fn from_query(fields: &mut query::QueryFields) -> Self {
        Self(SagaFilter::from_query(fields))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"filter": {"overdue": true, "state": "AWAITING_PAYMENT"}, "dry_run": true, "limit": 100}))]
pub struct BulkRequest {
    #[serde(default)]
    pub filter: FilterRequest,
    /// `true` (the default): only count and name the matching sagas; nothing changes.
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Sagas acted on (or named) at most, newest first: 1 to 1000; default 100.
    pub limit: Option<u32>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Skipped,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    pub order_id: Uuid,
    pub outcome: Outcome,
    /// Why it was skipped (the single-saga endpoint's refusal); null when done.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkReport {
    pub dry_run: bool,
    /// Sagas the filter selects, counted up to 10,000.
    pub matched: u64,
    /// Whether counting stopped at 10,000 (there may be more).
    pub matched_capped: bool,
    /// The matching sagas acted on (or, in a dry run, that would be), newest first, at most `limit`.
    pub order_ids: Vec<Uuid>,
    /// Per saga, in `order_ids`' order; empty in a dry run.
    pub results: Vec<BulkResult>,
    pub done: usize,
    pub skipped: usize,
}

/// Retries every saga the filter selects (up to `limit`), as `POST /api/sagas/{id}/retry` would.
#[utoipa::path(post, path = "/api/sagas/bulk/retry", tag = "operations",
    request_body = BulkRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "What matched and, unless a dry run, what was done", body = BulkReport),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "A bad field (named in `details`), or a real run without a filter (`filter_required`)", body = ErrorBody),
    ))]
pub async fn bulk_retry(
    State(state): State<AppState>,
    Extension(request): Extension<CorrelationId>,
    JsonBody(body): JsonBody<BulkRequest>,
) -> Result<Json<BulkReport>, ApiError> {
    bulk(&state, &request, body, Action::Retry).await
}

/// Compensates every saga the filter selects (up to `limit`), as
/// `POST /api/sagas/{id}/compensate` would.
#[utoipa::path(post, path = "/api/sagas/bulk/compensate", tag = "operations",
    request_body = BulkRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "What matched and, unless a dry run, what was done", body = BulkReport),
        (status = 401, description = "Missing or refused bearer token (`WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A customer token (`forbidden`), or no operator token configured (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "A bad field (named in `details`), or a real run without a filter (`filter_required`)", body = ErrorBody),
    ))]
pub async fn bulk_compensate(
    State(state): State<AppState>,
    Extension(request): Extension<CorrelationId>,
    JsonBody(body): JsonBody<BulkRequest>,
) -> Result<Json<BulkReport>, ApiError> {
    bulk(&state, &request, body, Action::Compensate).await
}

async fn bulk(
    state: &AppState,
    request: &CorrelationId,
    body: BulkRequest,
    action: Action,
) -> Result<Json<BulkReport>, ApiError> {
    let limit = body.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            "must be a whole number from 1 to 1000",
        ));
    }
    let filter = body.filter.parse()?;
    if !body.dry_run && filter.is_empty() {
        return Err(ApiError::unprocessable(
            "filter_required",
            "a real run needs a filter: an empty one would select every saga",
        ));
    }
    let matched = store::count(&state.db, &filter, COUNT_CAP + 1).await?;
    let sagas = store::search(&state.db, &filter, None, limit.into()).await?;
    let order_ids: Vec<Uuid> = sagas.iter().map(|s| s.order_id).collect();
    let mut results = Vec::new();
    if !body.dry_run {
        for &order_id in &order_ids {
            // One saga at a time, each in its own transaction: one refused saga (final, or
            // moved meanwhile) skips that one only.
            let (outcome, reason) = match api::apply(state, order_id, action).await {
                Ok(_) => (Outcome::Done, None),
                Err(error) => (Outcome::Skipped, Some(error.body().message)),
            };
            tracing::info!(
                request_id = %request.0,
                %order_id,
                action = action.kind(),
                ?outcome,
                reason = reason.as_deref().unwrap_or_default(),
                "bulk saga repair"
            );
            results.push(BulkResult {
                order_id,
                outcome,
                reason,
            });
        }
    }
    let done = results
        .iter()
        .filter(|r| r.outcome == Outcome::Done)
        .count();
    Ok(Json(BulkReport {
        dry_run: body.dry_run,
        matched: matched.min(COUNT_CAP),
        matched_capped: matched > COUNT_CAP,
        order_ids,
        skipped: results.len() - done,
        results,
        done,
    }))
}
