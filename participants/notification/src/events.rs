//! The `notification.events` consumer: a batch of order, account and stock events on one
//! transaction. Each event is claimed in the inbox; an `account.updated` updates the copy of the
//! customer's address; the others become one `notifications` row each (the mail outbox), written
//! in the same statement as the inbox rows. Nothing is sent here: once the batch commits, the
//! sender is woken ([`crate::sender`]) and sends the `PENDING` rows.
//!
//! Two statements per batch, whatever its size: the inbox claim with the recipients' addresses,
//! then the notifications and recipients written. An event with no address to write to is a
//! `SKIPPED` row and costs nothing more (the benchmark's accounts have no address).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use saga_common::contracts::{
    AccountEvent, AccountUpdated, Contract, DecodeError, Message, OrderEvent, StockEvent,
};
use saga_common::db::{self, Part, PartName, Reads, Writes};
use saga_common::messaging::inbox;
use saga_common::messaging::outbox::Enqueued;
use saga_common::messaging::{Envelope, HandleError, MessageHandler};

use crate::notifications::{Kind, Status};

/// Inbox consumer name.
pub const CONSUMER: &str = "notification";

const CLAIMED: PartName = PartName::new("claimed");
const RECIPIENTS: PartName = PartName::new("recipients");
const NOTIFIED: PartName = PartName::new("notified");

/// Everything `notification.events` carries: the order, account and stock events of
/// `saga.events`. Written by hand over the three contracts (their payloads already have their
/// type names), so each type is still named once, in `saga_common::contracts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationEvent {
    Order(OrderEvent),
    Account(AccountEvent),
    Stock(StockEvent),
}

impl Message for NotificationEvent {
    fn message_type(&self) -> &'static str {
        match self {
            Self::Order(event) => event.message_type(),
            Self::Account(event) => event.message_type(),
            Self::Stock(event) => event.message_type(),
        }
    }

    fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Self::Order(event) => event.to_payload(),
            Self::Account(event) => event.to_payload(),
            Self::Stock(event) => event.to_payload(),
        }
    }
}

impl Contract for NotificationEvent {
    /// The union of the three contracts' types (a test checks it against them and the queue's
    /// bindings).
    const TYPES: &'static [&'static str] = &[
        "order.completed",
        "order.failed",
        "account.updated",
        "inventory.low_stock",
    ];

    fn decode(message_type: &str, payload: &serde_json::Value) -> Result<Self, DecodeError> {
        if OrderEvent::TYPES.contains(&message_type) {
            OrderEvent::decode(message_type, payload).map(Self::Order)
        } else if AccountEvent::TYPES.contains(&message_type) {
            AccountEvent::decode(message_type, payload).map(Self::Account)
        } else {
            StockEvent::decode(message_type, payload).map(Self::Stock)
        }
    }
}

/// The consumer. `wake` tells the sender that rows to send were committed.
pub struct NotificationEvents {
    pub wake: Arc<Notify>,
    /// Where low-stock alerts go (`notify.ops_email`).
    pub ops_email: String,
}

impl MessageHandler for NotificationEvents {
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        batch: &[Envelope],
    ) -> Result<Enqueued, HandleError> {
        let events = batch
            .iter()
            .map(|envelope| envelope.decode::<NotificationEvent>())
            .collect::<Result<Vec<_>, _>>()?;
        let customers: Vec<String> = db::lock_order(events.iter().filter_map(customer_of));
        let mut reads = Reads::new();
        reads
            .write(CLAIMED, inbox::claim_part(CONSUMER, batch)?)
            .read(RECIPIENTS, recipients_read(&customers));
        let mut loaded = reads.execute(txn).await?;
        let first: HashSet<Uuid> = loaded
            .take::<inbox::Claimed>(CLAIMED)?
            .into_iter()
            .map(|claimed| claimed.message_id)
            .collect();
        let mut book = AddressBook::new(loaded.take(RECIPIENTS)?);

        let mut enqueued = Enqueued::default();
        let mut rows = Vec::new();
        let mut taken = HashSet::with_capacity(batch.len());
        for (envelope, event) in batch.iter().zip(events) {
            if !first.contains(&envelope.message_id) || !taken.insert(envelope.message_id) {
                enqueued.duplicate(envelope.message_id);
                envelope
                    .span()
                    .in_scope(|| tracing::info!("duplicate event; already handled"));
                continue;
            }
            match event {
                NotificationEvent::Account(AccountEvent::Updated(update)) => {
                    book.update(update, envelope.occurred_at);
                }
                other => rows.extend(self.row_for(envelope, other, &book)),
            }
        }

        let mut writes = Writes::new();
        writes
            .add(RECIPIENTS, book.upsert_part()?)
            .add(NOTIFIED, insert_part(&rows)?);
        let mut counts = writes.execute(txn).await?;
        let inserted = counts.take_message_ids(NOTIFIED);
        let written: Vec<(Kind, Status)> = rows
            .iter()
            .filter(|row| inserted.contains(&row.id))
            .map(|row| (row.kind, row.status))
            .collect();
        if !written.is_empty() {
            let wake = self.wake.clone();
            enqueued.after_commit(move || {
                crate::facts::written(&written);
                if written.iter().any(|(_, status)| *status == Status::Pending) {
                    wake.notify_one();
                }
            });
        }
        Ok(enqueued)
    }
}

