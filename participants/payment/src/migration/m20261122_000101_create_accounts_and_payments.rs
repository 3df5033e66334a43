use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE accounts (
                    customer_id   TEXT        PRIMARY KEY,
                    -- the database, not only the code, refuses a negative balance
                    balance_cents BIGINT      NOT NULL CONSTRAINT balance_not_negative CHECK (balance_cents >= 0),
                    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
                );
                CREATE TABLE payments (
                    payment_id     UUID        PRIMARY KEY,
                    -- one payment per order: a second charge for the same order is impossible
                    order_id       UUID        NOT NULL CONSTRAINT one_payment_per_order UNIQUE,
                    customer_id    TEXT        NOT NULL,
                    amount_cents   BIGINT      NOT NULL CHECK (amount_cents >= 0),
                    status         TEXT        NOT NULL CHECK (status IN ('CHARGED', 'REFUNDED', 'DECLINED')),
                    decline_reason TEXT,
                    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
                    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
                );",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE payments; DROP TABLE accounts;")
            .await?;
        Ok(())
    }
}
