//! The order saga.
//!
//! - [`api`]: operator endpoints (`/api/sagas`: stuck sagas, retry, compensate).
//! - [`machine`]: the pure transition function and its table tests. No I/O.
//! - [`effects`]: turns the machine's commands into outbox messages for one order.
//! - [`engine`]: applies one event to one stored saga (shared by replies, timeouts, operators).
//! - [`timeouts`]: the sweep that resends or compensates sagas past their deadline.
//! - [`replies`]: the `orchestrator.replies` consumer: inbox, load, transition, persist with a
//!   version check, outbox, commit.

pub mod api;
pub mod effects;
pub mod engine;
pub mod machine;
pub mod replies;
pub mod timeouts;

pub use machine::{
    FailureReason, InvalidTransition, SagaCommand, SagaEvent, SagaState, transition,
};