impl NotificationEvents {
    /// The notification an order or stock event owes, to the address known now.
    fn row_for(
        &self,
        envelope: &Envelope,
        event: NotificationEvent,
        book: &AddressBook,
    ) -> Option<NewRow> {
        let (kind, subject, order_id, product_id, customer_id, recipient) = match &event {
            NotificationEvent::Order(OrderEvent::Completed(order)) => (
                Kind::OrderConfirmed,
                order.order_id.to_string(),
                Some(order.order_id),
                None,
                Some(order.customer_id.clone()),
                book.email(&order.customer_id),
            ),
            NotificationEvent::Order(OrderEvent::Failed(order)) => (
                Kind::OrderFailed,
                order.order_id.to_string(),
                Some(order.order_id),
                None,
                Some(order.customer_id.clone()),
                book.email(&order.customer_id),
            ),
            // Each crossing of the threshold is an alert of its own: the event's id tells
            // them apart (a republished copy keeps it).
            NotificationEvent::Stock(StockEvent::LowStock(low)) => (
                Kind::LowStock,
                format!("{}/{}", low.product_id, envelope.message_id),
                None,
                Some(low.product_id.clone()),
                None,
                Some(self.ops_email.clone()),
            ),
            NotificationEvent::Account(_) => return None,
        };
        let status = if recipient.is_some() {
            Status::Pending
        } else {
            Status::Skipped
        };
        Some(NewRow {
            id: Uuid::now_v7(),
            kind,
            subject,
            order_id,
            product_id,
            customer_id,
            recipient,
            status,
            content: envelope.payload.clone(),
            correlation_id: envelope.correlation_id.clone(),
        })
    }
}

/// The customer an event needs the address of.
fn customer_of(event: &NotificationEvent) -> Option<String> {
    match event {
        NotificationEvent::Order(OrderEvent::Completed(order)) => Some(order.customer_id.clone()),
        NotificationEvent::Order(OrderEvent::Failed(order)) => Some(order.customer_id.clone()),
        NotificationEvent::Account(AccountEvent::Updated(update)) => {
            Some(update.customer_id.clone())
        }
        NotificationEvent::Stock(_) => None,
    }
}

