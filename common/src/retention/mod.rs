//! Data lifecycle: what each service removes, and when (`retention.*` settings).
//!
//! - this file: a [`Rule`] (one table, the window it follows, which rows are old enough, the
//!   rows depending on them) and [`Retention`], a service's rule set: the shared outbox and inbox
//!   rules ([`shared`]) and its own history rules, carried by `Service::retention`.
//! - [`pruner`]: [`Pruner`] runs the rules a batch at a time, on the schedule or on request
//!   (`POST /api/admin/retention/prune`, `crate::http::retention`), and logs one line per run.
//!
//! Every batch is one short statement: the oldest eligible keys, `FOR UPDATE SKIP LOCKED`, and
//! the delete of their rows (dependents first, in the same statement). Old rows are found by a
//! range on an existing key: the fleet's ids are UUIDv7 or BIGSERIAL, so in time order; the row's
//! own timestamp is always checked too, so an id that is not time-ordered is never taken early.

pub mod pruner;
pub mod shared;

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::configuration::RetentionSettings;

pub use pruner::{PruneReport, Pruner, RuleReport};

/// Added to `retention.inbox_window` before an inbox entry goes: the sender's clock (which
/// stamps `occurred_at`, the time the dedup window is judged by) may run ahead of the database
/// clock that wrote `received_at`. Five minutes is far beyond NTP-kept drift.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Which setting a rule's age limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// `retention.published_outbox`.
    PublishedOutbox,
    /// `retention.inbox_window` plus [`CLOCK_SKEW_MARGIN`].
    Inbox,
    /// `retention.history`.
    History,
}

impl Window {
    /// How long a row of this window is kept.
    pub fn keep(self, settings: &RetentionSettings) -> Duration {
        match self {
            Self::PublishedOutbox => settings.published_outbox,
            Self::Inbox => settings.inbox_window + CLOCK_SKEW_MARGIN,
            Self::History => settings.history,
        }
    }

    /// Rows older than this may go.
    pub fn cutoff(self, settings: &RetentionSettings, now: DateTime<Utc>) -> DateTime<Utc> {
        let keep = chrono::Duration::from_std(self.keep(settings)).unwrap_or(chrono::Duration::MAX);
        now.checked_sub_signed(keep)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// The smallest UUIDv7 of `time`'s millisecond: every v7 id made at or after `time` is at least
/// this, so `id < floor` is a key range holding only ids made before it.
pub fn uuid_v7_floor(time: DateTime<Utc>) -> Uuid {
    let millis = u128::try_from(time.timestamp_millis()).unwrap_or(0) & ((1 << 48) - 1);
    Uuid::from_u128(millis << 80)
}

/// The type of a rule's key: the cursor a run advances along it is sent as text and cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    BigInt,
    Uuid,
}

impl KeyType {
    fn sql(self) -> &'static str {
        match self {
            Self::BigInt => "bigint",
            Self::Uuid => "uuid",
        }
    }

    /// Below every key the fleet writes (BIGSERIAL starts at 1; the nil UUID is never an id).
    fn start(self) -> &'static str {
        match self {
            Self::BigInt => "0",
            Self::Uuid => "00000000-0000-0000-0000-000000000000",
        }
    }
}

/// One table's pruning. `eligible` is the condition on the table's rows, with `$1` the cutoff
/// (`timestamptz`), `$2` the cutoff's [`uuid_v7_floor`] and `$4` the scope (`text`, see
/// `scopes`); the pruner adds the key order, the limit and the lock.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The table, which also names the rule in reports and logs.
    pub table: &'static str,
    pub window: Window,
    /// A column unique in `table` (with the scope), indexed so that `eligible` is a range on it.
    pub key: &'static str,
    pub key_type: KeyType,
    pub eligible: String,
    /// A query (`$1` the cutoff) whose `scope` rows each get a pass of their own, as `$4`: the
    /// inbox's consumers, the outbox's id bound. `None`: one pass.
    pub scopes: Option<&'static str>,
    /// Tables whose rows refer to the removed ones, `(table, column)`: removed with them, in the
    /// same statement, before them (their foreign keys are checked at its end).
    pub dependents: Vec<(&'static str, &'static str)>,
}

