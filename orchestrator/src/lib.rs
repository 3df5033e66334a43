//! The order orchestrator: accepts orders over HTTP and drives each one through its saga by
//! sending commands to the payment and inventory participants over RabbitMQ.
//!
//! - [`saga`]: the state machine, the planning and the one writer of steps, their storage and
//!   timeline, the reply consumer and the timeout worker. It imports nothing from `orders`.
//! - [`orders`]: the order API (`/api/orders`), request parsing, order storage and the intake;
//!   built on `saga`.
//! - [`analytics`]: `GET /api/analytics/summary` (operators), read from the sales rollups that
//!   `saga::rollup` writes with the steps; built on `saga`.
//! - [`console`]: the operator console at `/console` (embedded page and assets).
//! - [`admission`]: the bound on sagas in flight (`503 overloaded` past it), its running count
//!   and the periodic recount that corrects it. A leaf, like `state`.
//! - [`configuration`]: settings: the common ones plus the saga deadlines, the intake and
//!   admission control.
//! - [`state`]: what the HTTP handlers share.
//! - [`startup`]: [`startup::Application`] (build, port, run until stopped).
//! - [`migration`]: this service's schema (orders with saga state, transitions; outbox, inbox).
//! - [`api_doc`]: the OpenAPI document served at `/api/docs/openapi.json`.

pub mod admission;
pub mod analytics;
pub mod api_doc;
pub mod configuration;
pub mod console;
pub mod migration;
pub mod orders;
pub mod saga;
pub mod startup;
pub mod state;