fn recipients_read(customers: &[String]) -> Option<Part> {
    (!customers.is_empty()).then(|| {
        Part::new(
            "SELECT customer_id, email, updated_at FROM recipients WHERE customer_id = ANY($1)",
            vec![Value::from(customers.to_vec())],
        )
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recipient {
    customer_id: String,
    email: Option<String>,
    updated_at: DateTime<Utc>,
}

/// The addresses a batch knows: those stored, with the batch's own updates applied in delivery
/// order, so an order event after an `account.updated` in the same batch finds the new address.
struct AddressBook {
    known: HashMap<String, Recipient>,
    changed: HashSet<String>,
}

impl AddressBook {
    fn new(stored: Vec<Recipient>) -> Self {
        Self {
            known: stored
                .into_iter()
                .map(|r| (r.customer_id.clone(), r))
                .collect(),
            changed: HashSet::new(),
        }
    }

    /// Last write wins by the event's time: an older event arriving late changes nothing.
    fn update(&mut self, update: AccountUpdated, at: DateTime<Utc>) {
        let email = update.email.filter(|e| !e.trim().is_empty());
        if self
            .known
            .get(&update.customer_id)
            .is_some_and(|known| known.updated_at > at)
        {
            return;
        }
        self.changed.insert(update.customer_id.clone());
        self.known.insert(
            update.customer_id.clone(),
            Recipient {
                customer_id: update.customer_id,
                email,
                updated_at: at,
            },
        );
    }

    fn email(&self, customer_id: &str) -> Option<String> {
        self.known.get(customer_id).and_then(|r| r.email.clone())
    }

    /// The changed addresses, one row per customer; the `WHERE` keeps a newer address written
    /// meanwhile by another batch.
    fn upsert_part(&self) -> Result<Option<Part>, sea_orm::DbErr> {
        if self.changed.is_empty() {
            return Ok(None);
        }
        let rows: Vec<&Recipient> = db::lock_order(self.changed.iter())
            .into_iter()
            .filter_map(|id| self.known.get(id))
            .collect();
        Ok(Some(Part::new(
            "INSERT INTO recipients (customer_id, email, updated_at) \
             SELECT r.customer_id, r.email, r.updated_at \
             FROM jsonb_to_recordset($1::jsonb) AS r(customer_id text, email text, updated_at timestamptz) \
             ON CONFLICT (customer_id) DO UPDATE SET email = EXCLUDED.email, updated_at = EXCLUDED.updated_at \
             WHERE recipients.updated_at <= EXCLUDED.updated_at \
             RETURNING 1",
            vec![db::rows(&rows)?],
        )))
    }
}

/// A notification to write.
#[derive(Debug, Serialize)]
struct NewRow {
    id: Uuid,
    kind: Kind,
    subject: String,
    order_id: Option<Uuid>,
    product_id: Option<String>,
    customer_id: Option<String>,
    recipient: Option<String>,
    status: Status,
    content: serde_json::Value,
    correlation_id: String,
}

/// The rows, each once per kind and subject: one already there (the same order's event
/// published again under another id) is left as it is, so it is never sent twice. Returns the
/// ids written (as `message_id`, the name the batch statement collects UUIDs under).
fn insert_part(rows: &[NewRow]) -> Result<Option<Part>, sea_orm::DbErr> {
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        Part::new(
            "INSERT INTO notifications (id, kind, subject, order_id, product_id, customer_id, \
             recipient, status, content, correlation_id) \
             SELECT n.id, n.kind, n.subject, n.order_id, n.product_id, n.customer_id, \
             n.recipient, n.status, n.content, n.correlation_id \
             FROM jsonb_to_recordset($1::jsonb) AS n(id uuid, kind text, subject text, \
             order_id uuid, product_id text, customer_id text, recipient text, status text, \
             content jsonb, correlation_id text) \
             ORDER BY n.kind, n.subject \
             ON CONFLICT (kind, subject) DO NOTHING \
             RETURNING 0::bigint AS id, id AS message_id",
            vec![db::rows(rows)?],
        )
        .collecting_message_ids(),
    ))
}

#[cfg(test)]
mod tests {
    use saga_common::messaging::topology;

    use super::*;

    #[test]
    fn the_contract_is_the_union_of_the_three_and_what_the_queue_binds() {
        let union: Vec<&str> = OrderEvent::TYPES
            .iter()
            .chain(AccountEvent::TYPES)
            .chain(StockEvent::TYPES)
            .copied()
            .collect();
        assert_eq!(NotificationEvent::TYPES, union.as_slice());
        assert_eq!(topology::notification_types(), union);
    }

    #[test]
    fn each_type_decodes_to_its_own_contract() {
        let payload = serde_json::json!({"customer_id": "c-1", "email": "a@example.com"});
        let decoded = NotificationEvent::decode("account.updated", &payload).unwrap();
        assert_eq!(decoded.message_type(), "account.updated");
        let low = serde_json::json!({"product_id": "p", "available": 1, "threshold": 5});
        assert!(matches!(
            NotificationEvent::decode("inventory.low_stock", &low),
            Ok(NotificationEvent::Stock(_))
        ));
        assert!(matches!(
            NotificationEvent::decode("payment.charge", &low),
            Err(DecodeError::UnknownType(_))
        ));
    }

    #[test]
    fn an_older_address_arriving_late_does_not_overwrite_a_newer_one() {
        let now = Utc::now();
        let mut book = AddressBook::new(vec![Recipient {
            customer_id: "c".into(),
            email: Some("new@example.com".into()),
            updated_at: now,
        }]);
        let update = |email: &str| AccountUpdated {
            customer_id: "c".into(),
            email: Some(email.into()),
        };
        book.update(
            update("old@example.com"),
            now - chrono::TimeDelta::seconds(1),
        );
        assert_eq!(book.email("c").as_deref(), Some("new@example.com"));
        book.update(update(" "), now + chrono::TimeDelta::seconds(1));
        assert_eq!(book.email("c"), None, "a blank address is no address");
    }
}
