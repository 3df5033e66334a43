//! The shared schema's upgrades, run on a database that holds rows from before them.

use sea_orm::{ConnectionTrait, Database};
use sea_orm_migration::prelude::*;

use saga_common::db::stmt;
use saga_common::testing::{create_database, drop_database};

/// The shared tables as they were before the pending rows moved out of the outbox.
struct Before;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Before {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(saga_common::migration::CREATE_OUTBOX),
            Box::new(saga_common::migration::CREATE_INBOX),
        ]
    }
}

struct After;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for After {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = Before::migrations();
        migrations.push(Box::new(saga_common::migration::SPLIT_OUTBOX_PENDING));
        migrations
    }
}

#[tokio::test]
async fn upgrading_keeps_every_unpublished_row_pending_and_every_row_written_after_is_pending() {
    let url = create_database("outbox_upgrade").await;
    let db = Database::connect(&url).await.unwrap();
    Before::up(&db, None).await.unwrap();
    db.execute_unprepared(
        "INSERT INTO outbox (message_id, exchange, routing_key, message_type, saga_id, body, \
           published_at) VALUES \
         (gen_random_uuid(), 'x', 'k', 'sent', gen_random_uuid(), '{}', now()), \
         (gen_random_uuid(), 'x', 'k', 'waiting', gen_random_uuid(), '{}', NULL)",
    )
    .await
    .unwrap();

    After::up(&db, None).await.unwrap();
    // A row written as the code from before the upgrade writes it (an instance not yet
    // restarted), or by hand: pending too, so a relay sends it.
    db.execute_unprepared(
        "INSERT INTO outbox (message_id, exchange, routing_key, message_type, saga_id, body) \
         VALUES (gen_random_uuid(), 'x', 'k', 'written_after', gen_random_uuid(), '{}')",
    )
    .await
    .unwrap();

    let row = db
        .query_one_raw(stmt(
            "SELECT array_agg(o.message_type ORDER BY o.id) AS pending, \
               bool_and(p.created_at = o.created_at) AS same_time \
             FROM outbox_pending p JOIN outbox o ON o.id = p.id",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<Vec<String>>("", "pending").unwrap(),
        vec!["waiting".to_owned(), "written_after".to_owned()]
    );
    assert!(row.try_get::<bool>("", "same_time").unwrap());
    // The outbox's rows are never updated again: the column that was, is gone.
    let columns = db
        .query_one_raw(stmt(
            "SELECT count(*) AS n FROM information_schema.columns \
             WHERE table_name = 'outbox' AND column_name = 'published_at'",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(columns.try_get::<i64>("", "n").unwrap(), 0);

    // And back: the pending row is the one left unpublished.
    After::down(&db, Some(1)).await.unwrap();
    let unpublished = db
        .query_one_raw(stmt(
            "SELECT array_agg(message_type ORDER BY id) AS unpublished FROM outbox \
             WHERE published_at IS NULL",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        unpublished
            .try_get::<Vec<String>>("", "unpublished")
            .unwrap(),
        vec!["waiting".to_owned(), "written_after".to_owned()]
    );
    let _ = db.close().await;
    drop_database(&url).await;
}
