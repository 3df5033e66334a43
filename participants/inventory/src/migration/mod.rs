//! Schema migrations, run at start-up.

use sea_orm_migration::prelude::*;

mod m20261122_000201_create_products_and_reservations;
mod m20261207_000202_add_low_stock_threshold;

pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        saga_common::migration::with_shared(vec![
            Box::new(m20261122_000201_create_products_and_reservations::Migration),
            Box::new(m20261207_000202_add_low_stock_threshold::Migration),
        ])
    }
}