impl Rule {
    /// A history rule (`retention.history`) keyed by a UUIDv7 column.
    pub fn history(table: &'static str, key: &'static str, eligible: &str) -> Self {
        Self {
            table,
            window: Window::History,
            key,
            key_type: KeyType::Uuid,
            eligible: eligible.to_owned(),
            scopes: None,
            dependents: Vec::new(),
        }
    }

    /// `table`'s rows whose `column` names a removed row go with it.
    pub fn with_dependent(mut self, table: &'static str, column: &'static str) -> Self {
        self.dependents.push((table, column));
        self
    }

    /// One batch: lock up to `$3` eligible keys above the cursor `$5`, delete their dependents
    /// and their rows; returns the last key (the next cursor) and the rows removed per table.
    fn batch_sql(&self) -> String {
        let (table, key, cast) = (self.table, self.key, self.key_type.sql());
        let mut sql = format!(
            "WITH doomed AS (SELECT ctid AS row, {key} AS key FROM {table} \
             WHERE {key} > $5::{cast} AND ({eligible}) \
             ORDER BY {key} LIMIT $3 FOR UPDATE SKIP LOCKED)",
            eligible = self.eligible
        );
        let mut counts = Vec::with_capacity(self.dependents.len() + 1);
        for (index, (dependent, column)) in self.dependents.iter().enumerate() {
            sql.push_str(&format!(
                ", gone_{index} AS (DELETE FROM {dependent} \
                 WHERE {column} = ANY(ARRAY(SELECT key FROM doomed)) RETURNING 1)"
            ));
            counts.push(format!(
                "'{dependent}', (SELECT count(*) FROM gone_{index})"
            ));
        }
        // By row address: the rows are locked, so it cannot change, and a scoped key (the
        // inbox's message id, unique per consumer) needs no scope here.
        sql.push_str(&format!(
            ", gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT row FROM doomed)) \
             RETURNING 1) \
             SELECT (SELECT d.key FROM doomed d ORDER BY d.key DESC LIMIT 1)::text AS last, \
             jsonb_build_object('{table}', (SELECT count(*) FROM gone){dependents})::text AS removed",
            dependents = counts
                .iter()
                .map(|count| format!(", {count}"))
                .collect::<String>()
        ));
        sql
    }

    /// A dry run's count: the eligible rows, up to `$3` (what one run would take).
    fn count_sql(&self) -> String {
        format!(
            "SELECT count(*) AS n FROM (SELECT 1 FROM {table} WHERE {key} > $5::{cast} AND ({eligible}) \
             LIMIT $3) AS eligible",
            table = self.table,
            key = self.key,
            cast = self.key_type.sql(),
            eligible = self.eligible
        )
    }
}

/// A service's rules: the shared outbox and inbox rules and its own history rules.
#[derive(Debug, Clone)]
pub struct Retention {
    rules: Vec<Rule>,
}

impl Default for Retention {
    fn default() -> Self {
        Self::shared()
    }
}

impl Retention {
    /// The outbox and inbox rules every service database needs.
    pub fn shared() -> Self {
        Self {
            rules: vec![shared::outbox(), shared::inbox()],
        }
    }

    /// Published outbox rows go only where `condition` (on `outbox`'s columns) holds too: the
    /// orchestrator keeps the rows of sagas still in flight.
    pub fn outbox_only_where(mut self, condition: &str) -> Self {
        self.rules = self
            .rules
            .into_iter()
            .map(|rule| match rule.table {
                "outbox" => Rule {
                    eligible: format!("{} AND ({condition})", rule.eligible),
                    ..rule
                },
                _ => rule,
            })
            .collect();
        self
    }

    /// Adds a service's own rule.
    pub fn with(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v7_floor_is_below_every_id_made_from_its_millisecond_on() {
        let now = Utc::now();
        let floor = uuid_v7_floor(now);
        assert!(floor <= Uuid::now_v7());
        let before = uuid_v7_floor(now - chrono::Duration::milliseconds(2));
        assert!(before < floor);
    }

    #[test]
    fn the_inbox_keeps_its_window_and_the_clock_skew_margin() {
        let settings = RetentionSettings::default();
        let now = Utc::now();
        assert_eq!(
            now - Window::Inbox.cutoff(&settings, now),
            chrono::Duration::days(7) + chrono::Duration::minutes(5)
        );
        assert_eq!(
            now - Window::PublishedOutbox.cutoff(&settings, now),
            chrono::Duration::minutes(10)
        );
    }
}
