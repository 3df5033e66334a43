use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE orders (
                    order_id        UUID        PRIMARY KEY,
                    customer_id     TEXT        NOT NULL,
                    items           JSONB       NOT NULL,
                    total_cents     BIGINT      NOT NULL CHECK (total_cents >= 0),
                    -- the saga instance lives on the order row
                    saga_state      TEXT        NOT NULL CHECK (saga_state IN
                        ('AWAITING_PAYMENT', 'AWAITING_STOCK', 'REFUNDING_PAYMENT', 'COMPLETED', 'FAILED')),
                    failure_reason  TEXT,
                    -- optimistic concurrency: every transition is `... WHERE version = <read>`
                    version         INTEGER     NOT NULL DEFAULT 0,
                    -- what clients filter on, derived so it can never disagree with the saga
                    status          TEXT        GENERATED ALWAYS AS (CASE saga_state
                        WHEN 'COMPLETED' THEN 'COMPLETED' WHEN 'FAILED' THEN 'FAILED' ELSE 'PENDING' END) STORED,
                    correlation_id  TEXT        NOT NULL,
                    idempotency_key TEXT        CONSTRAINT orders_idempotency_key UNIQUE,
                    created_at      TIMESTAMPTZ NOT NULL,
                    updated_at      TIMESTAMPTZ NOT NULL
                );
                CREATE INDEX orders_newest ON orders (created_at DESC, order_id DESC);
                CREATE INDEX orders_by_status ON orders (status, created_at DESC, order_id DESC);
                CREATE INDEX orders_by_customer ON orders (customer_id, created_at DESC, order_id DESC);

                CREATE TABLE saga_transitions (
                    id          BIGSERIAL   PRIMARY KEY,
                    order_id    UUID        NOT NULL REFERENCES orders (order_id),
                    from_state  TEXT,
                    to_state    TEXT        NOT NULL,
                    trigger     TEXT        NOT NULL,
                    message_id  UUID        NOT NULL,
                    commands    TEXT[]      NOT NULL DEFAULT '{}',
                    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );
                CREATE INDEX saga_transitions_by_order ON saga_transitions (order_id, id);",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE saga_transitions; DROP TABLE orders;")
            .await?;
        Ok(())
    }
}
