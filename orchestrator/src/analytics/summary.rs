//! The summary of a time range, read from the sales rollups (`saga::rollup`), never from
//! `orders`: three statements on one snapshot, however many orders the range holds: the totals
//! of the minutes, the minutes' rows for the series (one per minute once
//! [`fold`](super::fold)ed, at most 31 × 1,440), and the products' hours. The rates, the
//! percentile and the series with its zeros are worked out here.

use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DbErr, IsolationLevel, Statement,
    TransactionTrait, Value,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::saga::rollup::{
    DURATION_BOUNDS_MS, DURATION_BUCKETS, FAILURE_COLUMNS, ORDER_MINUTES, PRODUCT_HOURS,
    bucket_column, minute_counters,
};

/// The longest range a summary covers.
pub const MAX_DAYS: i64 = 31;
/// Products in each ranking.
pub const TOP: i64 = 10;

/// A range of whole UTC minutes, at most [`MAX_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The first minute counted.
    pub from: DateTime<Utc>,
    /// The end of the last minute counted (exclusive).
    pub to: DateTime<Utc>,
}

/// What is wrong with a requested range: the parameter at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError {
    pub field: &'static str,
    pub message: String,
}

impl Range {
    /// Every minute `[from, to)` touches: `from` rounded down, `to` up. Without `from`, the day
    /// (UTC) of `now`, or the day before `to`; without `to`, the day after `from`.
    pub fn new(
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self, RangeError> {
        let day = Duration::days(1);
        let out_of_range = |field| RangeError {
            field,
            message: "is out of range".into(),
        };
        let (from, to) = match (from, to) {
            (Some(from), Some(to)) => (from, to),
            (Some(from), None) => (
                from,
                from.checked_add_signed(day).ok_or(out_of_range("from"))?,
            ),
            (None, Some(to)) => (to.checked_sub_signed(day).ok_or(out_of_range("to"))?, to),
            (None, None) => {
                let today = now.duration_trunc(day).map_err(|_| out_of_range("from"))?;
                (today, today + day)
            }
        };
        if to <= from {
            return Err(RangeError {
                field: "to",
                message: "must be after from".into(),
            });
        }
        let minute = Duration::minutes(1);
        let from = from
            .duration_trunc(minute)
            .map_err(|_| out_of_range("from"))?;
        let rounded = to.duration_trunc(minute).map_err(|_| out_of_range("to"))?;
        let to = if rounded < to {
            rounded
                .checked_add_signed(minute)
                .ok_or(out_of_range("to"))?
        } else {
            rounded
        };
        if to - from > Duration::days(MAX_DAYS) {
            return Err(RangeError {
                field: "to",
                message: format!("must be at most {MAX_DAYS} days after from"),
            });
        }
        Ok(Self { from, to })
    }

    /// The hours the range touches: the products' rollup is kept per hour.
    pub fn hours(&self) -> Self {
        let hour = Duration::hours(1);
        let from = self.from.duration_trunc(hour).unwrap_or(self.from);
        let rounded = self.to.duration_trunc(hour).unwrap_or(self.to);
        let to = if rounded < self.to {
            rounded + hour
        } else {
            rounded
        };
        Self { from, to }
    }
}

/// Orders that failed, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Failed {
    pub payment_declined: i64,
    pub out_of_stock: i64,
    pub timed_out: i64,
}

impl Failed {
    pub fn total(&self) -> i64 {
        self.payment_declined + self.out_of_stock + self.timed_out
    }
}

/// Orders per minute: entry `i` of each list is the minute `i` minutes after the range's `from`
/// (UTC), every minute of the range, zeros included. Lists rather than an object per minute: a
/// month is 44,640 minutes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Series {
    /// Orders placed in each minute.
    pub placed: Vec<i64>,
    /// Sagas that ended completed in each minute.
    pub completed: Vec<i64>,
    /// Sagas that ended failed (any reason) in each minute.
    pub failed: Vec<i64>,
}

/// A bucket of the duration histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Bucket {
    /// Sagas that took less than this many milliseconds (and at least the bucket before's
    /// bound); `null` for the last bucket, 600 000 ms and more.
    pub below_ms: Option<i64>,
    pub count: i64,
}

/// A product's sales in completed orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProductSales {
    pub product_id: String,
    pub quantity: i64,
    pub revenue_cents: i64,
}

