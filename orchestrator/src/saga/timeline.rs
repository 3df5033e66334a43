//! The saga's timeline: one row per step, appended by the step writer
//! ([`engine`](super::engine)) and read back for `GET /api/orders/{id}/timeline`.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use saga_common::db::{self, Part, stmt};

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
    pub occurred_at: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct EntryRow {
    from_state: Option<String>,
    to_state: String,
    trigger: String,
    message_id: Uuid,
    commands: Vec<String>,
    occurred_at: DateTime<Utc>,
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
        })
    }
}

/// One timeline entry as [`transitions_part`] writes it.
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
}

/// Appends `rows` to the timeline, in this order, as a part of a
/// [`Writes`](saga_common::db::Writes); with `sagas` (a query of order ids, such as another
/// part's `RETURNING`), only the rows of those orders.
pub fn transitions_part(
    rows: &[TransitionRow<'_>],
    sagas: Option<&str>,
) -> Result<Option<Part>, DbErr> {
    if rows.is_empty() {
        return Ok(None);
    }
    let filter = sagas
        .map(|sagas| format!("WHERE t.order_id IN ({sagas}) "))
        .unwrap_or_default();
    Ok(Some(Part::new(
        format!(
            "INSERT INTO saga_transitions (order_id, from_state, to_state, trigger, message_id, commands) \
             SELECT t.order_id, t.from_state, t.to_state, t.trigger, t.message_id, t.commands \
             FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (order_id uuid, from_state text, \
               to_state text, trigger text, message_id uuid, commands text[])) WITH ORDINALITY \
               AS t(order_id, from_state, to_state, trigger, message_id, commands, ordinality) \
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
        "SELECT from_state, to_state, trigger, message_id, commands, occurred_at \
         FROM saga_transitions WHERE order_id = $1 ORDER BY id",
        [order_id.into()],
    ))
    .all(db)
    .await?
    .into_iter()
    .map(TimelineEntry::try_from)
    .collect()
}
