//! Folding the rollups' shards: once a minute (an hour, for products) is over, its rows on
//! shards 1 to 3 are added into shard 0 and deleted, so a month of history is one row per
//! minute for the summary to read, not one per shard. Sharding only helps while a minute is
//! current (`saga::rollup`); after that it only costs reads.
//!
//! One statement per table, every [`EVERY`], on rows no writer touches any more (a minute ended
//! [`MARGIN`] ago). Should a late batch still add to a folded minute, its row is folded on the
//! next run: the summary adds up every row of a minute, folded or not, so a fold never changes
//! a number. Several instances may fold at once: the second finds the rows gone.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use saga_common::service::Task;

use crate::saga::rollup::{ORDER_MINUTES, PRODUCT_HOURS, minute_counters};

/// How often the fold runs.
pub const EVERY: Duration = Duration::from_secs(60);
/// How long after its end a minute or hour is folded: longer than any batch takes.
pub const MARGIN: &str = "2 minutes";

/// The two statements of a fold.
fn statements() -> [String; 2] {
    let counters = minute_counters();
    let sums: Vec<String> = counters.iter().map(|c| format!("sum({c})")).collect();
    let updates: Vec<String> = counters
        .iter()
        .map(|c| format!("{c} = r.{c} + excluded.{c}"))
        .collect();
    let counters = counters.join(", ");
    let minutes = format!(
        "WITH moved AS (DELETE FROM {ORDER_MINUTES} \
           WHERE minute < date_trunc('minute', now() - interval '{MARGIN}', 'UTC') \
           AND shard > 0 RETURNING *) \
         INSERT INTO {ORDER_MINUTES} AS r (minute, shard, {counters}) \
         SELECT minute, 0, {} FROM moved GROUP BY minute ORDER BY minute \
         ON CONFLICT (minute, shard) DO UPDATE SET {}",
        sums.join(", "),
        updates.join(", ")
    );
    let hours = format!(
        "WITH moved AS (DELETE FROM {PRODUCT_HOURS} \
           WHERE hour < date_trunc('hour', now() - interval '{MARGIN}', 'UTC') \
           AND shard > 0 RETURNING *) \
         INSERT INTO {PRODUCT_HOURS} AS r (hour, shard, product_id, quantity, revenue_cents) \
         SELECT hour, 0, product_id, sum(quantity), sum(revenue_cents) FROM moved \
         GROUP BY hour, product_id ORDER BY hour, product_id \
         ON CONFLICT (hour, shard, product_id) DO UPDATE SET \
         quantity = r.quantity + excluded.quantity, \
         revenue_cents = r.revenue_cents + excluded.revenue_cents"
    );
    [minutes, hours]
}

/// Folds every minute and hour that is over; returns the rows of shard 0 written.
pub async fn fold(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let mut written = 0;
    for sql in statements() {
        written += db
            .execute_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await?
            .rows_affected();
    }
    Ok(written)
}

/// The front-tier task that folds every [`EVERY`] until the stop signal. A failed fold (the
/// database away) is logged once until one succeeds; nothing is lost meanwhile, the rows wait.
pub fn task<C>(db: C) -> Task
where
    C: ConnectionTrait + Send + Sync + 'static,
{
    let db = std::sync::Arc::new(db);
    Task::every(
        "rollup fold",
        EVERY,
        "cannot fold the sales rollups; they wait for the next run",
        move || {
            let db = db.clone();
            async move { fold(&*db).await.map(drop) }
        },
    )
}
