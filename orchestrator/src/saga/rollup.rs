//! The sales rollups, written in the statements that start and end sagas: what
//! `GET /api/analytics/summary` (`crate::analytics`) reads instead of scanning `orders`.
//!
//! A batch adds one row's worth per table and shard: [`placed_part`] counts the orders the
//! intake inserted, by the UTC minute they were placed; [`ended_part`] counts the sagas the
//! batch ended, by the minute of its transaction (`now()`, the `updated_at` it gives them), with
//! their outcome, revenue and duration; [`products_part`] adds the lines of those that
//! completed to their UTC hour. Each is a part of the batch's one statement
//! (`saga_common::db::Writes`), aggregating the rows another part returned, so it costs no round
//! trip, counts exactly what that statement wrote, and rolls back with it: a redelivered reply
//! or a retried batch is counted once, as its step is written once.
//!
//! Why shards: ~1,000 sagas a second start and end, a few dozen batches a second, and every
//! one of them would update the same row of the current minute, holding its lock until it
//! commits. Each batch takes the next of [`SHARDS`] rows in turn instead ([`shard`]), so the
//! intake and the reply consumer writing side by side seldom wait on each other; the summary
//! adds the shards up. Product rows are taken in product order, so two batches on one shard
//! wait on each other in one direction only.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU16, Ordering};

use sea_orm::Value;

use saga_common::db::{Part, PartName};

use super::machine::{FailureReason, SagaState};

/// Rows per minute (and per hour and product) that batches take in turn.
pub const SHARDS: u16 = 4;

/// The duration histogram's bounds in milliseconds: bucket `i` (column `duration_b{i:02}`)
/// counts the sagas that took at least the bound before it (0 for the first) and less than
/// `DURATION_BOUNDS_MS[i]`; the last bucket counts those that took 600 000 ms or more.
pub const DURATION_BOUNDS_MS: [i64; 13] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 600_000,
];

/// Buckets of the histogram: one per bound and one past the last.
pub const DURATION_BUCKETS: usize = DURATION_BOUNDS_MS.len() + 1;

/// The rollup of orders per minute.
pub const ORDER_MINUTES: &str = "order_minutes";
/// The rollup of completed orders' lines per hour and product.
pub const PRODUCT_HOURS: &str = "product_hours";
/// The names of the parts of [`placed_part`], [`ended_part`] and [`products_part`].
pub const PLACED_MINUTES: PartName = PartName::new("placed_minutes");
pub const ENDED_MINUTES: PartName = PartName::new("ended_minutes");
pub const ENDED_PRODUCTS: PartName = PartName::new("ended_products");

/// The column of duration bucket `i`.
pub fn bucket_column(i: usize) -> String {
    format!("duration_b{i:02}")
}

/// The failure reasons, each with the column that counts it.
pub const FAILURE_COLUMNS: [(FailureReason, &str); 3] = [
    (FailureReason::PaymentDeclined, "failed_payment_declined"),
    (FailureReason::OutOfStock, "failed_out_of_stock"),
    (FailureReason::TimedOut, "failed_timed_out"),
];

/// Every counter of `order_minutes`: what adding two rows adds up.
pub fn minute_counters() -> Vec<String> {
    ["placed", "completed", "revenue_cents", "duration_ms_sum"]
        .into_iter()
        .chain(FAILURE_COLUMNS.iter().map(|(_, column)| *column))
        .map(String::from)
        .chain((0..DURATION_BUCKETS).map(bucket_column))
        .collect()
}

static TURN: AtomicU16 = AtomicU16::new(0);

/// The shard the next batch writes to: each batch of this process the next in turn.
pub fn shard() -> i16 {
    // `SHARDS` is small: the value always fits.
    (TURN.fetch_add(1, Ordering::Relaxed) % SHARDS) as i16
}

/// Adds the orders `placed` returned (its `created_at` column) to their minutes' `placed`.
pub fn placed_part(placed: PartName, shard: i16) -> Part {
    Part::new(
        format!(
            "INSERT INTO {ORDER_MINUTES} AS r (minute, shard, placed) \
             SELECT date_trunc('minute', created_at, 'UTC'), $1::smallint, count(*) \
             FROM {placed} GROUP BY 1 ORDER BY 1 \
             ON CONFLICT (minute, shard) DO UPDATE SET placed = r.placed + excluded.placed \
             RETURNING 1"
        ),
        vec![Value::from(shard)],
    )
}

