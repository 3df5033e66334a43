//! The deployment files (deploy/rabbitmq, deploy/docker, deploy/compose.yaml, deploy/k8s), checked
//! as far as this machine can: no container runtime or cluster is reachable here, so nothing is
//! built or applied, but everything the files claim about the code is verified.
//!
//! - [`topology`]: deploy/rabbitmq/definitions.json is exactly what the services declare, and
//!   the services start against a broker that loaded it.
//! - [`settings`]: every `APP__*` variable a manifest passes to a service is a setting that
//!   service's loader reads, and the settings load and validate.
//! - [`compose`], [`kubernetes`], [`image`]: each file parses and holds what it must; the
//!   Dockerfile copies binaries that exist.
//!
//! These tests need no private servers (only the machine's RabbitMQ, for [`topology`]).

mod compose;
mod image;
mod kubernetes;
mod settings;
mod topology;

use std::path::PathBuf;

use serde_json::Value;

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

/// Every document of a YAML file under deploy/, merge keys applied, as JSON values.
pub fn yaml(relative: &str) -> Vec<Value> {
    let text = read(relative);
    let mut documents = Vec::new();
    for document in yaml_serde::Deserializer::from_str(&text) {
        let mut value: yaml_serde::Value = serde::Deserialize::deserialize(document)
            .unwrap_or_else(|e| panic!("{relative} does not parse: {e}"));
        // `<<: *anchor`, as compose applies it.
        value
            .apply_merge()
            .unwrap_or_else(|e| panic!("{relative}: {e}"));
        if !value.is_null() {
            documents.push(
                serde_json::to_value(&value)
                    .unwrap_or_else(|e| panic!("{relative} is not JSON-like: {e}")),
            );
        }
    }
    documents
}

/// A string, number or boolean as the text an environment variable would hold.
pub fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}
