//! An index on `orders.correlation_id`, so the operator's saga search (`GET /api/sagas?q=`)
//! finds a request's order without reading the table. Its cost: `orders` updates are not HOT
//! (see `m20261207_000303_tune_autovacuum`), so every saga step writes one more index entry.
//! The other filters of the search are served by the indexes already there (`saga::search`).

use saga_common::migration::Sql;

pub const MIGRATION: Sql = Sql {
    name: "m20261211_000307_index_correlation_id",
    up: "CREATE INDEX orders_by_correlation ON orders (correlation_id);",
    down: "DROP INDEX orders_by_correlation;",
};
