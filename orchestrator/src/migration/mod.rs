//! Schema migrations, run at start-up.

use sea_orm_migration::prelude::*;

mod m20261122_000301_create_orders_and_transitions;
mod m20261122_000302_add_saga_deadlines;
mod m20261207_000303_tune_autovacuum;
mod m20261208_000304_count_repeated_transitions;
mod m20261209_000305_add_order_traceparent;
mod m20261210_000306_create_sales_rollups;

pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        saga_common::migration::with_shared(vec![
            Box::new(m20261122_000301_create_orders_and_transitions::Migration),
            Box::new(m20261122_000302_add_saga_deadlines::Migration),
            Box::new(m20261207_000303_tune_autovacuum::MIGRATION),
            Box::new(m20261208_000304_count_repeated_transitions::MIGRATION),
            Box::new(m20261209_000305_add_order_traceparent::MIGRATION),
            Box::new(m20261210_000306_create_sales_rollups::MIGRATION),
        ])
    }
}
