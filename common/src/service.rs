//! The start-up and run sequence every service shares: connect to PostgreSQL, run migrations,
//! bind the HTTP port, then serve HTTP and messaging side by side until stopped.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;

use crate::configuration::ServiceSettings;
use crate::http::health::Readiness;
use crate::messaging::outbox::RelayWakeup;
use crate::messaging::{BrokerStatus, MessageHandler, Messaging};
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Database(#[source] sea_orm::DbErr),
    #[error("database migration failed: {0}")]
    Migration(#[source] sea_orm::DbErr),
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
            .map_err(StartupError::Database)?;
        migrate::<M>(&db).await.map_err(StartupError::Migration)?;
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

/// Serves HTTP and messaging until `shutdown`, then stops both: HTTP first (no new work), then
/// the consumer (deliveries in flight finish), then a last outbox flush.
pub async fn run<H: MessageHandler>(
    listener: TcpListener,
    router: Router,
    messaging: Messaging<H>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let db = messaging.db.clone();
    let http = crate::http::server::serve(listener, router, shutdown.clone());
    let broker = messaging.run(shutdown.clone());
    let (http, ()) = tokio::join!(
        async {
            let outcome = http.await;
            // If the server dies on its own, take the rest of the service down with it.
            shutdown.trigger();
            outcome
        },
        broker
    );
    let _ = db.close().await;
    tracing::info!("service stopped");
    http
}
