//! Repeated resends of one command are one timeline entry: `repeat_count` says how many times
//! the step happened in a row (1 for every other entry), `last_repeated_at` when it last did
//! (null until it repeats). A saga stuck on a participant that is down used to add a row per
//! deadline, forever. Adding columns with a constant default rewrites no row.

use saga_common::migration::Sql;

pub const MIGRATION: Sql = Sql {
    name: "m20261208_000304_count_repeated_transitions",
    up: "ALTER TABLE saga_transitions
            ADD COLUMN repeat_count     INTEGER NOT NULL DEFAULT 1 CHECK (repeat_count >= 1),
            ADD COLUMN last_repeated_at TIMESTAMPTZ;",
    down: "ALTER TABLE saga_transitions DROP COLUMN repeat_count, DROP COLUMN last_repeated_at;",
};