/// What `GET /api/analytics/summary` answers.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Summary {
    /// The minutes counted: `from` rounded down to the minute, `to` rounded up (exclusive).
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Orders placed in the range (accepted with `202`).
    pub placed: i64,
    /// Sagas that ended in the range: completed, failed by reason, and the two together.
    pub completed: i64,
    pub failed: Failed,
    pub ended: i64,
    /// `completed / ended`, from 0 to 1; `null` when none ended.
    pub success_rate: Option<f64>,
    /// The totals of the orders completed in the range, in cents.
    pub revenue_cents: i64,
    /// From placing to the end, over the sagas that ended in the range; `null` when none did.
    pub mean_duration_ms: Option<f64>,
    /// The bound of the first bucket at which the buckets counted so far reach 95 % of the
    /// sagas ended: 95 % took less. `null` when none ended, or when that is the last bucket.
    pub p95_duration_ms: Option<i64>,
    pub duration_buckets: Vec<Bucket>,
    pub orders_per_minute: Series,
    /// The hours the product rankings cover: every hour the range touches (the products'
    /// rollup is kept per hour). On whole hours (the default, a day) it is the range itself.
    pub products_from: DateTime<Utc>,
    pub products_to: DateTime<Utc>,
    /// The products of completed orders with the most units sold, then the most revenue, at
    /// most 10 each; ties by product id.
    pub top_products_by_quantity: Vec<ProductSales>,
    pub top_products_by_revenue: Vec<ProductSales>,
}

/// The counters of the whole range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counts {
    placed: i64,
    completed: i64,
    failed: Failed,
    revenue_cents: i64,
    duration_ms_sum: i64,
    buckets: [i64; DURATION_BUCKETS],
}

/// One row of `order_minutes`, as the series needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MinuteRow {
    minute: DateTime<Utc>,
    placed: i64,
    completed: i64,
    failed: i64,
}

fn statement(sql: String, range: Range) -> Statement {
    Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        sql,
        [Value::from(range.from), Value::from(range.to)],
    )
}

/// The three statements a summary runs: the totals, the rows of each minute, the products.
/// Public so that a test can ask PostgreSQL how it runs them. The minutes' rows are added up
/// here rather than grouped in SQL: a group per minute costs PostgreSQL more than the sums.
pub fn statements(range: &Range) -> [Statement; 3] {
    let sums: Vec<String> = minute_counters()
        .iter()
        .map(|c| format!("coalesce(sum({c}), 0)::bigint AS {c}"))
        .collect();
    let totals = format!(
        "SELECT {} FROM {ORDER_MINUTES} WHERE minute >= $1 AND minute < $2",
        sums.join(", ")
    );
    let failed = FAILURE_COLUMNS.map(|(_, column)| column).join(" + ");
    let minutes = format!(
        "SELECT minute, placed, completed, {failed} AS failed FROM {ORDER_MINUTES} \
         WHERE minute >= $1 AND minute < $2 ORDER BY minute"
    );
    let products = format!(
        "WITH p AS (SELECT product_id, sum(quantity)::bigint AS quantity, \
           sum(revenue_cents)::bigint AS revenue_cents FROM {PRODUCT_HOURS} \
           WHERE hour >= $1 AND hour < $2 GROUP BY product_id) \
         (SELECT 'quantity' AS ranking, * FROM p ORDER BY quantity DESC, product_id LIMIT {TOP}) \
         UNION ALL \
         (SELECT 'revenue', * FROM p ORDER BY revenue_cents DESC, product_id LIMIT {TOP})"
    );
    [
        statement(totals, *range),
        statement(minutes, *range),
        statement(products, range.hours()),
    ]
}

