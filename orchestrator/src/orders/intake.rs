//! Placing orders: the write behind `POST /api/orders`, shared by all requests in flight.
//!
//! Each request hands its new order (with its saga's first step) to the intake and waits. The
//! intake writes the waiting requests' orders, timeline and outbox rows as one statement, up to
//! `intake.batch_size` orders, `intake.concurrency` statements at once, lingering under load
//! (`saga_common::batching`) because a statement costs about as much to start as to write a few
//! orders. A request is answered only once its order is committed; a failed batch is written
//! again one order at a time, so a bad order takes no other with it. The writer stops on the
//! shutdown signal, after writing every request it accepted.
//!
//! The queue of requests waiting for a writer is bounded: with admission control on
//! (`admission.max_queued`) a request finding it full is refused at once ([`IntakeError::Full`],
//! answered `503 overloaded`); off, it waits for room.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use saga_common::batching::Batches;
use saga_common::db::{PartName, Writes, writes};
use saga_common::messaging::outbox::{Enqueued, OUTBOX, RelayWakeup};
use saga_common::shutdown::Shutdown;

use super::model::Order;
use super::store;
use crate::configuration::IntakeSettings;
use crate::saga::engine;
use crate::saga::plan::Plan;
use crate::saga::rollup;

/// A new order and its saga's first step (`saga::plan::start`).
pub struct Placement {
    pub order: Order,
    pub first: Plan,
}

/// What became of a placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Committed, and its saga started.
    Inserted,
    /// Nothing written: another order holds its idempotency key.
    KeyTaken,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error("the order intake has stopped")]
    Stopped,
    /// Nothing written: as many orders as the queue holds are waiting for the writers.
    #[error("the order intake's queue is full")]
    Full,
}

struct Request {
    placement: Placement,
    answer: oneshot::Sender<Result<Placed, DbErr>>,
}

/// The handle requests place orders through; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    requests: mpsc::Sender<Request>,
    /// A full queue refuses (`true`) rather than making the request wait for room.
    refuse_when_full: bool,
}

/// The writer side of an [`Intake`], not yet running.
pub struct Writer {
    receiver: mpsc::Receiver<Request>,
    batching: Batching,
}

impl Writer {
    /// Starts the writer task. It ends once `stop` is triggered and either every handle is
    /// dropped or `grace` has passed, having written every request it accepted.
    pub fn spawn(
        self,
        db: DatabaseConnection,
        wakeup: RelayWakeup,
        stop: Shutdown,
        grace: Duration,
    ) -> JoinHandle<()> {
        let stopping = Stopping { stop, grace };
        tokio::spawn(run(self.receiver, db, wakeup, self.batching, stopping))
    }
}

impl Intake {
    /// The handle requests place orders through, and the writer that serves it once spawned
    /// (requests queue until then). With `max_queued`, at most that many requests wait and
    /// another is refused ([`IntakeError::Full`]); without, they wait for room.
    pub fn new(settings: &IntakeSettings, max_queued: Option<usize>) -> (Self, Writer) {
        let batch_size = settings.batch_size.max(1);
        // Without a bound: room for a few batches per writer; beyond that, requests wait to be
        // queued, which is the backpressure a client sees as latency rather than as memory
        // growing here.
        let capacity = max_queued.unwrap_or(batch_size * settings.concurrency.max(1) * 4);
        let (requests, receiver) = mpsc::channel(capacity.max(1));
        let batching = Batching {
            size: batch_size,
            concurrency: settings.concurrency.max(1),
            linger: Duration::from_millis(settings.linger_ms),
        };
        let intake = Self {
            requests,
            refuse_when_full: max_queued.is_some(),
        };
        (intake, Writer { receiver, batching })
    }

    /// Answers once `placement` is committed (or refused). Queued or refused before it first
    /// waits, so a refusal costs no time.
    pub async fn place(&self, placement: Placement) -> Result<Placed, IntakeError> {
        let (answer, answered) = oneshot::channel();
        let request = Request { placement, answer };
        if self.refuse_when_full {
            self.requests
                .try_send(request)
                .map_err(|error| match error {
                    mpsc::error::TrySendError::Full(_) => IntakeError::Full,
                    mpsc::error::TrySendError::Closed(_) => IntakeError::Stopped,
                })?;
        } else {
            self.requests
                .send(request)
                .await
                .map_err(|_| IntakeError::Stopped)?;
        }
        Ok(answered.await.map_err(|_| IntakeError::Stopped)??)
    }
}

/// How the intake forms its batches.
struct Batching {
    size: usize,
    concurrency: usize,
    linger: Duration,
}

/// When the intake stops taking requests.
struct Stopping {
    stop: Shutdown,
    /// After the signal, how long requests may still arrive (the HTTP server drains meanwhile).
    grace: Duration,
}

/// The next request; `None` once every handle is gone, or once `closed` is triggered and the
/// requests queued by then are taken.
async fn next(receiver: &mut mpsc::Receiver<Request>, closed: &Shutdown) -> Option<Request> {
    if !closed.is_triggered() {
        tokio::select! {
            request = receiver.recv() => return request,
            () = closed.wait() => {}
        }
    }
    receiver.close();
    receiver.recv().await
}

