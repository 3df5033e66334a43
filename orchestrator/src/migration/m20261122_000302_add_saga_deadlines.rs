use sea_orm_migration::prelude::*;

/// Deadlines for the timeout worker, the command a saga waits on (resent with its original id),
/// and the new compensating state `RELEASING_STOCK`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE orders DROP CONSTRAINT orders_saga_state_check;
                ALTER TABLE orders ADD CONSTRAINT orders_saga_state_check CHECK (saga_state IN
                    ('AWAITING_PAYMENT', 'AWAITING_STOCK', 'RELEASING_STOCK', 'REFUNDING_PAYMENT',
                     'COMPLETED', 'FAILED'));
                ALTER TABLE orders
                    ADD COLUMN deadline_at        TIMESTAMPTZ,
                    ADD COLUMN resends            INTEGER NOT NULL DEFAULT 0,
                    ADD COLUMN pending_message_id UUID;
                -- the sweep only ever looks at sagas that still have a deadline
                CREATE INDEX orders_by_deadline ON orders (deadline_at) WHERE deadline_at IS NOT NULL;
                -- a resend copies the pending command's outbox row by its message id
                CREATE INDEX outbox_by_message_id ON outbox (message_id);",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP INDEX outbox_by_message_id;
                DROP INDEX orders_by_deadline;
                ALTER TABLE orders DROP COLUMN deadline_at, DROP COLUMN resends,
                    DROP COLUMN pending_message_id;
                ALTER TABLE orders DROP CONSTRAINT orders_saga_state_check;
                ALTER TABLE orders ADD CONSTRAINT orders_saga_state_check CHECK (saga_state IN
                    ('AWAITING_PAYMENT', 'AWAITING_STOCK', 'REFUNDING_PAYMENT', 'COMPLETED', 'FAILED'));",
            )
            .await?;
        Ok(())
    }
}
