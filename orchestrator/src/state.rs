//! What the HTTP handlers share. It sits below the features (it imports only the settings and
//! the admission count, both leaves), so a feature takes it without importing the start-up code
//! that builds it.

use sea_orm::DatabaseConnection;

use saga_common::messaging::outbox::RelayWakeup;

use crate::admission::Admission;
use crate::configuration::SagaSettings;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    /// Wakes the outbox relay after a commit, so the messages of a step leave at once.
    pub wakeup: RelayWakeup,
    pub saga: SagaSettings,
    /// The bound on sagas in flight: new orders take a slot, ended sagas give it back.
    pub admission: Admission,
}
