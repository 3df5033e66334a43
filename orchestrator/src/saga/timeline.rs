//! The saga's timeline: one row per step, appended by the step writer
//! ([`engine`](super::engine)) and read back for `GET /api/orders/{id}/timeline`.
//!
//! A resend that repeats the saga's latest entry (same trigger, states and commands) is not a
//! new row: [`stage`] counts it on that entry (`repeat_count`, `last_repeated_at`), so a saga
//! stuck on a participant that is down keeps one row however long the outage lasts.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use saga_common::db::{self, Part, PartName, Writes, stmt};

use super::status::StateName;

/// One saga transition, for the timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// Null for the first entry (the order was placed).
    pub from_state: Option<StateName>,
    pub to_state: StateName,
    /// The message type (or `order.placed`) that caused the transition.
    #[schema(example = "payment.charged")]
    pub trigger: String,
    /// Id of that message (for `order.placed`, the id the request was given).
    pub message_id: Uuid,
    /// Message types sent as a result.
    #[schema(example = json!(["inventory.reserve"]))]
    pub commands: Vec<String>,
    /// When the step first happened.
    pub occurred_at: DateTime<Utc>,
    /// How many times the step happened in a row: more than 1 only for a resend repeated at
    /// successive deadlines (or operator retries), which is counted here rather than listed.
    #[schema(example = 1, minimum = 1)]
    pub repeat_count: i32,
    /// When it last happened; null while it happened once.
    pub last_repeated_at: Option<DateTime<Utc>>,
}

#[derive(FromQueryResult)]
struct EntryRow {
    from_state: Option<String>,
    to_state: String,
    trigger: String,
    message_id: Uuid,
    commands: Vec<String>,
    occurred_at: DateTime<Utc>,
    repeat_count: i32,
    last_repeated_at: Option<DateTime<Utc>>,
}

fn state_name(name: &str) -> Result<StateName, DbErr> {
    StateName::parse(name)
        .ok_or_else(|| DbErr::Custom(format!("the timeline holds an unknown state {name}")))
}

impl TryFrom<EntryRow> for TimelineEntry {
    type Error = DbErr;

    fn try_from(row: EntryRow) -> Result<Self, DbErr> {
        Ok(Self {
            from_state: row.from_state.as_deref().map(state_name).transpose()?,
            to_state: state_name(&row.to_state)?,
            trigger: row.trigger,
            message_id: row.message_id,
            commands: row.commands,
            occurred_at: row.occurred_at,
            repeat_count: row.repeat_count,
            last_repeated_at: row.last_repeated_at,
        })
    }
}

/// One timeline entry as [`stage`] writes it.
#[derive(Debug, Serialize)]
pub struct TransitionRow<'a> {
    pub order_id: Uuid,
    /// `None` for the first entry (the order was placed).
    pub from_state: Option<&'a str>,
    pub to_state: &'a str,
    pub trigger: &'a str,
    pub message_id: Uuid,
    /// Message types sent as a result.
    pub commands: Vec<String>,
    /// A resend that is counted on the saga's latest entry when it repeats it. Only for the
    /// first step of its saga in a statement: a later one's latest entry is not written yet.
    pub repeatable: bool,
}

/// Names of the parts [`stage`] adds.
const TIMELINE: PartName = PartName::new("timeline");
const REPEATS: PartName = PartName::new("timeline_repeats");

/// Adds `rows` to `writes`: the repeatable ones that repeat their saga's latest entry count on
/// it, the others are appended in this order; with `sagas` (a query of order ids, such as
/// another part's `RETURNING`), only the rows of those orders.
pub fn stage(
    writes: &mut Writes,
    rows: &[TransitionRow<'_>],
    sagas: Option<&str>,
) -> Result<(), DbErr> {
    let repeats: Vec<&TransitionRow<'_>> = rows.iter().filter(|r| r.repeatable).collect();
    let repeated = !repeats.is_empty();
    writes.add(REPEATS, repeats_part(&repeats, sagas)?);
    writes.add(TIMELINE, insert_part(rows, sagas, repeated)?);
    Ok(())
}

/// Counts each repeat on its saga's latest entry, if that entry is the same step; returns the
/// order ids counted.
fn repeats_part(rows: &[&TransitionRow<'_>], sagas: Option<&str>) -> Result<Option<Part>, DbErr> {
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(Part::new(repeats_sql(sagas), vec![db::rows(rows)?])))
}

/// The statement of [`repeats_part`] (public for the plan test). The latest entry of each saga
/// is found by key (`saga_transitions_by_order`, walked backwards, one row), then updated by
/// its primary key. `OFFSET 0` keeps the rows and their latest ids a subquery of their own: as
/// one flat join, the generic plan walked every transition and compared each with every row.
pub fn repeats_sql(sagas: Option<&str>) -> String {
    let filter = sagas
        .map(|sagas| format!("AND r.order_id IN ({sagas}) "))
        .unwrap_or_default();
    format!(
        "UPDATE saga_transitions s SET repeat_count = s.repeat_count + 1, \
           last_repeated_at = now() \
         FROM (SELECT t.*, latest.id FROM jsonb_to_recordset($1::jsonb) AS t(order_id uuid, \
             from_state text, to_state text, trigger text, commands text[]) \
           CROSS JOIN LATERAL (SELECT l.id FROM saga_transitions l \
             WHERE l.order_id = t.order_id ORDER BY l.id DESC LIMIT 1) latest OFFSET 0) r \
         WHERE s.id = r.id AND s.trigger = r.trigger \
           AND s.from_state IS NOT DISTINCT FROM r.from_state AND s.to_state = r.to_state \
           AND s.commands = r.commands {filter}RETURNING s.order_id"
    )
}

/// Appends `rows`, in this order, but those counted by the part [`REPEATS`] (when `repeated`:
/// the part was added).
fn insert_part(
    rows: &[TransitionRow<'_>],
    sagas: Option<&str>,
    repeated: bool,
) -> Result<Option<Part>, DbErr> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut conditions = Vec::new();
    if let Some(sagas) = sagas {
        conditions.push(format!("t.order_id IN ({sagas})"));
    }
    if repeated {
        conditions.push(format!(
            "NOT (t.repeatable AND t.order_id IN (SELECT order_id FROM {REPEATS}))"
        ));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conditions.join(" AND "))
    };
    Ok(Some(Part::new(
        format!(
            "INSERT INTO saga_transitions (order_id, from_state, to_state, trigger, message_id, commands) \
             SELECT t.order_id, t.from_state, t.to_state, t.trigger, t.message_id, t.commands \
             FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (order_id uuid, from_state text, \
               to_state text, trigger text, message_id uuid, commands text[], repeatable boolean)) \
               WITH ORDINALITY AS t(order_id, from_state, to_state, trigger, message_id, commands, \
               repeatable, ordinality) \
             {filter}ORDER BY t.ordinality RETURNING 1"
        ),
        vec![db::rows(rows)?],
    )))
}

/// The timeline of `order_id`, oldest first.
pub async fn timeline(
    db: &impl ConnectionTrait,
    order_id: Uuid,
) -> Result<Vec<TimelineEntry>, DbErr> {
    EntryRow::find_by_statement(stmt(
        "SELECT from_state, to_state, trigger, message_id, commands, occurred_at, repeat_count, \
           last_repeated_at FROM saga_transitions WHERE order_id = $1 ORDER BY id",
        [order_id.into()],
    ))
    .all(db)
    .await?
    .into_iter()
    .map(TimelineEntry::try_from)
    .collect()
}
