//! Runs a service's [`Retention`] rules: each rule a batch at a time (`retention.batch_size` rows,
//! one short statement and transaction each), `retention.batch_pause` between batches, at most
//! `retention.max_batches_per_run` batches per rule and scope; what is left waits for the next
//! run. Rows locked by someone else (another instance's pruner, a writer) are skipped, so several
//! instances can prune side by side.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr, FromQueryResult, Value};
use serde::Serialize;
use tokio_cron_scheduler::JobSchedulerError;
use utoipa::ToSchema;

use super::{Retention, Rule, uuid_v7_floor};
use crate::configuration::RetentionSettings;
use crate::db::stmt;
use crate::service::schedule;
use crate::shutdown::Shutdown;

/// What one run removed (or, dry, would remove), rule by rule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PruneReport {
    /// `true`: nothing was removed; `removed` counts what a run would take now.
    pub dry_run: bool,
    pub elapsed_ms: u64,
    pub rules: Vec<RuleReport>,
}

/// One rule's part of a run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleReport {
    /// The rule's table (`outbox`, `inbox`, `orders`, `payments`, `reservations`).
    pub rule: &'static str,
    /// Rows older than this were eligible.
    pub cutoff: DateTime<Utc>,
    /// Rows removed per table: the rule's table and the rows depending on them (transitions,
    /// reservation lines). A dry run counts the rule's table only, up to `batch_size ×
    /// max_batches_per_run` per scope (what one run would take).
    pub removed: BTreeMap<String, u64>,
    /// Batches run (0 in a dry run).
    pub batches: u32,
}

impl PruneReport {
    /// The run's counts per table, summed over rules: `outbox=12 inbox=0 ...`.
    fn summary(&self) -> String {
        let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
        for rule in &self.rules {
            for (table, count) in &rule.removed {
                *totals.entry(table).or_default() += count;
            }
        }
        totals
            .iter()
            .map(|(table, count)| format!("{table}={count}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(FromQueryResult)]
struct Scope {
    scope: String,
}

#[derive(FromQueryResult)]
struct Batch {
    last: Option<String>,
    removed: String,
}

#[derive(FromQueryResult)]
struct Count {
    n: i64,
}

/// A service's pruner: its database, its settings and its rules.
#[derive(Clone)]
pub struct Pruner {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    settings: RetentionSettings,
    rules: Vec<Rule>,
    /// One run at a time per instance: a request while the scheduled run goes waits for it.
    running: tokio::sync::Mutex<()>,
    /// Triggered when the service stops: runs (scheduled or requested) end between batches.
    stopping: Shutdown,
}

impl Pruner {
    pub fn new(db: DatabaseConnection, settings: RetentionSettings, retention: &Retention) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                settings,
                rules: retention.rules().to_vec(),
                running: tokio::sync::Mutex::new(()),
                stopping: Shutdown::new(),
            }),
        }
    }

    /// One run of every rule (`dry_run`: counts only); once the service stops, it ends between
    /// two batches.
    pub async fn run(&self, dry_run: bool) -> Result<PruneReport, DbErr> {
        let _one_at_a_time = self.inner.running.lock().await;
        let started = Instant::now();
        let now = Utc::now();
        let mut rules = Vec::with_capacity(self.inner.rules.len());
        for rule in &self.inner.rules {
            let cutoff = rule.window.cutoff(&self.inner.settings, now);
            // Every table the rule touches is named, with 0 when nothing went.
            let removed = std::iter::once(rule.table)
                .chain(rule.dependents.iter().map(|(table, _)| *table))
                .filter(|table| !dry_run || *table == rule.table)
                .map(|table| (table.to_owned(), 0))
                .collect();
            let mut report = RuleReport {
                rule: rule.table,
                cutoff,
                removed,
                batches: 0,
            };
            for scope in self.scopes(rule, cutoff).await? {
                if dry_run {
                    let n = self.count(rule, cutoff, &scope).await?;
                    *report.removed.entry(rule.table.to_owned()).or_default() += n;
                } else {
                    self.prune(rule, cutoff, &scope, &mut report).await?;
                }
            }
            rules.push(report);
        }
        let report = PruneReport {
            dry_run,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            rules,
        };
        tracing::info!(
            dry_run,
            elapsed_ms = report.elapsed_ms,
            removed = %report.summary(),
            "retention run"
        );
        Ok(report)
    }

