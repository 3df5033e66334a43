use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE products (
                    product_id TEXT        PRIMARY KEY,
                    -- the database, not only the code, refuses to hand out stock it does not have
                    available  INTEGER     NOT NULL CONSTRAINT available_not_negative CHECK (available >= 0),
                    reserved   INTEGER     NOT NULL DEFAULT 0 CONSTRAINT reserved_not_negative CHECK (reserved >= 0),
                    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );
                -- one row per order: a reserve repeated under a new message id finds the outcome
                -- recorded here, and a release that came first leaves a REJECTED row behind
                CREATE TABLE reservations (
                    order_id   UUID        PRIMARY KEY,
                    status     TEXT        NOT NULL CHECK (status IN ('RESERVED', 'RELEASED', 'REJECTED')),
                    -- why a reservation was REJECTED: out_of_stock or released_before_reserved
                    reason     TEXT,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );
                -- only RESERVED (and later RELEASED) orders have lines
                CREATE TABLE reservation_lines (
                    order_id   UUID    NOT NULL REFERENCES reservations (order_id),
                    product_id TEXT    NOT NULL,
                    quantity   INTEGER NOT NULL CHECK (quantity > 0),
                    PRIMARY KEY (order_id, product_id)
                );
                -- GET /api/reservations without a filter lists the newest first
                CREATE INDEX reservations_created_at ON reservations (created_at DESC);",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TABLE reservation_lines; DROP TABLE reservations; DROP TABLE products;",
            )
            .await?;
        Ok(())
    }
}