async fn run(
    receiver: mpsc::Receiver<Request>,
    db: DatabaseConnection,
    wakeup: RelayWakeup,
    batching: Batching,
    stopping: Stopping,
) {
    let writers = Arc::new(Semaphore::new(batching.concurrency));
    // Triggered `grace` after the signal: from then on no request is taken.
    let closed = Shutdown::new();
    let closer = {
        let closed = closed.clone();
        tokio::spawn(async move {
            stopping.stop.wait().await;
            tokio::time::sleep(stopping.grace).await;
            closed.trigger();
        })
    };
    let requests = Box::pin(futures_util::stream::unfold(
        (receiver, closed),
        |(mut receiver, closed)| async move {
            let request = next(&mut receiver, &closed).await?;
            Some((request, (receiver, closed)))
        },
    ));
    let mut requests = Batches::new(requests, batching.size, batching.linger);
    loop {
        // A writer first, then the requests: whatever arrives while all writers are busy joins
        // the next batch instead of waiting behind it.
        let Ok(writer) = writers.clone().acquire_owned().await else {
            return;
        };
        let Some(batch) = requests.next_batch().await else {
            break;
        };
        let (db, wakeup) = (db.clone(), wakeup.clone());
        tokio::spawn(async move {
            write(&db, &wakeup, batch).await;
            drop(writer);
        });
    }
    // Every batch taken is answered before the task ends: wait for the writers still at work.
    let all = u32::try_from(batching.concurrency).unwrap_or(u32::MAX);
    let _ = writers.acquire_many(all).await;
    closer.abort();
    tracing::info!("order intake stopped");
}

/// Writes a batch, hands its outbox rows to the relay and answers each request; on failure,
/// retries each order alone.
async fn write(db: &DatabaseConnection, wakeup: &RelayWakeup, batch: Vec<Request>) {
    let placements: Vec<&Placement> = batch.iter().map(|r| &r.placement).collect();
    match wakeup.autocommit(write_all(db, &placements)).await {
        Ok(inserted) => {
            for request in batch {
                let placed = if inserted.contains(&request.placement.order.order_id) {
                    Placed::Inserted
                } else {
                    Placed::KeyTaken
                };
                let _ = request.answer.send(Ok(placed));
            }
        }
        Err(error) if batch.len() == 1 => {
            if let Some(request) = batch.into_iter().next() {
                let _ = request.answer.send(Err(error));
            }
        }
        Err(error) => {
            tracing::debug!(%error, size = batch.len(), "order batch rolled back; writing its orders one by one");
            for request in batch {
                let outcome = wakeup
                    .autocommit(write_all(db, &[&request.placement]))
                    .await
                    .map(|inserted| {
                        if inserted.is_empty() {
                            Placed::KeyTaken
                        } else {
                            Placed::Inserted
                        }
                    });
                let _ = request.answer.send(outcome);
            }
        }
    }
}

/// One statement, so one transaction without `BEGIN` or `COMMIT`: the orders, their count in
/// the sales rollup, and the first steps (timeline entries and messages) of those inserted (an
/// order whose idempotency key is taken writes nothing). Returns the ids of the orders inserted
/// and of their outbox rows.
async fn write_all(
    db: &DatabaseConnection,
    placements: &[&Placement],
) -> Result<(HashSet<Uuid>, Enqueued), DbErr> {
    let orders: Vec<_> = placements
        .iter()
        .map(|p| (&p.order, &p.first.step))
        .collect();
    let plans: Vec<Plan> = placements.iter().map(|p| p.first.clone()).collect();
    const PLACED: PartName = PartName::new("placed");
    let placed_ids = format!("SELECT order_id FROM {PLACED}");
    let mut writes = Writes::new();
    let inserts = store::insert_part(&orders)?;
    // Counted from the rows inserted: an order whose key was taken is not placed again.
    let placed = inserts
        .is_some()
        .then(|| rollup::placed_part(PLACED, rollup::shard()));
    writes.add(PLACED, inserts);
    writes.add(rollup::PLACED_MINUTES, placed);
    let (outbox, _) = engine::stage(&mut writes, &plans, &[], Some(&placed_ids))?;
    // Without messages there is no outbox part, and `FROM outbox` would read the table.
    let (ids, message_ids) = if plans.iter().all(|p| p.messages.is_empty()) {
        ("'{}'::bigint[]".to_owned(), "'{}'::uuid[]".to_owned())
    } else {
        (
            writes::ids_of(OUTBOX, "id"),
            writes::ids_of(OUTBOX, "message_id"),
        )
    };
    let select = format!(
        "SELECT (SELECT coalesce(array_agg(order_id), '{{}}') FROM {PLACED}) AS placed, \
         {ids} AS outbox, {message_ids} AS message_ids"
    );
    let rows = writes.query(db, &select).await?;
    let row = rows
        .first()
        .ok_or_else(|| DbErr::RecordNotFound("the result of placing orders".into()))?;
    let placed: Vec<Uuid> = row.try_get("", "placed")?;
    let ids: Vec<i64> = row.try_get("", "outbox")?;
    let message_ids: Vec<Uuid> = row.try_get("", "message_ids")?;
    Ok((
        placed.into_iter().collect(),
        outbox.written(ids, message_ids),
    ))
}
