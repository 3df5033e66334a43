//! The `notifications` table, the mail outbox: one row per e-mail owed, unique per kind and
//! subject, written by the consumer ([`crate::events`]) with the event's inbox row and sent
//! after that commit by [`crate::sender`].
//!
//! - [`Kind`], [`Status`]: what a row is about, and where it stands.
//! - [`store`]: the queries: list (newest first, by cursor), resend, claim due rows, mark.
//! - [`api`]: `GET /api/notifications` and `POST /api/notifications/{id}/resend`.

pub mod api;
pub mod store;

use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use api::router;

/// What a notification is about; stored by name in `notifications.kind`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    EnumIter,
    DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "snake_case")]
pub enum Kind {
    /// `order.completed`: the confirmation to the customer.
    OrderConfirmed,
    /// `order.failed`: the notice, with why, to the customer.
    OrderFailed,
    /// `inventory.low_stock`: the alert to `notify.ops_email`.
    LowStock,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Self::OrderConfirmed, Self::OrderFailed, Self::LowStock];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderConfirmed => "order_confirmed",
            Self::OrderFailed => "order_failed",
            Self::LowStock => "low_stock",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// Where a notification stands; stored by name in `notifications.status`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    EnumIter,
    DeriveActiveEnum,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(
    rs_type = "String",
    db_type = "Text",
    rename_all = "SCREAMING_SNAKE_CASE"
)]
pub enum Status {
    /// To be sent (again, after `next_attempt_at` when a send failed).
    Pending,
    /// The SMTP server accepted it.
    Sent,
    /// Every attempt failed (`last_error` says why), or the address cannot be written to.
    Failed,
    /// No address to write to: the customer has none.
    Skipped,
}

impl Status {
    pub const ALL: [Status; 4] = [Self::Pending, Self::Sent, Self::Failed, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Sent => "SENT",
            Self::Failed => "FAILED",
            Self::Skipped => "SKIPPED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_stored_and_as_json() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(Status::parse("sent"), None);
    }
}
