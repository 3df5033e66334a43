//! Schema migrations, run at start-up: recipients and notifications, with the shared outbox
//! and inbox.

use sea_orm_migration::prelude::*;

use saga_common::migration::Sql;

mod m20261207_000401_create_recipients_and_notifications;

pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let own: Sql = m20261207_000401_create_recipients_and_notifications::MIGRATION;
        saga_common::migration::with_shared(vec![Box::new(own)])
    }
}
