//! The order orchestrator: accepts orders over HTTP and drives each one through its saga by
//! sending commands to the payment and inventory participants over RabbitMQ.
//!
//! - [`saga`]: the pure state machine ([`saga::machine`]), command-to-message mapping
//!   ([`saga::effects`]) and the reply consumer ([`saga::replies`]).
//! - [`orders`]: the order API (`/api/orders`), request parsing and order storage.
//! - [`configuration`]: settings: the common ones plus the saga deadlines.
//! - [`startup`]: [`startup::Application`] (build, port, run until stopped).
//! - [`migration`]: this service's schema (orders with saga state, transitions; outbox, inbox).
//! - [`api_doc`]: the OpenAPI document served at `/api/docs/openapi.json`.

pub mod api_doc;
pub mod configuration;
pub mod migration;
pub mod orders;
pub mod saga;
pub mod startup;
