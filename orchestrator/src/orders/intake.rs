//! Placing orders: the write behind `POST /api/orders`, shared by all requests in flight.
//!
//! Each request hands its new order (with its first timeline entry and its `payment.charge`) to
//! the intake and waits for the answer. The intake writes whatever requests are waiting as one
//! statement (orders, timeline and outbox rows, one commit) for all of them, up to
//! `intake.batch_size` orders, with up to `intake.concurrency` such statements at once. Under
//! load (the last batch held more than one order) a batch not yet full also waits
//! `intake.linger_ms` for more: each statement costs the database about as much to plan and
//! start as to write a few orders, so this turns a thousand small commits a second into a
//! couple of hundred larger ones (docs/benchmarks.md, "The intake linger": in a pair of short
//! runs at 80 % of peak, the end-to-end p99 halved). A request that finds the intake busy may
//! wait up to `intake.linger_ms` more to join a batch; one that finds it idle goes straight
//! through (a batch of one). The batching is shared with the consumers
//! (`saga_common::batching`). The wait holds the writer, so with `intake.concurrency` 1 the
//! database gets nothing from the intake meanwhile.
//! A request is answered only after its order is committed, exactly as if it had written it
//! itself.
//!
//! If a batch fails, each of its orders is written again on its own, so one bad order gets its
//! own error and takes no other with it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use saga_common::batching::Batches;
use saga_common::db::{Writes, writes};
use saga_common::messaging::OutgoingMessage;
use saga_common::messaging::outbox::{self, Enqueued, RelayWakeup};

use super::api::ORDER_PLACED;
use super::model::Order;
use super::store::{self, TransitionRow};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntakeSettings {
    /// Most orders written in one transaction.
    pub batch_size: usize,
    /// Transactions writing orders at the same time.
    pub concurrency: usize,
    /// Under load (the last batch held more than one order), how long a batch waits for more
    /// orders before it is written. An idle intake never waits.
    pub linger_ms: u64,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            batch_size: 64,
            concurrency: 1,
            // At 80 % of peak, orders arrive one by one and each small batch paid a whole
            // transaction; in a pair of short runs at the same rate, 2 ms halved the end-to-end
            // p99 (docs/benchmarks.md, "The intake linger").
            linger_ms: 2,
        }
    }
}

/// A new order and what it sends first.
pub struct Placement {
    pub order: Order,
    /// The id the request was given: the trigger of the first timeline entry and the cause of
    /// the first commands.
    pub request_id: Uuid,
    pub messages: Vec<OutgoingMessage>,
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
}

struct Request {
    placement: Placement,
    answer: oneshot::Sender<Result<Placed, DbErr>>,
}

/// The handle requests place orders through; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    requests: mpsc::Sender<Request>,
}

impl Intake {
    /// Starts the writer task; it ends when the last handle is dropped.
    pub fn start(db: DatabaseConnection, wakeup: RelayWakeup, settings: &IntakeSettings) -> Self {
        let batch_size = settings.batch_size.max(1);
        // Room for a few batches per writer: beyond that, requests wait to be queued, which is
        // the backpressure a client sees as latency rather than as memory growing here.
        let (requests, receiver) = mpsc::channel(batch_size * settings.concurrency.max(1) * 4);
        tokio::spawn(run(
            receiver,
            db,
            wakeup,
            Batching {
                size: batch_size,
                concurrency: settings.concurrency.max(1),
                linger: Duration::from_millis(settings.linger_ms),
            },
        ));
        Self { requests }
    }

    /// Writes `placement` and answers once it is committed (or refused).
    pub async fn place(&self, placement: Placement) -> Result<Placed, IntakeError> {
        let (answer, answered) = oneshot::channel();
        self.requests
            .send(Request { placement, answer })
            .await
            .map_err(|_| IntakeError::Stopped)?;
        Ok(answered.await.map_err(|_| IntakeError::Stopped)??)
    }
}

/// How the intake forms its batches.
struct Batching {
    size: usize,
    concurrency: usize,
    linger: Duration,
}

async fn run(
    receiver: mpsc::Receiver<Request>,
    db: DatabaseConnection,
    wakeup: RelayWakeup,
    batching: Batching,
) {
    let writers = Arc::new(Semaphore::new(batching.concurrency));
    let requests = Box::pin(futures_util::stream::unfold(
        receiver,
        |mut receiver| async {
            let request = receiver.recv().await?;
            Some((request, receiver))
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
            return;
        };
        let (db, wakeup) = (db.clone(), wakeup.clone());
        tokio::spawn(async move {
            write(&db, &wakeup, batch).await;
            drop(writer);
        });
    }
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

/// One statement, so one transaction without `BEGIN` or `COMMIT`: the orders, and the timeline
/// entries and messages of those inserted (an order whose idempotency key is taken writes
/// nothing). Returns the ids of the orders inserted and of their outbox rows.
async fn write_all(
    db: &DatabaseConnection,
    placements: &[&Placement],
) -> Result<(HashSet<Uuid>, Enqueued), DbErr> {
    let orders: Vec<&Order> = placements.iter().map(|p| &p.order).collect();
    let transitions: Vec<TransitionRow> = placements
        .iter()
        .map(|p| TransitionRow {
            order_id: p.order.order_id,
            from_state: None,
            to_state: p.order.state.name(),
            trigger: ORDER_PLACED,
            message_id: p.request_id,
            commands: p
                .messages
                .iter()
                .map(|m| m.envelope.message_type.clone())
                .collect(),
        })
        .collect();
    let messages: Vec<OutgoingMessage> = placements
        .iter()
        .flat_map(|p| p.messages.iter().cloned())
        .collect();
    const PLACED: &str = "SELECT order_id FROM placed";
    let mut outbox = outbox::Insert::new(&messages, Some(PLACED))?;
    let mut writes = Writes::new();
    writes
        .add("placed", store::insert_part(&orders)?)
        .add(
            "timeline",
            store::transitions_part(&transitions, Some(PLACED))?,
        )
        .add("outbox", outbox.part());
    // Without messages there is no `outbox` part, and `FROM outbox` would read the table.
    let (ids, message_ids) = if messages.is_empty() {
        ("'{}'::bigint[]".to_owned(), "'{}'::uuid[]".to_owned())
    } else {
        (
            writes::ids_of("outbox", "id"),
            writes::ids_of("outbox", "message_id"),
        )
    };
    let select = format!(
        "SELECT (SELECT coalesce(array_agg(order_id), '{{}}') FROM placed) AS placed, \
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
