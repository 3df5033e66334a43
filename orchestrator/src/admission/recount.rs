//! The database's count of sagas in flight, read every `admission.recount_interval_ms`: at start
//! it seeds the running count (orders accepted before a restart), afterwards it corrects it for
//! what this process cannot see (another instance's orders and ends, an end whose commit
//! failed). Between counts the process keeps the count itself, so no request waits on a query.
//!
//! The count walks the `PENDING` entries of `orders_by_status` (`status` first): its cost
//! follows the sagas in flight, a bounded number, not the table's size.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use saga_common::service::Task;

use super::Admission;

/// Sagas not yet ended. `status` is generated from the saga's state, so this is exact.
pub const COUNT_IN_FLIGHT: &str = "SELECT count(*) AS n FROM orders WHERE status = 'PENDING'";

/// Counts the sagas in flight and corrects `admission`'s count with it; returns the count.
pub async fn recount(db: &impl ConnectionTrait, admission: &Admission) -> Result<i64, DbErr> {
    // Read before the query: what changes here while it runs is kept on top of its result.
    let before = admission.counted();
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, COUNT_IN_FLIGHT))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the count of sagas in flight".into()))?;
    let counted: i64 = row.try_get("", "n")?;
    admission.corrected(counted, before);
    Ok(counted)
}

/// The front-tier task that recounts until the stop signal. A failed count (the database away)
/// keeps the running count and is logged once until a count succeeds again.
pub fn task<C>(db: C, admission: Admission) -> Task
where
    C: ConnectionTrait + Send + Sync + 'static,
{
    let every = Duration::from_millis(admission.settings().recount_interval_ms.max(10));
    let db = std::sync::Arc::new(db);
    Task::every(
        "admission recount",
        every,
        "cannot count the sagas in flight; admitting on this process's own count until it can",
        move || {
            let (db, admission) = (db.clone(), admission.clone());
            async move { recount(&*db, &admission).await.map(drop) }
        },
    )
}