    /// The rule's passes: one per scope, or a single one.
    async fn scopes(&self, rule: &Rule, cutoff: DateTime<Utc>) -> Result<Vec<String>, DbErr> {
        let Some(sql) = rule.scopes else {
            return Ok(vec![String::new()]);
        };
        let scopes = Scope::find_by_statement(stmt(sql, [Value::from(cutoff)]))
            .all(&self.inner.db)
            .await?;
        Ok(scopes.into_iter().map(|s| s.scope).collect())
    }

    fn values(&self, rule: &Rule, cutoff: DateTime<Utc>, scope: &str, limit: i64) -> Vec<Value> {
        vec![
            cutoff.into(),
            uuid_v7_floor(cutoff).into(),
            limit.into(),
            scope.into(),
            rule.key_type.start().into(),
        ]
    }

    async fn count(&self, rule: &Rule, cutoff: DateTime<Utc>, scope: &str) -> Result<u64, DbErr> {
        let settings = &self.inner.settings;
        let cap = i64::from(settings.batch_size) * i64::from(settings.max_batches_per_run);
        let count = Count::find_by_statement(stmt(
            &rule.count_sql(),
            self.values(rule, cutoff, scope, cap),
        ))
        .one(&self.inner.db)
        .await?;
        Ok(count.map_or(0, |c| u64::try_from(c.n).unwrap_or(0)))
    }

    /// Batches until a batch takes less than a full one, the run's limit, or `stop`.
    async fn prune(
        &self,
        rule: &Rule,
        cutoff: DateTime<Utc>,
        scope: &str,
        report: &mut RuleReport,
    ) -> Result<(), DbErr> {
        let (settings, stop) = (&self.inner.settings, &self.inner.stopping);
        let sql = rule.batch_sql();
        let mut values = self.values(rule, cutoff, scope, i64::from(settings.batch_size));
        for batch in 0..settings.max_batches_per_run {
            if batch > 0 {
                tokio::select! {
                    () = tokio::time::sleep(settings.batch_pause) => {}
                    () = stop.wait() => return Ok(()),
                }
            }
            // Autocommitted: the statement is its own transaction, its locks held only while it runs.
            let Some(done) = Batch::find_by_statement(stmt(&sql, values.clone()))
                .one(&self.inner.db)
                .await?
            else {
                return Ok(());
            };
            report.batches += 1;
            let removed: BTreeMap<String, u64> = serde_json::from_str(&done.removed)
                .map_err(|e| DbErr::Custom(format!("unreadable prune counts: {e}")))?;
            let own = removed.get(rule.table).copied().unwrap_or(0);
            for (table, count) in removed {
                *report.removed.entry(table).or_default() += count;
            }
            match done.last {
                Some(last) if own >= u64::from(settings.batch_size) => values[4] = last.into(),
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// The pruner's task: runs on `retention.schedule` (when `retention.enabled`) until `stop`,
    /// then ends the runs in progress, scheduled or requested, between two batches. A failed
    /// run is logged and the next one retries.
    pub async fn serve(self, stop: Shutdown) -> Result<(), JobSchedulerError> {
        let scheduled = if self.inner.settings.enabled {
            let pruner = self.clone();
            let schedule = self.inner.settings.schedule.clone();
            Some(
                schedule::start("retention", &schedule, stop.clone(), move || {
                    let pruner = pruner.clone();
                    async move {
                        if let Err(error) = pruner.run(false).await {
                            tracing::warn!(%error, "retention run failed; the next run retries");
                        }
                    }
                })
                .await?,
            )
        } else {
            None
        };
        stop.wait().await;
        self.inner.stopping.trigger();
        if let Some(scheduled) = scheduled {
            let _ = scheduled.await;
        }
        // A requested run still going ends at its next batch; wait for it too.
        let _ = self.inner.running.lock().await;
        Ok(())
    }
}
