//! The order saga: the state machine, the planning and writing of its steps, their storage and
//! the timeline. `orders` builds on it; nothing here imports `orders`.
//!
//! - [`machine`]: the pure transition function and its table tests. No I/O.
//! - [`effects`]: turns the machine's commands into outbox messages for one saga.
//! - [`plan`]: decides a step in memory, the first one included.
//! - [`engine`]: the one writer of steps (intake, replies, timeouts, operators).
//! - [`store`]: the saga's columns of an order's row: reads, locks, the step update.
//! - [`timeline`]: one row per step, written with it.
//! - [`rollup`]: the sales rollups (orders per minute, products per hour), written with the
//!   steps that start and end sagas; `crate::analytics` reads them.
//! - [`status`]: how states read in the API (`OrderStatus`, `StateName`).
//! - [`replies`]: the `orchestrator.replies` consumer: inbox, lock, plan, write, commit.
//! - [`timeouts`]: the sweep that resends or compensates sagas past their deadline.
//! - [`facts`]: the saga metrics and lifecycle lines, reported once committed; the gauges.
//! - [`api`]: operator endpoints (`/api/sagas`: search, retry, compensate).
//! - [`bulk`]: bulk retry and compensate of the sagas a search selects, with a dry run.
//! - [`search`]: the saga search's filter and the conditions it puts on `orders`.

pub mod api;
pub mod bulk;
pub mod effects;
pub mod engine;
pub mod facts;
pub mod machine;
pub mod plan;
pub mod replies;
pub mod rollup;
pub mod search;
pub mod status;
pub mod store;
pub mod timeline;
pub mod timeouts;

pub use machine::{
    FailureReason, InvalidTransition, SagaCommand, SagaEvent, SagaState, transition,
};
