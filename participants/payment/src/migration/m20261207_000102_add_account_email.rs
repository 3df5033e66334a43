use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Accounts gain the owner's e-mail address, optional: `PUT /api/accounts/{id}` checks it
/// (`accounts::email`); the column's own bound only backs that check up.
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE accounts ADD COLUMN email TEXT \
                   CONSTRAINT email_length CHECK (char_length(email) BETWEEN 3 AND 254);",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE accounts DROP COLUMN email;")
            .await?;
        Ok(())
    }
}
