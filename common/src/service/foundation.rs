//! What every service prepares before it runs: the database (migrated), the HTTP port, the
//! broker status and the relay wake-up its parts share.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;

use crate::configuration::ServiceSettings;
use crate::http::health::Readiness;
use crate::messaging::inbox::DedupWindow;
use crate::messaging::outbox::RelayWakeup;
use crate::messaging::{BrokerStatus, MessageHandler, Messaging};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Settings that cannot work together, refused before anything starts.
    #[error("invalid settings: {0}")]
    Settings(String),
    /// The driver's message with the URL's password masked (it may quote the URL); the error
    /// itself is not kept, as its `Debug` would show the password.
    #[error("cannot connect to PostgreSQL: {0}")]
    Database(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a service has after start-up and before it runs.
pub struct Foundation {
    pub db: DatabaseConnection,
    pub listener: TcpListener,
    pub port: u16,
    pub broker: Arc<BrokerStatus>,
    pub wakeup: RelayWakeup,
}

impl Foundation {
    pub async fn prepare<M: MigratorTrait>(
        settings: &ServiceSettings,
    ) -> Result<Self, StartupError> {
        let db = crate::db::connect(&settings.database)
            .await
            .map_err(|e| StartupError::Database(settings.database.url.scrub(&e.to_string())))?;
        migrate::<M>(&db)
            .await
            .map_err(|e| StartupError::Migration(settings.database.url.scrub(&e.to_string())))?;
        let address = format!(
            "{}:{}",
            settings.application.host, settings.application.port
        );
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| StartupError::Bind { address, source })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        Ok(Self {
            db,
            listener,
            port,
            broker: Arc::new(BrokerStatus::default()),
            wakeup: RelayWakeup::default(),
        })
    }

    pub fn readiness(&self) -> Readiness {
        Readiness {
            db: self.db.clone(),
            broker: self.broker.clone(),
            auth_disabled: false,
        }
    }

    /// Supervised messaging for `queue`, sharing this service's pool, status and relay wake-up.
    pub fn messaging<H: MessageHandler>(
        &self,
        service: &str,
        settings: &ServiceSettings,
        queue: &'static str,
        handler: H,
    ) -> Messaging<H> {
        Messaging {
            service: service.to_owned(),
            amqp: settings.amqp.clone(),
            outbox: settings.outbox.clone(),
            retry: settings.retry.clone(),
            dedup_window: DedupWindow::new(settings.retention.inbox_window),
            db: self.db.clone(),
            queue,
            handler: Arc::new(handler),
            status: self.broker.clone(),
            wakeup: self.wakeup.clone(),
            grace: Duration::from_millis(settings.shutdown_grace_ms),
        }
    }
}

/// Runs pending migrations under a PostgreSQL advisory lock held by the transaction: replicas
/// starting together on a fresh database would otherwise race on the migration table and the
/// DDL, and all but one would crash. PostgreSQL DDL is transactional, so a failed migration
/// leaves nothing half-done.
async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    // Any constant shared by every service works: each service has its own database.
    const MIGRATION_LOCK: i64 = 0x5a6a_0001;
    let txn = db.begin().await?;
    txn.execute_raw(crate::db::stmt(
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK.into()],
    ))
    .await?;
    M::up(&txn, None).await?;
    txn.commit().await
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::MigrationTrait;

    use super::*;

    struct NoMigrations;

    impl MigratorTrait for NoMigrations {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            Vec::new()
        }
    }

    #[tokio::test]
    async fn a_start_up_failure_does_not_show_the_database_password() {
        let mut settings = ServiceSettings::new(0, "unused");
        // The driver quotes a URL it cannot parse in its message.
        settings.database.url = "postgres://app:pa55-w0rd@127.0.0.1:not-a-port/x".into();
        let Err(error) = Foundation::prepare::<NoMigrations>(&settings).await else {
            panic!("a URL without a valid port cannot connect");
        };
        assert!(
            error
                .to_string()
                .starts_with("cannot connect to PostgreSQL")
        );
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("pa55-w0rd"), "{shown}");
            assert!(shown.contains("postgres://app:***@127.0.0.1"), "{shown}");
        }
    }
}
