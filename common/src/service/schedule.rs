//! A job on a cron schedule (tokio-cron-scheduler) that never overlaps itself and stops cleanly:
//! the timeout sweep and the retention pruner both run through [`start`].

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use crate::shutdown::Shutdown;

/// Runs `job` on `schedule` (a cron expression with seconds) until `stop`. A run still going
/// when the next is due is not doubled: the next one is skipped. On `stop` the schedule ends and
/// the task returned waits for a run in progress, then ends; `what` names it in the logs.
pub async fn start<F, Fut>(
    what: &'static str,
    schedule: &str,
    stop: Shutdown,
    job: F,
) -> Result<JoinHandle<()>, JobSchedulerError>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let scheduler = JobScheduler::new().await?;
    let running = Arc::new(Mutex::new(()));
    let (job_running, job_stop, job) = (running.clone(), stop.clone(), Arc::new(job));
    let cron = Job::new_async(schedule, move |_, _| {
        let (running, stop, job) = (job_running.clone(), job_stop.clone(), job.clone());
        Box::pin(async move {
            let Ok(_guard) = running.try_lock() else {
                return;
            };
            if stop.is_triggered() {
                return;
            }
            job().await;
        })
    })?;
    scheduler.add(cron).await?;
    scheduler.start().await?;
    Ok(tokio::spawn(async move {
        stop.wait().await;
        let mut scheduler = scheduler;
        if let Err(error) = scheduler.shutdown().await {
            tracing::warn!(%error, job = what, "scheduler did not stop cleanly");
        }
        // The lock is free once no run is going, and no new one starts.
        let _ = running.lock().await;
        tracing::info!(job = what, "scheduled job stopped");
    }))
}
