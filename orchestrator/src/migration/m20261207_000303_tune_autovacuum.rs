//! Autovacuum for the orchestrator's churn (the shared tables' is in `saga_common::migration`).
//! An order row is updated at every step of its saga, three or more times, and the updates are
//! not HOT (the deadline and status indexes change), so `orders` makes dead rows as fast as the
//! fleet works; `saga_transitions` is appended to and, after `retention.history`, pruned.
//! PostgreSQL's defaults wait for 20 % of a table; at 2 % bloat stays small and the pages of new
//! transitions are marked all-visible and frozen a little at a time. Not lower: each vacuum with
//! dead rows reads every index of the table, which on tables of millions of rows costs more
//! than the dead rows.

use saga_common::migration::Sql;

pub const MIGRATION: Sql = Sql {
    name: "m20261207_000303_tune_autovacuum",
    up: "ALTER TABLE orders SET (autovacuum_vacuum_scale_factor = 0.02,
            autovacuum_vacuum_threshold = 1000);
        ALTER TABLE saga_transitions SET (autovacuum_vacuum_scale_factor = 0.02,
            autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0.02,
            autovacuum_vacuum_insert_threshold = 1000);",
    down: "ALTER TABLE orders RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold);
        ALTER TABLE saga_transitions RESET (autovacuum_vacuum_scale_factor,
            autovacuum_vacuum_threshold, autovacuum_vacuum_insert_scale_factor,
            autovacuum_vacuum_insert_threshold);",
};
