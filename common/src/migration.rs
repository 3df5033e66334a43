//! Schema shared by every service database: the outbox and the inbox. Each service's migrator
//! lists its own migrations through [`with_shared`], which puts [`CreateOutbox`] and
//! [`CreateInbox`] before them and the later shared ones ([`SplitOutboxPending`]) after them, in
//! the order they were written.

use sea_orm_migration::prelude::*;

/// A service's own migrations, with the shared ones around them in the order they were written.
pub fn with_shared(own: Vec<Box<dyn MigrationTrait>>) -> Vec<Box<dyn MigrationTrait>> {
    let mut all: Vec<Box<dyn MigrationTrait>> = vec![Box::new(CreateOutbox), Box::new(CreateInbox)];
    all.extend(own);
    all.push(Box::new(SplitOutboxPending));
    all
}

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

/// What is still to be published moves out of the outbox's rows into `outbox_pending` (an id and
/// a time per message, deleted once confirmed), so marking a message sent no longer rewrites the
/// whole outbox row and its index entries; the outbox's rows are written once and never change.
/// A trigger writes the pending rows, so whoever writes to the outbox (an old instance during an
/// upgrade, an operator by hand) cannot leave a message that nobody sends.
pub struct SplitOutboxPending;

impl MigrationName for SplitOutboxPending {
    fn name(&self) -> &str {
        "m20261201_000003_split_outbox_pending"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for SplitOutboxPending {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE outbox_pending (
                    -- an outbox row's id, written in the same statement as the row; no foreign
                    -- key, whose check would lock the outbox row it has just written
                    id         BIGINT      PRIMARY KEY,
                    -- the outbox row's created_at, so the orphan scan need not read the row
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );
                CREATE FUNCTION outbox_written() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO outbox_pending (id, created_at) SELECT id, created_at FROM written;
                    RETURN NULL;
                END $$;
                CREATE TRIGGER outbox_written AFTER INSERT ON outbox
                    REFERENCING NEW TABLE AS written
                    FOR EACH STATEMENT EXECUTE FUNCTION outbox_written();
                INSERT INTO outbox_pending (id, created_at)
                    SELECT id, created_at FROM outbox WHERE published_at IS NULL;
                DROP INDEX outbox_unpublished;
                ALTER TABLE outbox DROP COLUMN published_at;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE outbox ADD COLUMN published_at TIMESTAMPTZ;
                UPDATE outbox SET published_at = now()
                    WHERE id NOT IN (SELECT id FROM outbox_pending);
                CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
                DROP TRIGGER outbox_written ON outbox;
                DROP FUNCTION outbox_written();
                DROP TABLE outbox_pending;",
            )
            .await?;
        Ok(())
    }
}
