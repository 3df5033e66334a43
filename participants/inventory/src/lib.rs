//! The inventory participant: product stock, and the reservations and releases the orchestrator
//! commands.
//!
//! - [`startup`]: settings defaults and [`startup::Application`] (build, port, run until stopped).
//! - [`products`]: `PUT/GET /api/products/{product_id}` (stock, low-stock threshold), the stock
//!   queries (lock, take, give back) and the low-stock alert rules.
//! - [`reservations`]: the reserve and release rules, `GET /api/reservations`, reservation queries.
//! - [`commands`]: the `inventory.commands` consumer: inbox, effect, reply and low-stock alerts in
//!   one transaction.
//! - [`facts`]: what a committed batch reports: the inventory metrics and lifecycle lines.
//! - [`migration`]: this service's schema (products, reservations; outbox and inbox from common).
//! - [`api_doc`]: the OpenAPI document served at `/api/docs/openapi.json`.

pub mod api_doc;
pub mod commands;
pub mod facts;
pub mod migration;
pub mod products;
pub mod reservations;
pub mod startup;
