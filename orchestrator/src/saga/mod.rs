//! The order saga.
//!
//! - [`machine`]: the pure transition function and its table tests. No I/O.
//! - [`effects`]: turns the machine's commands into outbox messages for one order.
//! - [`replies`]: the `orchestrator.replies` consumer: inbox, load, transition, persist with a
//!   version check, outbox, commit.

pub mod effects;
pub mod machine;
pub mod replies;

pub use machine::{
    FailureReason, InvalidTransition, SagaCommand, SagaEvent, SagaState, transition,
};
