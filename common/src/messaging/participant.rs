//! The shape of every participant's command handling, so both participants get it right once:
//! a participant says how to parse, read, decide and answer ([`Participant`]), and [`handle`]
//! runs a batch through it on the consumer's transaction, in two statements:
//!
//! 1. One read ([`Reads`]): the inbox's record of the batch's commands ([`read_seen`]) together
//!    with the participant's own rows, locked.
//! 2. [`fresh`] sorts the commands: one handled before is answered again with the reply
//!    recorded the first time (same message id, through the outbox) and has no second effect; a
//!    second copy of a command within the batch is dropped (the first copy's reply answers
//!    both). The participant decides the others, in delivery order, with one reply each.
//! 3. One write ([`finish`]): the participant's writes, the replies' outbox rows (and those of
//!    the events a decision publishes, [`Participant::events`]) and the commands' inbox rows
//!    with their replies.
//! 4. What each decided command says once the transaction commits ([`Participant::after_commit`]:
//!    its metrics and lifecycle line), attached to the [`Enqueued`] the consumer commits.

use std::collections::{HashMap, HashSet};

use sea_orm::{DatabaseTransaction, DbErr};

use uuid::Uuid;

use super::consumer::{HandleError, MessageHandler};
use super::envelope::{Envelope, OutgoingMessage};
use super::inbox::{self, Handled};
use super::outbox::{self, Enqueued, OUTBOX};
use crate::db::{Loaded, PartName, Reads, Writes};

/// Name of the inbox read in a batch's [`Reads`].
const SEEN: PartName = PartName::new("seen");
const INBOX: PartName = PartName::new("inbox");

/// What a participant adds to the shared shape. Every `Participant` is a [`MessageHandler`]
/// that runs its batches through [`handle`].
pub trait Participant: Send + Sync + 'static {
    /// A command, checked.
    type Command: Send + Sync;
    /// What deciding a command ends in.
    type Outcome: Send;
    /// Inbox consumer name.
    const CONSUMER: &'static str;

    /// Checks a command; an error fails the batch (and then dead-letters the command).
    fn parse(envelope: &Envelope) -> Result<Self::Command, HandleError>;
    /// Adds to `reads` the rows `commands` need, locked.
    fn read_for(reads: &mut Reads, commands: &[Self::Command]);
    /// Decides `commands` in order against the rows read; one outcome each, and the writes that
    /// carry them out.
    fn decide(
        loaded: &mut Loaded,
        commands: &[&Self::Command],
    ) -> Result<(Vec<Self::Outcome>, Writes), HandleError>;
    /// The reply to `command`; an error fails the batch.
    fn answer(command: &Envelope, outcome: Self::Outcome) -> Result<Envelope, HandleError>;
    /// The events deciding `command` publishes on `saga.events` besides its reply (the
    /// inventory's `inventory.low_stock`), written to the outbox in the same statement; asked
    /// for each command decided, before [`Participant::answer`]. Unlike the reply, an event is
    /// not recorded in the inbox: a duplicate command is answered again but publishes nothing
    /// twice. None by default.
    fn events(_command: &Envelope, _outcome: &Self::Outcome) -> Result<Vec<Envelope>, HandleError> {
        Ok(Vec::new())
    }
    /// What deciding `command` says once the batch commits, and only then (metrics, the
    /// lifecycle line): asked for each command decided, before [`Participant::answer`]; a
    /// duplicate is not decided, so says nothing.
    fn after_commit(_command: &Envelope, _outcome: &Self::Outcome) -> Option<Note> {
        None
    }
}

/// Something to say once a transaction commits (see `Enqueued::after_commit`).
pub type Note = Box<dyn Fn() + Send + Sync>;

impl<P: Participant> MessageHandler for P {
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        batch: &[Envelope],
    ) -> Result<Enqueued, HandleError> {
        handle::<P>(txn, batch).await
    }
}

