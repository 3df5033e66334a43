//! Schema shared by every service database: the outbox and the inbox. Each service's migrator
//! lists these before its own migrations.

use sea_orm_migration::prelude::*;

pub struct CreateOutbox;

impl MigrationName for CreateOutbox {
    fn name(&self) -> &str {
        "m20261122_000001_create_outbox"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE outbox (
                    id           BIGSERIAL PRIMARY KEY,
                    message_id   UUID        NOT NULL,
                    exchange     TEXT        NOT NULL,
                    routing_key  TEXT        NOT NULL,
                    message_type TEXT        NOT NULL,
                    saga_id      UUID        NOT NULL,
                    -- the envelope exactly as published
                    body         TEXT        NOT NULL,
                    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
                    published_at TIMESTAMPTZ
                );
                -- the relay only ever scans what is still to be sent
                CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE outbox")
            .await?;
        Ok(())
    }
}

pub struct CreateInbox;

impl MigrationName for CreateInbox {
    fn name(&self) -> &str {
        "m20261122_000002_create_inbox"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateInbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE inbox (
                    consumer     TEXT        NOT NULL,
                    message_id   UUID        NOT NULL,
                    message_type TEXT        NOT NULL,
                    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
                    -- the reply sent for this message, answered again on a duplicate
                    reply        JSONB,
                    PRIMARY KEY (consumer, message_id)
                );",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE inbox")
            .await?;
        Ok(())
    }
}
