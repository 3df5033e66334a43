//! Schema shared by every service database: the outbox and the inbox. Each service's migrator
//! lists its own migrations through [`with_shared`], which puts [`CREATE_OUTBOX`] and
//! [`CREATE_INBOX`] before them and the later shared ones ([`SPLIT_OUTBOX_PENDING`],
//! [`TUNE_AUTOVACUUM`]) after them, in the order they were written. Every migration of the workspace is SQL up and SQL down: a
//! [`Sql`].

use sea_orm_migration::prelude::*;

/// A service's own migrations, with the shared ones around them in the order they were written.
pub fn with_shared(own: Vec<Box<dyn MigrationTrait>>) -> Vec<Box<dyn MigrationTrait>> {
    let mut all: Vec<Box<dyn MigrationTrait>> =
        vec![Box::new(CREATE_OUTBOX), Box::new(CREATE_INBOX)];
    all.extend(own);
    all.push(Box::new(SPLIT_OUTBOX_PENDING));
    all.push(Box::new(TUNE_AUTOVACUUM));
    all
}

/// A migration written as SQL: `up` applies it, `down` undoes it.
pub struct Sql {
    /// The name `seaql_migrations` records it under (its file's name for a service's own):
    /// never changed once released, or it would run again.
    pub name: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

impl MigrationName for Sql {
    fn name(&self) -> &str {
        self.name
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Sql {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(self.up).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(self.down)
            .await?;
        Ok(())
    }
}

/// The outbox: each message as published, written in the transaction that decided it.
pub const CREATE_OUTBOX: Sql = Sql {
    name: "m20261122_000001_create_outbox",
    up: "CREATE TABLE outbox (
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
    down: "DROP TABLE outbox",
};

/// The inbox: each message a consumer handled, with its reply, so a duplicate is answered again.
pub const CREATE_INBOX: Sql = Sql {
    name: "m20261122_000002_create_inbox",
    up: "CREATE TABLE inbox (
            consumer     TEXT        NOT NULL,
            message_id   UUID        NOT NULL,
            message_type TEXT        NOT NULL,
            received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            -- the reply sent for this message, answered again on a duplicate
            reply        JSONB,
            PRIMARY KEY (consumer, message_id)
        );",
    down: "DROP TABLE inbox",
};

/// What is still to be published moves out of the outbox's rows into `outbox_pending`, a row of
/// an id and a time per message, deleted once the broker confirmed it. Marking a message sent
/// used to be an update of its outbox row (`published_at`): a second copy of the whole row, and,
/// as the column is in the partial index's predicate, never a HOT update, so a new entry in each
/// of its other indexes (the key, and in the orchestrator `outbox_by_message_id`). A pending row
/// costs a narrow insert and one key entry when written, and its delete writes a few bytes of WAL
/// and no index entry; the outbox's rows are written once and never change.
///
/// The pending rows are written by a trigger, once per statement, from the rows it inserted:
/// whoever writes to the outbox (a service, a resend, an instance still running the code from
/// before this migration during an upgrade, an operator by hand), the row is pending until a
/// relay publishes it. Had the writers to add them, a writer that forgot, or an old one, would
/// leave a message nobody ever sends.
pub const SPLIT_OUTBOX_PENDING: Sql = Sql {
    name: "m20261201_000003_split_outbox_pending",
    up: "CREATE TABLE outbox_pending (
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
    down: "ALTER TABLE outbox ADD COLUMN published_at TIMESTAMPTZ;
        UPDATE outbox SET published_at = now()
            WHERE id NOT IN (SELECT id FROM outbox_pending);
        CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
        DROP TRIGGER outbox_written ON outbox;
        DROP FUNCTION outbox_written();
        DROP TABLE outbox_pending;",
};

/// Autovacuum for the shared tables' churn. PostgreSQL's defaults wait for dead rows worth 20 %
/// of a table (`autovacuum_vacuum_scale_factor = 0.2`) and inserts worth 20 % (the insert
/// factor), which suits tables that change a little; at 1,000 sagas/s these change all the
/// time, and the pruner deletes as fast as the fleet writes:
/// - `outbox_pending` holds a few thousand live rows but sees thousands of inserts and deletes
///   a second: vacuumed at every autovacuum round once 1,000 rows are dead, without the cost
///   delay (the table is tiny), so its key stays short for the relay's reads.
/// - `outbox` (10 minutes kept: about 2 million rows) and `inbox` (7 days kept: very large):
///   vacuumed when dead or newly inserted rows pass 5 % and 2 % of the table, so bloat stays a
///   few percent and the pages of new rows are marked all-visible and frozen a little at a
///   time rather than in one anti-wraparound pass. Not lower: each vacuum with dead rows reads
///   the table's whole key index, which on a table this size costs more than the dead rows.
pub const TUNE_AUTOVACUUM: Sql = Sql {
    name: "m20261207_000004_tune_autovacuum",
    up: "ALTER TABLE outbox_pending SET (autovacuum_vacuum_scale_factor = 0,
            autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0);
        ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.05,
            autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0.05,
            autovacuum_vacuum_insert_threshold = 1000);
        ALTER TABLE inbox SET (autovacuum_vacuum_scale_factor = 0.02,
            autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0.02,
            autovacuum_vacuum_insert_threshold = 1000);",
    down: "ALTER TABLE outbox_pending RESET (autovacuum_vacuum_scale_factor,
            autovacuum_vacuum_threshold, autovacuum_vacuum_cost_delay);
        ALTER TABLE outbox RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
            autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold);
        ALTER TABLE inbox RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
            autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold);",
};
