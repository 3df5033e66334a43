//! The operator's saga search (`GET /api/sagas`): [`SagaFilter`], read from the query string
//! (each bad parameter named in one 422), and [`conditions`], the `WHERE` clause it becomes.
//! The listing is newest first and keyset-paginated by [`Cursor`], which the orders list
//! shares (it lives here because `saga` may not import `orders`).
//!
//! Which index serves which filter (only the filters given go into the statement, so each
//! combination is its own prepared statement with a plan of its own, see `db::connect`):
//! `status`, `state` (which implies its status) and `reason` (which implies PENDING or FAILED)
//! walk `orders_by_status`; `customer_id` walks `orders_by_customer`; `overdue` the partial
//! `orders_by_deadline` ([`source`]); `older_than` and no filter `orders_newest`; `q` the
//! primary key (an order id). A correlation id has no index yet: it scans `orders` (an index
//! there writes one more entry at every saga step, not yet measured against the benchmark).

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::Value;
use uuid::Uuid;

use saga_common::http::query::{FromQuery, Id, QueryFields, QueryValue};

use super::machine::FailureReason;
use super::status::{OrderStatus, StateName};

/// What a saga search (or a bulk repair) selects. The default selects every saga.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SagaFilter {
    pub state: Option<StateName>,
    pub status: Option<OrderStatus>,
    pub reason: Option<FailureReason>,
    pub customer_id: Option<String>,
    /// Placed more than this long ago.
    pub older_than: Option<OlderThan>,
    /// Past the deadline (the timeout worker has not handled it yet).
    pub overdue: bool,
    pub q: Option<Search>,
}

impl SagaFilter {
    /// Whether the filter selects every saga.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl FromQuery for SagaFilter {
    fn from_query(fields: &mut QueryFields) -> Self {
        // `stuck` is the older name of `overdue`, still accepted.
        let overdue: bool = fields.value("overdue");
        let stuck: bool = fields.value("stuck");
        Self {
            state: fields.optional("state"),
            status: fields.optional("status"),
            reason: fields.optional("reason"),
            customer_id: fields.optional::<Id>("customer_id").map(|id| id.0),
            older_than: fields.optional("older_than"),
            overdue: overdue || stuck,
            q: fields.optional("q"),
        }
    }
}

/// Position in a newest-first listing of orders or sagas (`GET /api/orders`, `GET /api/sagas`):
/// the last one of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub order_id: Uuid,
}

impl Cursor {
    /// Ends a page read with one row more than `limit`: drops that row and answers the cursor
    /// of the page's last one, or `None` when there was no extra row (the last page).
    pub fn next_page<T>(
        rows: &mut Vec<T>,
        limit: u64,
        key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    ) -> Option<String> {
        if rows.len() as u64 <= limit {
            return None;
        }
        rows.truncate(limit as usize);
        rows.last().map(|row| {
            let (created_at, order_id) = key(row);
            Self {
                created_at,
                order_id,
            }
            .encode()
        })
    }

    pub fn encode(&self) -> String {
        format!(
            "{}_{}",
            self.created_at.timestamp_micros(),
            self.order_id.simple()
        )
    }

    pub fn decode(value: &str) -> Option<Self> {
        let (micros, id) = value.split_once('_')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            order_id: Uuid::parse_str(id).ok()?,
        })
    }
}

impl QueryValue for Cursor {
    fn parse_query(text: &str) -> Result<Self, String> {
        Cursor::decode(text).ok_or_else(|| "is not a cursor this API returned".into())
    }
}

/// `q`: an order id (a UUID) or, anything else, a correlation id, matched exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    Order(Uuid),
    Correlation(String),
}

impl QueryValue for Search {
    fn parse_query(text: &str) -> Result<Self, String> {
        if let Ok(id) = Uuid::parse_str(text) {
            return Ok(Self::Order(id));
        }
        // The rule correlation ids are accepted under (`http::correlation`): no other can exist.
        if !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self::Correlation(text.to_owned()))
        } else {
            Err(
                "must be an order id or a correlation id (1 to 128 visible ASCII characters)"
                    .into(),
            )
        }
    }
}

/// `older_than`: a duration, a whole number and a unit, `s`, `m`, `h` or `d` (`90s`, `10m`,
/// `2h`, `7d`). A duration rather than an instant, so a saved console view stays meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OlderThan(pub TimeDelta);

const OLDER_THAN_RULE: &str = "must be a duration such as 90s, 10m, 2h or 7d";

impl QueryValue for OlderThan {
    fn parse_query(text: &str) -> Result<Self, String> {
        let split = text.len().saturating_sub(1);
        let (number, unit) = text.split_at_checked(split).ok_or(OLDER_THAN_RULE)?;
        let number: i64 = number
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or(OLDER_THAN_RULE)?;
        let delta = match unit {
            "s" => TimeDelta::try_seconds(number),
            "m" => TimeDelta::try_minutes(number),
            "h" => TimeDelta::try_hours(number),
            "d" => TimeDelta::try_days(number),
            _ => None,
        };
        // At most a century: any older is every saga, and `now - age` stays far inside the
        // range of a timestamp.
        delta
            .filter(|d| *d <= TimeDelta::days(36_500))
            .map(Self)
            .ok_or_else(|| format!("{OLDER_THAN_RULE}, at most 36500d"))
    }
}

