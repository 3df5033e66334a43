//! The one writer of saga steps, inside the caller's transaction. The order intake (first
//! steps), the reply consumer (a batch of replies at a time), the timeout worker and the
//! operator API all go through here, so a step is always written the same way: version-checked
//! state, deadline, timeline entry and outbox messages together.
//!
//! [`plan`](super::plan) decides steps in memory; [`stage`] adds any number of them to a
//! statement (one part per table, and the sales rollups of the sagas it ends, see
//! [`rollup`](super::rollup)); [`write`] runs one of them; [`apply`] plans and writes one.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

use saga_common::db::{PartName, Writes};
use saga_common::messaging::outbox::{self, Enqueued, OUTBOX};

use super::machine::{SagaEvent, SagaState};
use super::plan::{ApplyError, Plan, Trigger, plan};
use super::rollup;
use super::store::{self, Advance, Saga, Step};
use super::timeline::{self, TransitionRow};
use crate::configuration::SagaSettings;

#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The saga moved (or resent its pending command), writing these outbox rows: the caller
    /// hands them to the relay once it commits.
    Stepped(Step, Enqueued),
    /// A duplicate or late event: nothing to write.
    Ignored,
    /// Another writer changed the saga since it was read. Part of the step may have been
    /// written: the caller rolls back.
    Conflict,
}

/// Name of the part [`stage`] moves sagas with (the timeline's are [`timeline::stage`]'s).
const SAGAS: PartName = PartName::new("sagas");

/// Adds `plans` (several may be successive steps of one saga, in order) to `writes`: the saga
/// rows of the steps after a first one (a first step's columns go into its order's insert, see
/// [`store::StepColumns`]), the timeline and the outbox; with `sagas` (a query of order ids),
/// only the timeline and messages of those sagas. `resent` names, per plan, the type of the
/// command it resends, already copied in the outbox. Returns the outbox rows to read back once
/// the statement ran, and how many saga rows it must have moved.
pub fn stage(
    writes: &mut Writes,
    plans: &[Plan],
    resent: &[Option<String>],
    sagas: Option<&str>,
) -> Result<(outbox::Insert, usize), DbErr> {
    // One row per saga: the version its first step was planned on, the state of its last.
    let mut advances: Vec<Advance> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for plan in plans.iter().filter(|p| p.from.is_some()) {
        match index.get(&plan.order_id) {
            Some(&i) => {
                advances[i].version += 1;
                advances[i].step = plan.step.clone();
                advances[i].ends |= plan.ends_saga();
            }
            None => {
                index.insert(plan.order_id, advances.len());
                advances.push(Advance {
                    order_id: plan.order_id,
                    expected_version: plan.expected_version,
                    version: plan.expected_version + 1,
                    step: plan.step.clone(),
                    ends: plan.ends_saga(),
                });
            }
        }
    }
    // A resend (a step staying in its state) may repeat the saga's latest timeline entry, but
    // only as its saga's first step here: after another, the latest entry is not written yet.
    let mut seen = HashSet::new();
    let transitions: Vec<TransitionRow> = plans
        .iter()
        .enumerate()
        .map(|(i, plan)| TransitionRow {
            repeatable: seen.insert(plan.order_id) && plan.from == Some(plan.step.to),
            order_id: plan.order_id,
            from_state: plan.from.map(|s| s.name()),
            to_state: plan.step.to.name(),
            trigger: &plan.trigger,
            message_id: plan.trigger_message_id,
            commands: resent
                .get(i)
                .cloned()
                .flatten()
                .into_iter()
                .chain(
                    plan.messages
                        .iter()
                        .map(|m| m.envelope.message_type.clone()),
                )
                .collect(),
        })
        .collect();
    let messages: Vec<_> = plans
        .iter()
        .flat_map(|p| p.messages.iter().cloned())
        .collect();
    let mut outbox = outbox::Insert::new(&messages, sagas)?;
    writes.add(SAGAS, store::advance_part(&advances)?);
    // The sagas this statement ends, counted from the rows it moved (see `rollup`).
    if advances.iter().any(|a| a.ends) {
        let shard = rollup::shard();
        writes.add(
            rollup::ENDED_MINUTES,
            Some(rollup::ended_part(SAGAS, shard)),
        );
        if advances
            .iter()
            .any(|a| a.ends && a.step.to == SagaState::Completed)
        {
            writes.add(
                rollup::ENDED_PRODUCTS,
                Some(rollup::products_part(SAGAS, shard)),
            );
        }
    }
    timeline::stage(writes, &transitions, sagas)?;
    writes.add(OUTBOX, outbox.part());
    Ok((outbox, advances.len()))
}

/// Writes `plans` of stored sagas as one statement (a resent command is copied in the outbox
/// first). Returns the outbox rows written, or `None` when a saga was no longer at the version
/// its first step was planned on: the caller must then roll back, as the other writes happened.
pub async fn write(
    db: &impl ConnectionTrait,
    plans: &[Plan],
) -> Result<Option<Enqueued>, ApplyError> {
    if plans.is_empty() {
        return Ok(Some(Enqueued::default()));
    }
    let mut enqueued = Enqueued::default();
    let mut resent = Vec::with_capacity(plans.len());
    for plan in plans {
        resent.push(match plan.resend {
            Some(pending) => {
                let (message_type, rows) = outbox::resend(db, pending)
                    .await?
                    .ok_or(ApplyError::NothingPending(plan.order_id))?;
                enqueued.extend(rows);
                Some(message_type)
            }
            None => None,
        });
    }
    let mut writes = Writes::new();
    let (outbox, advanced) = stage(&mut writes, plans, &resent, None)?;
    let mut counts = writes.execute(db).await?;
    if counts.get(SAGAS) != advanced as i64 {
        return Ok(None);
    }
    enqueued.extend(outbox.written_in(&mut counts));
    Ok(Some(enqueued))
}

/// Plans and writes one event for one saga the caller holds (locked, or read at the version it
/// expects).
pub async fn apply(
    db: &impl ConnectionTrait,
    saga: &Saga,
    event: SagaEvent,
    trigger: &Trigger<'_>,
    settings: &SagaSettings,
    now: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
    let Some(plan) = plan(saga, event, trigger, settings, now)? else {
        return Ok(Applied::Ignored);
    };
    let Some(enqueued) = write(db, std::slice::from_ref(&plan)).await? else {
        return Ok(Applied::Conflict);
    };
    Ok(Applied::Stepped(plan.step, enqueued))
}
