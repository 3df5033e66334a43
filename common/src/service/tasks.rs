//! A service's long-running tasks and the order in which they stop.
//!
//! Two tiers: the front (the HTTP server and the tasks a service adds, such as a scheduler)
//! takes work in and writes outbox rows; the back (consumers and outbox relay) delivers them.
//! On the stop signal the front stops first, then the back, so the relay's last flush publishes
//! what the front committed. The whole stop is bounded by the grace period, counted from the
//! signal: the front gets half of it, so that a front task that hangs still leaves the back
//! time to drain and flush. A task that ends on its own, or fails, stops all the others.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::shutdown::Shutdown;

pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

type Run =
    Box<dyn FnOnce(Shutdown) -> Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>> + Send>;

/// A named long-running task, started with the signal it must stop on.
pub struct Task {
    name: &'static str,
    run: Run,
}

impl Task {
    /// `run` gets the signal to watch; it returns once it has stopped (or failed).
    pub fn new<F, Fut>(name: &'static str, run: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        Self {
            name,
            run: Box::new(move |stop| Box::pin(run(stop))),
        }
    }

    /// A task that runs `tick` every `period` until the stop signal (a late tick is delayed,
    /// not doubled). A failing tick is logged once, with `failing` as the message, until one
    /// succeeds again (then once more, at info); the task itself never fails.
    pub fn every<F, Fut, E>(
        name: &'static str,
        period: Duration,
        failing: &'static str,
        mut tick: F,
    ) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        Self::new(name, move |stop| async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failed = false;
            loop {
                tokio::select! {
                    () = stop.wait() => return Ok(()),
                    _ = ticks.tick() => {}
                }
                match tick().await {
                    Ok(()) if failed => {
                        failed = false;
                        tracing::info!(task = name, "{name} works again");
                    }
                    Ok(()) => {}
                    Err(error) if !failed => {
                        failed = true;
                        tracing::warn!(%error, task = name, "{failing}");
                    }
                    Err(_) => {}
                }
            }
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Which task brought the service down, or did not stop in time, and why.
#[derive(Debug, thiserror::Error)]
#[error("task `{task}` {reason}")]
pub struct TaskFailed {
    pub task: &'static str,
    pub reason: String,
}

/// Runs both tiers until `shutdown` (or until a task ends on its own), then stops the front
/// tier (within half of `grace`), then the back one (within `grace`). Every task's end is logged with its name; the
/// first failure is returned.
pub async fn supervise(
    shutdown: Shutdown,
    grace: Duration,
    front: Vec<Task>,
    back: Vec<Task>,
) -> Result<(), TaskFailed> {
    let back_stop = Shutdown::new();
    let front_tier = async {
        let watched = front
            .into_iter()
            .map(|task| watch(task, shutdown.clone(), &shutdown, grace / 2));
        let failures = futures_util::future::join_all(watched).await;
        back_stop.trigger();
        failures
    };
    let back_tier = futures_util::future::join_all(
        back.into_iter()
            .map(|task| watch(task, back_stop.clone(), &shutdown, grace)),
    );
    let (front, back) = tokio::join!(front_tier, back_tier);
    match front.into_iter().chain(back).flatten().next() {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// Runs one task with `stop`; a task still running `grace` after `shutdown` is given up.
async fn watch(
    task: Task,
    stop: Shutdown,
    shutdown: &Shutdown,
    grace: Duration,
) -> Option<TaskFailed> {
    let name = task.name;
    let deadline = async {
        shutdown.wait().await;
        tokio::time::sleep(grace).await;
    };
    let reason = tokio::select! {
        result = (task.run)(stop) => match result {
            Ok(()) if shutdown.is_triggered() => {
                tracing::info!(task = name, "task stopped");
                return None;
            }
            Ok(()) => "ended before the stop signal".to_owned(),
            Err(error) => format!("failed: {error}"),
        },
        () = deadline => format!("did not stop within the grace period ({} ms)", grace.as_millis()),
    };
    tracing::error!(task = name, %reason, "task ended; stopping the service");
    shutdown.trigger();
    Some(TaskFailed { task: name, reason })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type Log = Arc<Mutex<Vec<&'static str>>>;

    /// Stops `delay` after its signal, writing `name` to `log` as it does.
    fn stopping(name: &'static str, delay: Duration, log: &Log) -> Task {
        let log = log.clone();
        Task::new(name, move |stop| async move {
            stop.wait().await;
            tokio::time::sleep(delay).await;
            log.lock().unwrap().push(name);
            Ok(())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_back_tier_is_told_to_stop_only_after_the_front_tier_stopped() {
        let log = Log::default();
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let outcome = supervise(
            shutdown,
            Duration::from_secs(10),
            vec![
                stopping("http", Duration::from_millis(300), &log),
                stopping("scheduler", Duration::from_millis(100), &log),
            ],
            vec![stopping("messaging", Duration::ZERO, &log)],
        )
        .await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(*log.lock().unwrap(), ["scheduler", "http", "messaging"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_ignoring_the_signal_is_given_up_at_the_end_of_the_grace_period() {
        let log = Log::default();
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let started = tokio::time::Instant::now();
        let stubborn = Task::new("stubborn", |_| std::future::pending());
        let failure = supervise(
            shutdown,
            Duration::from_secs(2),
            vec![stubborn],
            vec![stopping("messaging", Duration::ZERO, &log)],
        )
        .await
        .unwrap_err();
        assert_eq!(failure.task, "stubborn");
        assert!(
            failure.reason.contains("grace period"),
            "{}",
            failure.reason
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "half the grace period"
        );
        assert_eq!(
            *log.lock().unwrap(),
            ["messaging"],
            "the back tier still stopped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_fails_stops_the_others_and_is_named() {
        let log = Log::default();
        let failing = Task::new("scheduler", |_| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<(), TaskError>("cron is broken".into())
        });
        let failure = supervise(
            Shutdown::new(),
            Duration::from_secs(10),
            vec![stopping("http", Duration::ZERO, &log), failing],
            vec![stopping("messaging", Duration::ZERO, &log)],
        )
        .await
        .unwrap_err();
        assert_eq!(failure.task, "scheduler");
        assert_eq!(failure.reason, "failed: cron is broken");
        assert_eq!(*log.lock().unwrap(), ["http", "messaging"]);
    }
}
