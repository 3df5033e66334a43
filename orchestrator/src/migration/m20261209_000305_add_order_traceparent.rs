//! The order's trace context (W3C `traceparent` of the step that placed it), so that what the
//! timeout sweep and operators do to a saga later continues the order's trace. Null on orders
//! placed before tracing: their later steps start a trace of their own. A nullable column
//! without a default rewrites no row.

use saga_common::migration::Sql;

pub const MIGRATION: Sql = Sql {
    name: "m20261209_000305_add_order_traceparent",
    up: "ALTER TABLE orders ADD COLUMN traceparent TEXT;",
    down: "ALTER TABLE orders DROP COLUMN traceparent;",
};
