//! The notification service: e-mail to customers about their orders and to the shop about low
//! stock, from the events on `saga.events`, exactly one per event (docs/notifications.md).
//!
//! - [`startup`]: the `Service` impl (settings, consumer, routes, the sender task).
//! - [`configuration`]: `Settings` = the shared sections + `notify` (SMTP, addresses, retries).
//! - [`events`]: the `notification.events` consumer: inbox, addresses, notification rows in one
//!   transaction; the contract over the order, account and stock events.
//! - [`notifications`]: the mail outbox table (kinds, statuses, queries) and its operator API.
//! - [`sender`]: sends the `PENDING` rows after commit, with retries and backoff.
//! - [`mail`]: the templates (text and HTML), money formatting, the SMTP client.
//! - [`facts`]: the metrics and lifecycle lines.
//! - [`migration`]: this service's schema (recipients, notifications; outbox and inbox from common).
//! - [`api_doc`]: the OpenAPI document served at `/api/docs/openapi.json`.

pub mod api_doc;
pub mod configuration;
pub mod events;
pub mod facts;
pub mod mail;
pub mod migration;
pub mod notifications;
pub mod sender;
pub mod startup;