/// Adds the sagas `moved` returned with `ends` true (the columns of `saga::store`'s
/// `advance_part`: `saga_state`, `failure_reason`, `total_cents`, `created_at`) to the current
/// minute: completed, failed by reason, revenue, durations (from placed to now). Writes no
/// row when none ends.
pub fn ended_part(moved: PartName, shard: i16) -> Part {
    let completed = SagaState::Completed.name();
    let mut columns = String::from(
        "completed, failed_payment_declined, failed_out_of_stock, failed_timed_out, \
         revenue_cents, duration_ms_sum",
    );
    let mut values = format!(
        "count(*) FILTER (WHERE saga_state = '{completed}'), {}, \
         coalesce(sum(total_cents) FILTER (WHERE saga_state = '{completed}'), 0), \
         coalesce(sum(ms), 0)",
        FAILURE_COLUMNS
            .iter()
            .map(|(reason, _)| format!(
                "count(*) FILTER (WHERE failure_reason = '{}')",
                reason.as_str()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut updates = String::new();
    for column in columns.split(", ") {
        let _ = write!(updates, "{column} = r.{column} + excluded.{column}, ");
    }
    for i in 0..DURATION_BUCKETS {
        let column = bucket_column(i);
        let _ = write!(columns, ", {column}");
        let _ = write!(values, ", count(*) FILTER (WHERE bucket = {i})");
        let _ = write!(updates, "{column} = r.{column} + excluded.{column}, ");
    }
    let updates = updates.trim_end_matches(", ");
    let bounds = DURATION_BOUNDS_MS.map(|b| b.to_string()).join(",");
    Part::new(
        format!(
            "INSERT INTO {ORDER_MINUTES} AS r (minute, shard, {columns}) \
             SELECT date_trunc('minute', now(), 'UTC'), $1::smallint, {values} \
             FROM (SELECT saga_state, failure_reason, total_cents, ms, \
                   width_bucket(ms, '{{{bounds}}}'::bigint[]) AS bucket \
                   FROM (SELECT saga_state, failure_reason, total_cents, \
                         greatest(0, floor(extract(epoch FROM now() - created_at) * 1000))::bigint \
                         AS ms FROM {moved} WHERE ends) e) e \
             HAVING count(*) > 0 \
             ON CONFLICT (minute, shard) DO UPDATE SET {updates} \
             RETURNING 1"
        ),
        vec![Value::from(shard)],
    )
}

/// Adds the lines (`items`) of the sagas `moved` completed to the current hour, per product,
/// in product order.
pub fn products_part(moved: PartName, shard: i16) -> Part {
    let completed = SagaState::Completed.name();
    Part::new(
        format!(
            "INSERT INTO {PRODUCT_HOURS} AS r (hour, shard, product_id, quantity, revenue_cents) \
             SELECT date_trunc('hour', now(), 'UTC'), $1::smallint, l.product_id, \
             sum(l.quantity), sum(l.quantity * l.unit_price_cents) \
             FROM {moved} s CROSS JOIN LATERAL jsonb_to_recordset(s.items) \
               AS l(product_id text, quantity bigint, unit_price_cents bigint) \
             WHERE s.ends AND s.saga_state = '{completed}' \
             GROUP BY l.product_id ORDER BY l.product_id \
             ON CONFLICT (hour, shard, product_id) DO UPDATE SET \
             quantity = r.quantity + excluded.quantity, \
             revenue_cents = r.revenue_cents + excluded.revenue_cents \
             RETURNING 1"
        ),
        vec![Value::from(shard)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_take_the_shards_in_turn() {
        let taken: Vec<i16> = (0..2 * SHARDS).map(|_| shard()).collect();
        for s in &taken {
            assert!((0..SHARDS as i16).contains(s));
        }
        // Other tests may take turns meanwhile; in one process run alone, every shard appears.
        assert!(taken.iter().collect::<std::collections::HashSet<_>>().len() > 1);
    }

    #[test]
    fn the_bounds_rise_and_every_bucket_has_a_column() {
        assert!(DURATION_BOUNDS_MS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(bucket_column(0), "duration_b00");
        assert_eq!(bucket_column(DURATION_BUCKETS - 1), "duration_b13");
    }
}