/// Reads the summary of `range`, every statement on one snapshot.
pub async fn read(db: &DatabaseConnection, range: &Range) -> Result<Summary, DbErr> {
    let txn = db
        .begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await?;
    let [totals, minutes, products] = statements(range);
    let totals = txn
        .query_one_raw(totals)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the totals of a summary".into()))?;
    let minute_rows = txn.query_all_raw(minutes).await?;
    let product_rows = txn.query_all_raw(products).await?;
    txn.commit().await?;

    let mut counts = Counts {
        placed: totals.try_get("", "placed")?,
        completed: totals.try_get("", "completed")?,
        revenue_cents: totals.try_get("", "revenue_cents")?,
        duration_ms_sum: totals.try_get("", "duration_ms_sum")?,
        failed: Failed {
            payment_declined: totals.try_get("", "failed_payment_declined")?,
            out_of_stock: totals.try_get("", "failed_out_of_stock")?,
            timed_out: totals.try_get("", "failed_timed_out")?,
        },
        ..Counts::default()
    };
    for (i, count) in counts.buckets.iter_mut().enumerate() {
        *count = totals.try_get("", &bucket_column(i))?;
    }
    let mut minutes = Vec::with_capacity(minute_rows.len());
    for row in minute_rows {
        minutes.push(MinuteRow {
            minute: row.try_get_by_index(0)?,
            placed: row.try_get_by_index(1)?,
            completed: row.try_get_by_index(2)?,
            failed: row.try_get_by_index(3)?,
        });
    }
    let mut by_quantity = Vec::new();
    let mut by_revenue = Vec::new();
    for row in product_rows {
        let sales = ProductSales {
            product_id: row.try_get("", "product_id")?,
            quantity: row.try_get("", "quantity")?,
            revenue_cents: row.try_get("", "revenue_cents")?,
        };
        match row.try_get::<String>("", "ranking")?.as_str() {
            "quantity" => by_quantity.push(sales),
            _ => by_revenue.push(sales),
        }
    }
    Ok(summarise(range, &counts, &minutes, by_quantity, by_revenue))
}

/// Every minute of `range` from the rows of `minutes` (oldest first; a minute not yet folded
/// has a row per shard).
fn series(range: &Range, minutes: &[MinuteRow]) -> Series {
    let mut series = Series::default();
    let mut rows = minutes.iter().peekable();
    let mut minute = range.from;
    while minute < range.to {
        let (mut placed, mut completed, mut failed) = (0, 0, 0);
        while let Some(row) = rows.next_if(|row| row.minute <= minute) {
            if row.minute == minute {
                placed += row.placed;
                completed += row.completed;
                failed += row.failed;
            }
        }
        series.placed.push(placed);
        series.completed.push(completed);
        series.failed.push(failed);
        minute += Duration::minutes(1);
    }
    series
}

/// The summary of `range` from its totals, its minutes' rows and its products.
fn summarise(
    range: &Range,
    total: &Counts,
    minutes: &[MinuteRow],
    by_quantity: Vec<ProductSales>,
    by_revenue: Vec<ProductSales>,
) -> Summary {
    let ended = total.completed + total.failed.total();
    let ratio = |part: i64| (ended > 0).then(|| part as f64 / ended as f64);
    let hours = range.hours();
    Summary {
        from: range.from,
        to: range.to,
        placed: total.placed,
        completed: total.completed,
        failed: total.failed,
        ended,
        success_rate: ratio(total.completed),
        revenue_cents: total.revenue_cents,
        mean_duration_ms: ratio(total.duration_ms_sum),
        p95_duration_ms: percentile_ms(&total.buckets, 95),
        duration_buckets: total
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &count)| Bucket {
                below_ms: DURATION_BOUNDS_MS.get(i).copied(),
                count,
            })
            .collect(),
        orders_per_minute: series(range, minutes),
        products_from: hours.from,
        products_to: hours.to,
        top_products_by_quantity: by_quantity,
        top_products_by_revenue: by_revenue,
    }
}

/// The duration `percent` % of the sagas counted in `buckets` (the rollup's histogram) took less
/// than: the bound of the bucket where the running count reaches `percent` %. `None` when the
/// buckets are empty or that is the last, open bucket. The summary's p95 and the console's
/// p50/p99.
pub fn percentile_ms(buckets: &[i64], percent: i64) -> Option<i64> {
    percentile_bucket(buckets, percent).and_then(|i| DURATION_BOUNDS_MS.get(i).copied())
}

