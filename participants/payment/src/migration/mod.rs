//! Schema migrations, run at start-up.

use sea_orm_migration::prelude::*;

mod m20261122_000101_create_accounts_and_payments;
mod m20261207_000102_add_account_email;

pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        saga_common::migration::with_shared(vec![
            Box::new(m20261122_000101_create_accounts_and_payments::Migration),
            Box::new(m20261207_000102_add_account_email::Migration),
        ])
    }
}
