//! Reading rows back from the table, for rows the relay was not handed with their content: by
//! id (a resend, or rows past the relay's memory bound), and the scan for rows nobody handed
//! over (left by a crash, another instance, or an earlier session).
//!
//! Why the scan is not the fast path: the key of `outbox_pending` keeps an entry for every
//! deleted row until a vacuum removes it, and a scan from the oldest id reads them all: where
//! autovacuum is off, a cost that grows with every message sent since the last vacuum.

use std::borrow::Cow;

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};

use super::publish::{Batch, Publication};
use super::relay::RelayError;
use crate::configuration::OutboxSettings;
use crate::db::stmt;
use crate::messaging::envelope::Envelope;

/// The read by id: marks the rows `$1` published (those confirmed before, see `mark`) and reads
/// the rows among `$2` still to be published: the outbox rows by key, each checked against its
/// pending row by key. Public for the plan test, which plans this very statement.
pub const READ_IDS: &str = concat!(
    "WITH marked AS (",
    mark_sql!(),
    ") SELECT o.id, o.exchange, o.routing_key, o.body FROM outbox o \
     WHERE o.id = ANY($2) AND EXISTS (SELECT 1 FROM outbox_pending p WHERE p.id = o.id) \
     ORDER BY o.id"
);

/// The scan: the oldest `$1` rows still to be published that are older than `$2` seconds, but
/// not those among `$3`, claimed until the transaction ends. The pending rows are taken in a
/// subquery of their own, so the join starts from them: as a plain join, planned on empty
/// tables, it walked the whole outbox in id order and looked each row up among the pending ones
/// (every message ever sent, twice a second; found by a profile). Public for the plan test.
pub const SCAN: &str = "SELECT o.id, o.exchange, o.routing_key, o.body \
     FROM (SELECT id FROM outbox_pending \
           WHERE created_at < now() - make_interval(secs => $2) AND id <> ALL($3) \
           ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) p \
     JOIN outbox o ON o.id = p.id ORDER BY p.id";

/// How far a scan looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Scan {
    /// The periodic poll: rows older than `outbox.orphan_age_ms`, whose writer should have
    /// published them by now (it crashed, or its instance is gone).
    Orphans,
    /// Every unpublished row: at the start and end of a session (ids handed to an earlier
    /// session may have been lost with it) and when a writer could not name its rows.
    All,
}

impl Scan {
    /// The age, in seconds, below which a row is left to its writer.
    fn min_age(self, settings: &OutboxSettings) -> f64 {
        match self {
            Scan::Orphans => settings.orphan_age_ms as f64 / 1000.0,
            Scan::All => 0.0,
        }
    }
}

/// An outbox row read back.
#[derive(Debug, FromQueryResult)]
pub(super) struct PendingRow {
    id: i64,
    exchange: String,
    routing_key: String,
    body: String,
}

/// Marks the rows `unmarked` and reads the unpublished rows among `ids`, by key.
pub(super) async fn read_ids(
    db: &impl ConnectionTrait,
    unmarked: Vec<i64>,
    ids: Vec<i64>,
) -> Result<Vec<PendingRow>, DbErr> {
    PendingRow::find_by_statement(stmt(READ_IDS, [Value::from(unmarked), Value::from(ids)]))
        .all(db)
        .await
}

/// The oldest `limit` unpublished rows in `scope`, but not those among `unmarked`, locked
/// `FOR UPDATE SKIP LOCKED` on `txn`: two instances' scans never publish a row twice at once.
pub(super) async fn claim(
    txn: &impl ConnectionTrait,
    settings: &OutboxSettings,
    scope: Scan,
    limit: usize,
    unmarked: Vec<i64>,
) -> Result<Vec<PendingRow>, DbErr> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    PendingRow::find_by_statement(stmt(
        SCAN,
        [
            Value::from(limit),
            Value::from(scope.min_age(settings)),
            Value::from(unmarked),
        ],
    ))
    .all(txn)
    .await
}

/// `rows` as a batch to publish: each body parsed for the properties.
pub(super) fn batch(rows: &[PendingRow]) -> Result<Batch<'_>, RelayError> {
    let messages = rows
        .iter()
        .map(|row| {
            let header: Envelope =
                serde_json::from_str(&row.body).map_err(|e| RelayError::Corrupt(row.id, e))?;
            Ok(Publication {
                exchange: &row.exchange,
                routing_key: &row.routing_key,
                body: &row.body,
                header: Cow::Owned(header),
            })
        })
        .collect::<Result<_, RelayError>>()?;
    Ok(Batch {
        ids: rows.iter().map(|row| row.id).collect(),
        messages,
    })
}
