use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Products gain their low-stock threshold and whether the alert of the current crossing was
/// published (`products` module, "Low-stock alerts"). Existing products get half of what they
/// have available, as a `PUT` without a threshold would give them, and are armed.
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE products
                   ADD COLUMN low_stock_threshold INTEGER NOT NULL DEFAULT 0
                     CONSTRAINT low_stock_threshold_not_negative CHECK (low_stock_threshold >= 0),
                   -- true from the reservation that took `available` below the threshold (and
                   -- published inventory.low_stock) until a PUT sets the stock at or above it
                   ADD COLUMN low_stock_alerted BOOLEAN NOT NULL DEFAULT false;
                 UPDATE products SET low_stock_threshold = available / 2;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE products DROP COLUMN low_stock_alerted, DROP COLUMN low_stock_threshold;",
            )
            .await?;
        Ok(())
    }
}