/// Runs `batch` through `P` on `txn`: read, sort out duplicates, decide, write.
pub async fn handle<P: Participant>(
    txn: &DatabaseTransaction,
    batch: &[Envelope],
) -> Result<Enqueued, HandleError> {
    let commands = batch.iter().map(P::parse).collect::<Result<Vec<_>, _>>()?;
    let mut reads = Reads::new();
    read_seen(&mut reads, P::CONSUMER, batch);
    P::read_for(&mut reads, &commands);
    let mut loaded = reads.execute(txn).await?;
    let fresh = fresh(batch, commands, &mut loaded)?;
    let to_decide: Vec<&P::Command> = fresh.commands.iter().map(|(_, c)| c).collect();
    let (outcomes, writes) = P::decide(&mut loaded, &to_decide)?;
    let mut notes = Vec::new();
    let mut events = Vec::new();
    let replies = fresh
        .commands
        .iter()
        .zip(outcomes)
        .map(|((envelope, _), outcome)| {
            notes.extend(P::after_commit(envelope, &outcome));
            events.extend(
                P::events(envelope, &outcome)?
                    .into_iter()
                    .map(OutgoingMessage::event),
            );
            P::answer(envelope, outcome)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut enqueued = finish(txn, P::CONSUMER, fresh, replies, events, writes).await?;
    if !notes.is_empty() {
        enqueued.after_commit(move || notes.iter().for_each(|note| note()));
    }
    Ok(enqueued)
}

/// Adds the inbox's record of `batch` to `reads`, read back by [`fresh`].
fn read_seen(reads: &mut Reads, consumer: &str, batch: &[Envelope]) {
    let ids: Vec<Uuid> = batch.iter().map(|e| e.message_id).collect();
    reads.read(SEEN, inbox::seen_read(consumer, &ids));
}

/// The commands of a batch to decide, and the replies owed to those seen before.
struct Fresh<'a, C> {
    /// In delivery order, each once.
    commands: Vec<(&'a Envelope, C)>,
    again: Vec<OutgoingMessage>,
    /// The deliveries with no effect (handled before, or a second copy), once per copy.
    duplicates: Vec<Uuid>,
}

/// Sorts `commands` (one per envelope of the batch, in order) into those to decide and those
/// handled before, with the inbox's record read by [`read_seen`].
fn fresh<'a, C>(
    batch: &'a [Envelope],
    commands: Vec<C>,
    loaded: &mut Loaded,
) -> Result<Fresh<'a, C>, DbErr> {
    let seen: HashMap<Uuid, Option<OutgoingMessage>> = loaded
        .take::<inbox::Seen>(SEEN)?
        .into_iter()
        .map(|s| (s.message_id, s.reply))
        .collect();
    let mut fresh = Fresh {
        commands: Vec::with_capacity(batch.len()),
        again: Vec::new(),
        duplicates: Vec::new(),
    };
    let mut taken = HashSet::with_capacity(batch.len());
    for (envelope, command) in batch.iter().zip(commands) {
        let first_copy = taken.insert(envelope.message_id);
        if let Some(reply) = seen.get(&envelope.message_id) {
            fresh.duplicates.push(envelope.message_id);
            envelope.span().in_scope(|| {
                tracing::info!(
                    answered_again = first_copy && reply.is_some(),
                    "duplicate command; no second effect"
                );
            });
            if let (true, Some(reply)) = (first_copy, reply) {
                fresh.again.push(reply.clone());
            }
        } else if first_copy {
            fresh.commands.push((envelope, command));
        } else {
            fresh.duplicates.push(envelope.message_id);
            envelope.span().in_scope(|| {
                tracing::info!("command delivered twice in one batch; handled once");
            });
        }
    }
    Ok(fresh)
}

/// Writes the participant's `writes` (its parts must not be named `outbox` or `inbox`), the
/// replies (one per fresh command, in order), the answers owed again and the `events`, and the
/// fresh commands' inbox rows, as one statement. Returns the outbox rows written.
async fn finish<C>(
    txn: &DatabaseTransaction,
    consumer: &str,
    fresh: Fresh<'_, C>,
    replies: Vec<Envelope>,
    events: Vec<OutgoingMessage>,
    mut writes: Writes,
) -> Result<Enqueued, HandleError> {
    if replies.len() != fresh.commands.len() {
        return Err(HandleError::Transient(format!(
            "{} replies for {} commands",
            replies.len(),
            fresh.commands.len()
        )));
    }
    let mut outgoing = fresh.again;
    let answered = outgoing.len();
    outgoing.extend(replies.into_iter().map(OutgoingMessage::reply));
    // After the replies, which the inbox rows pair with the commands by position.
    outgoing.extend(events);
    let handled: Vec<Handled> = fresh
        .commands
        .iter()
        .zip(&outgoing[answered..])
        .map(|((message, _), reply)| Handled {
            message,
            reply: Some(reply),
        })
        .collect();
    let mut outbox = outbox::Insert::new(&outgoing, None)?;
    writes
        .add(OUTBOX, outbox.part())
        .add(INBOX, inbox::record_part(consumer, &handled)?);
    let mut counts = writes.execute(txn).await?;
    if counts.get(INBOX) != handled.len() as i64 {
        return Err(HandleError::Transient(
            "another delivery of a command in this batch was handled at the same time".into(),
        ));
    }
    let mut enqueued = outbox.written_in(&mut counts);
    for message_id in fresh.duplicates {
        enqueued.duplicate(message_id);
    }
    Ok(enqueued)
}