impl QueryValue for StateName {
    fn parse_query(text: &str) -> Result<Self, String> {
        StateName::parse(text).ok_or_else(|| {
            "must be AWAITING_PAYMENT, AWAITING_STOCK, RELEASING_STOCK, REFUNDING_PAYMENT, \
             COMPLETED or FAILED"
                .into()
        })
    }
}

impl QueryValue for FailureReason {
    fn parse_query(text: &str) -> Result<Self, String> {
        FailureReason::parse(text)
            .ok_or_else(|| "must be payment_declined, out_of_stock or timed_out".into())
    }
}

/// What the search reads from: `orders`, or with `overdue` only the overdue ones, read first
/// through `orders_by_deadline` (a subquery kept apart, `OFFSET 0`, so the planner cannot
/// merge it into a walk of the newest-first index that filters every row on its deadline).
/// They are few: only sagas in flight have a deadline, and admission bounds those.
pub fn source(filter: &SagaFilter) -> &'static str {
    if filter.overdue {
        "(SELECT * FROM orders WHERE deadline_at <= now() OFFSET 0) AS orders"
    } else {
        "orders"
    }
}

/// The conditions `filter` puts on [`source`] at `now`, with their values appended to `values`
/// (numbered from `values.len() + 1`).
pub fn conditions(filter: &SagaFilter, now: DateTime<Utc>, values: &mut Vec<Value>) -> Vec<String> {
    let mut conditions = Vec::new();
    // State, status and reason are literals (a few fixed names, never input), as in the orders
    // list: a generic plan for `status = $1` would have to suit the rare statuses and the
    // common one at once.
    let status = filter.status.or(filter.state.map(StateName::status));
    if let Some(status) = status {
        conditions.push(format!("status = '{}'", status.as_str()));
    } else if filter.reason.is_some() {
        // A reason is held while compensating (PENDING) and once FAILED, never when COMPLETED:
        // said so, the status index serves the filter.
        conditions.push("status IN ('PENDING', 'FAILED')".to_owned());
    }
    if let Some(state) = filter.state {
        conditions.push(format!("saga_state = '{}'", state.as_str()));
    }
    if let Some(reason) = filter.reason {
        conditions.push(format!("failure_reason = '{}'", reason.as_str()));
    }
    if let Some(customer_id) = &filter.customer_id {
        values.push(customer_id.clone().into());
        conditions.push(format!("customer_id = ${}", values.len()));
    }
    if let Some(OlderThan(age)) = filter.older_than {
        let before = now
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        values.push(before.into());
        conditions.push(format!("created_at < ${}", values.len()));
    }
    match &filter.q {
        Some(Search::Order(id)) => {
            values.push((*id).into());
            conditions.push(format!("order_id = ${}", values.len()));
        }
        Some(Search::Correlation(id)) => {
            values.push(id.clone().into());
            conditions.push(format!("correlation_id = ${}", values.len()));
        }
        None => {}
    }
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_763_000_000_123_456).unwrap(),
            order_id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("nope"), None);
        assert_eq!(Cursor::decode("12_notauuid"), None);
    }

    #[test]
    fn older_than_reads_a_number_and_a_unit() {
        assert_eq!(
            OlderThan::parse_query("10m"),
            Ok(OlderThan(TimeDelta::minutes(10)))
        );
        assert_eq!(
            OlderThan::parse_query("7d"),
            Ok(OlderThan(TimeDelta::days(7)))
        );
        assert!(OlderThan::parse_query("36500d").is_ok());
        for bad in [
            "",
            "m",
            "10",
            "-1m",
            "10y",
            "1.5h",
            "36501d",
            "99999999999999999d",
        ] {
            assert!(OlderThan::parse_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn q_is_an_order_id_or_a_correlation_id() {
        let id = Uuid::now_v7();
        assert_eq!(Search::parse_query(&id.to_string()), Ok(Search::Order(id)));
        assert_eq!(
            Search::parse_query("req-1"),
            Ok(Search::Correlation("req-1".into()))
        );
        assert!(Search::parse_query("a b").is_err());
    }

    #[test]
    fn a_state_implies_its_status_so_the_status_index_serves_it() {
        let filter = SagaFilter {
            state: Some(StateName::AwaitingStock),
            ..SagaFilter::default()
        };
        let mut values = Vec::new();
        let sql = conditions(&filter, Utc::now(), &mut values);
        assert_eq!(sql, ["status = 'PENDING'", "saga_state = 'AWAITING_STOCK'"]);
        assert!(values.is_empty());
    }
}
