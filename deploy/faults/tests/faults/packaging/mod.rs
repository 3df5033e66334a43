//! The deployment files (deploy/rabbitmq, deploy/docker, deploy/compose.yaml, deploy/k8s), checked
//! as far as this machine can: no container runtime or cluster is reachable here, so nothing is
//! built or applied, but everything the files claim about the code is verified.
//!
//! - [`topology`]: deploy/rabbitmq/definitions.json is exactly what the services declare, and
//!   the services start against a broker that loaded it.
//! - [`manifests`]: every file parses; every `APP__*` variable a manifest passes to a service is
//!   a setting that service's loader reads, and the settings load and validate; the Dockerfile
//!   copies binaries that exist.
//!
//! These tests need no private servers (only the machine's RabbitMQ, for [`topology`]).

mod manifests;
mod topology;

use std::path::PathBuf;

/// The four services: the binary, the compose service and the Kubernetes Deployment of each
/// have this name.
const SERVICES: [&str; 4] = ["orchestrator", "payment", "inventory", "notification"];

/// `deploy/`.
fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("deploy/faults has a parent")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
