//! The sales rollups `GET /api/analytics/summary` reads instead of `orders`
//! (`saga::rollup` writes them, `analytics` reads them).
//!
//! - `order_minutes`: per UTC minute and shard, orders placed (by the minute they were placed)
//!   and sagas ended (by the minute they ended): completed, failed by reason, revenue, the sum
//!   of durations and a histogram of durations in 14 fixed buckets, `duration_b00` under 10 ms
//!   to `duration_b13` at 600 000 ms and over (bounds in `saga::rollup::DURATION_BOUNDS_MS`).
//! - `product_hours`: per UTC hour, shard and product, the quantity and revenue of completed
//!   orders.
//!
//! Every batch that starts or ends sagas adds to one row of each per shard (`shard` is the
//! writer's turn, 0 to 3), so two batches committing side by side seldom wait on one row. Once
//! the minute or hour is over, `analytics::fold` adds its shards into shard 0, found through
//! the small partial indexes of the rows not yet folded. The rows are updated again and again
//! while their minute or hour is current: half of each page is left free so that those updates
//! stay HOT (no index entry, dead versions pruned in place).

use saga_common::migration::Sql;

pub const MIGRATION: Sql = Sql {
    name: "m20261210_000306_create_sales_rollups",
    up: "CREATE TABLE order_minutes (
            minute                  TIMESTAMPTZ NOT NULL,
            shard                   SMALLINT NOT NULL,
            placed                  BIGINT NOT NULL DEFAULT 0,
            completed               BIGINT NOT NULL DEFAULT 0,
            failed_payment_declined BIGINT NOT NULL DEFAULT 0,
            failed_out_of_stock     BIGINT NOT NULL DEFAULT 0,
            failed_timed_out        BIGINT NOT NULL DEFAULT 0,
            revenue_cents           BIGINT NOT NULL DEFAULT 0,
            duration_ms_sum         BIGINT NOT NULL DEFAULT 0,
            duration_b00 BIGINT NOT NULL DEFAULT 0, duration_b01 BIGINT NOT NULL DEFAULT 0,
            duration_b02 BIGINT NOT NULL DEFAULT 0, duration_b03 BIGINT NOT NULL DEFAULT 0,
            duration_b04 BIGINT NOT NULL DEFAULT 0, duration_b05 BIGINT NOT NULL DEFAULT 0,
            duration_b06 BIGINT NOT NULL DEFAULT 0, duration_b07 BIGINT NOT NULL DEFAULT 0,
            duration_b08 BIGINT NOT NULL DEFAULT 0, duration_b09 BIGINT NOT NULL DEFAULT 0,
            duration_b10 BIGINT NOT NULL DEFAULT 0, duration_b11 BIGINT NOT NULL DEFAULT 0,
            duration_b12 BIGINT NOT NULL DEFAULT 0, duration_b13 BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (minute, shard)
        ) WITH (fillfactor = 50);
        CREATE TABLE product_hours (
            hour          TIMESTAMPTZ NOT NULL,
            shard         SMALLINT NOT NULL,
            product_id    TEXT NOT NULL,
            quantity      BIGINT NOT NULL,
            revenue_cents BIGINT NOT NULL,
            PRIMARY KEY (hour, shard, product_id)
        ) WITH (fillfactor = 50);
        CREATE INDEX order_minutes_unfolded ON order_minutes (minute) WHERE shard > 0;
        CREATE INDEX product_hours_unfolded ON product_hours (hour) WHERE shard > 0;",
    down: "DROP TABLE product_hours; DROP TABLE order_minutes;",
};