/// The first bucket at which the counts so far reach `percent` % of all; `None` when empty.
pub fn percentile_bucket(counts: &[i64], percent: i64) -> Option<usize> {
    let all: i64 = counts.iter().sum();
    if all == 0 {
        return None;
    }
    let mut so_far = 0;
    counts.iter().position(|&count| {
        so_far += count;
        so_far * 100 >= all * percent
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn the_range_covers_every_minute_it_touches() {
        let range = Range::new(
            Some(at("2026-12-07T10:00:30Z")),
            Some(at("2026-12-07T10:02:10Z")),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(range.from, at("2026-12-07T10:00:00Z"));
        assert_eq!(range.to, at("2026-12-07T10:03:00Z"));
        assert_eq!(
            range.hours(),
            Range {
                from: at("2026-12-07T10:00:00Z"),
                to: at("2026-12-07T11:00:00Z")
            }
        );
    }

    #[test]
    fn without_bounds_the_range_is_the_day_utc() {
        let range = Range::new(None, None, at("2026-12-07T15:16:17Z")).unwrap();
        assert_eq!(range.from, at("2026-12-07T00:00:00Z"));
        assert_eq!(range.to, at("2026-12-08T00:00:00Z"));
        let only_to = Range::new(None, Some(at("2026-12-07T12:00:00Z")), Utc::now()).unwrap();
        assert_eq!(only_to.from, at("2026-12-06T12:00:00Z"));
    }

    #[test]
    fn an_empty_backwards_or_too_long_range_is_refused_naming_to() {
        let from = at("2026-12-07T10:00:00Z");
        for to in [from, from - Duration::minutes(1), from + Duration::days(32)] {
            let error = Range::new(Some(from), Some(to), Utc::now()).unwrap_err();
            assert_eq!(error.field, "to");
        }
        assert!(Range::new(Some(from), Some(from + Duration::days(31)), Utc::now()).is_ok());
    }

    #[test]
    fn the_95th_percentile_is_the_bucket_where_the_running_count_reaches_95_percent() {
        assert_eq!(percentile_bucket(&[0, 0, 0], 95), None);
        assert_eq!(percentile_bucket(&[95, 5, 0], 95), Some(0));
        assert_eq!(percentile_bucket(&[94, 6, 0], 95), Some(1));
        assert_eq!(percentile_bucket(&[0, 19, 1], 95), Some(1));
        assert_eq!(percentile_bucket(&[0, 18, 2], 95), Some(2));
        let mut buckets = [0; DURATION_BUCKETS];
        assert_eq!(percentile_ms(&buckets, 50), None);
        buckets[1] = 50;
        buckets[DURATION_BUCKETS - 1] = 50;
        assert_eq!(percentile_ms(&buckets, 50), Some(DURATION_BOUNDS_MS[1]));
        assert_eq!(percentile_ms(&buckets, 99), None, "the last bucket is open");
    }

    #[test]
    fn the_series_has_every_minute_with_zeros_and_adds_up_the_shards() {
        let range = Range::new(
            Some(at("2026-12-07T10:00:00Z")),
            Some(at("2026-12-07T10:04:00Z")),
            Utc::now(),
        )
        .unwrap();
        let row = |minute: &str, placed, failed| MinuteRow {
            minute: at(minute),
            placed,
            completed: 0,
            failed,
        };
        let minutes = [
            row("2026-12-07T09:59:00Z", 7, 0),
            row("2026-12-07T10:01:00Z", 2, 1),
            row("2026-12-07T10:01:00Z", 1, 0),
            row("2026-12-07T10:03:00Z", 1, 0),
        ];
        let series = series(&range, &minutes);
        assert_eq!(series.placed, [0, 3, 0, 1]);
        assert_eq!(series.failed, [0, 1, 0, 0]);
    }

    #[test]
    fn rates_and_durations_are_over_the_sagas_ended() {
        let range = Range::new(None, None, Utc::now()).unwrap();
        let mut total = Counts {
            placed: 4,
            completed: 2,
            duration_ms_sum: 300,
            ..Counts::default()
        };
        total.failed.out_of_stock = 1;
        total.buckets[3] = 2;
        total.buckets[5] = 1;
        let summary = summarise(&range, &total, &[], Vec::new(), Vec::new());
        assert_eq!((summary.placed, summary.ended), (4, 3));
        assert_eq!(summary.success_rate, Some(2.0 / 3.0));
        assert_eq!(summary.mean_duration_ms, Some(100.0));
        assert_eq!(summary.p95_duration_ms, Some(DURATION_BOUNDS_MS[5]));
        assert_eq!(summary.duration_buckets.len(), DURATION_BUCKETS);
        assert_eq!(
            summary.duration_buckets[DURATION_BUCKETS - 1].below_ms,
            None
        );
        assert_eq!(summary.orders_per_minute.placed.len(), 1_440);
        let none = summarise(&range, &Counts::default(), &[], Vec::new(), Vec::new());
        assert_eq!(
            (
                none.success_rate,
                none.mean_duration_ms,
                none.p95_duration_ms
            ),
            (None, None, None)
        );
    }
}
