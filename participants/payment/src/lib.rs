//! The payment participant: customer accounts, and the charges and refunds the orchestrator
//! commands.
//!
//! - [`startup`]: settings defaults and [`startup::Application`] (build, port, run until stopped).
//! - [`accounts`]: `PUT/GET /api/accounts/{customer_id}` (balance, e-mail address; each write
//!   publishes `account.updated` through the outbox) and account queries.
//! - [`payments`]: the charge and refund rules, `GET /api/payments`, payment queries.
//! - [`commands`]: the `payment.commands` consumer: inbox, effect and reply in one transaction.
//! - [`facts`]: what a committed batch reports: the payment metrics and lifecycle lines.
//! - [`migration`]: this service's schema (accounts, payments; outbox and inbox from common).
//! - [`api_doc`]: the OpenAPI document served at `/api/docs/openapi.json`.

pub mod accounts;
pub mod api_doc;
pub mod commands;
pub mod facts;
pub mod migration;
pub mod payments;
pub mod startup;
