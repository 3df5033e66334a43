//! deploy/rabbitmq/definitions.json against what the services declare.
//!
//! Every service declares the topology itself when it connects
//! (`topology::declare_for_service`); the file is the same topology for a broker that loads it
//! at boot (compose, the Kubernetes `RabbitmqCluster`). One private vhost gets each service's
//! declarations, with the retry settings deploy/compose.yaml gives it (its delay queues depend
//! on them); its exchanges, queues and bindings, read back from the management API, must equal
//! the file's. A second vhost imports the file and must end up identical, and the services'
//! declarations must then succeed on it: RabbitMQ refuses a redeclaration with other arguments,
//! which is how a drifted file would stop the fleet at start-up.
//!
//! `SAGA_BLESS_DEFINITIONS=1` rewrites the file from the declarations instead of comparing
//! (after a deliberate change to the topology; review the diff).

use std::collections::BTreeSet;

use lapin::{Connection, ConnectionProperties};
use saga_common::messaging::topology;
use saga_common::testing::TestVhost;
use serde_json::{Value, json};

use super::{SERVICES, deploy_dir, read, settings};

const DEFINITIONS: &str = "rabbitmq/definitions.json";

#[tokio::test]
async fn definitions_json_is_what_the_services_declare() {
    let declared = TestVhost::create().await;
    declare_as_the_services_do(&declared).await;
    let actual = listed(&declared).await;

    if std::env::var("SAGA_BLESS_DEFINITIONS").as_deref() == Ok("1") {
        bless(&declared).await;
        return;
    }
    let file: Value = serde_json::from_str(&read(DEFINITIONS)).expect("definitions.json parses");
    assert_eq!(
        file["vhosts"],
        json!([{"name": "/"}]),
        "a boot-time import creates the default vhost itself (RabbitMQ seeds none then)"
    );
    for kind in ["exchanges", "queues", "bindings"] {
        for item in file[kind].as_array().into_iter().flatten() {
            assert_eq!(
                item["vhost"], "/",
                "a boot-time import needs the vhost of {item}"
            );
        }
    }
    assert_same("definitions.json", &normalised_file(&file), &actual);

    // The broker takes the file as it is, and the services then start on top of it.
    let imported = TestVhost::create().await;
    imported
        .api
        .post(
            &format!("/api/definitions/{}", imported.name),
            for_one_vhost(&file),
        )
        .await;
    assert_same("the imported file", &listed(&imported).await, &actual);
    declare_as_the_services_do(&imported).await;
    assert_same(
        "the imported file after the services declared",
        &listed(&imported).await,
        &actual,
    );
}

/// Each service's start-up declaration, on one connection into `vhost`; panics with the
/// broker's refusal (e.g. `PRECONDITION_FAILED - inequivalent arg`).
async fn declare_as_the_services_do(vhost: &TestVhost) {
    let connection = Connection::connect(&vhost.amqp_url, ConnectionProperties::default())
        .await
        .expect("the test RabbitMQ is reachable");
    for service in SERVICES {
        // A channel per service: a refused declaration closes its channel.
        let channel = connection.create_channel().await.expect("a channel");
        let retry = settings::compose_settings(service).retry;
        topology::declare_for_service(&channel, settings::queue(service), &retry)
            .await
            .unwrap_or_else(|e| panic!("{service}'s declaration was refused: {e}"));
    }
    let _ = connection.close(200, "declared".into()).await;
}

/// Exchanges, queues and bindings of `vhost`, one compact JSON line each, without what the broker
/// makes itself (the default and `amq.*` exchanges, the default exchange's implicit bindings)
/// and without broker-generated fields (node, state, statistics, policy).
async fn listed(vhost: &TestVhost) -> BTreeSet<String> {
    let mut items = BTreeSet::new();
    for kind in ["exchanges", "queues", "bindings"] {
        let listed = vhost.api.get(&format!("/api/{kind}/{}", vhost.name)).await;
        for item in listed.as_array().into_iter().flatten() {
            if let Some(line) = normalised(kind, item) {
                items.insert(line);
            }
        }
    }
    items
}

fn normalised_file(file: &Value) -> BTreeSet<String> {
    let mut items = BTreeSet::new();
    for kind in ["exchanges", "queues", "bindings"] {
        for item in file[kind].as_array().into_iter().flatten() {
            if let Some(line) = normalised(kind, item) {
                items.insert(line);
            }
        }
    }
    items
}

/// The fields that define an item; `None` for what the broker creates by itself.
fn normalised(kind: &str, item: &Value) -> Option<String> {
    let keep: &[&str] = match kind {
        "exchanges" => {
            let name = item["name"].as_str().unwrap_or_default();
            if name.is_empty() || name.starts_with("amq.") {
                return None;
            }
            &[
                "name",
                "type",
                "durable",
                "auto_delete",
                "internal",
                "arguments",
            ]
        }
        "queues" => &["name", "durable", "auto_delete", "arguments"],
        _ => {
            if item["source"].as_str().unwrap_or_default().is_empty() {
                return None;
            }
            &[
                "source",
                "destination",
                "destination_type",
                "routing_key",
                "arguments",
            ]
        }
    };
    let mut fields = serde_json::Map::new();
    for key in keep {
        // serde_json's map is sorted, so equal items print equally.
        fields.insert((*key).to_owned(), item[*key].clone());
    }
    Some(format!("{kind} {}", Value::Object(fields)))
}

fn assert_same(what: &str, found: &BTreeSet<String>, declared: &BTreeSet<String>) {
    let missing: Vec<&String> = declared.difference(found).collect();
    let extra: Vec<&String> = found.difference(declared).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} differs from what the services declare \
         (SAGA_BLESS_DEFINITIONS=1 rewrites deploy/{DEFINITIONS} after a deliberate change)\n\
         declared but not in {what}:\n  {}\nin {what} but not declared:\n  {}",
        join(&missing),
        join(&extra)
    );
}

fn join(lines: &[&String]) -> String {
    lines
        .iter()
        .map(|line| line.as_str())
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// The file for `POST /api/definitions/{vhost}`: the same items without their vhost (the
/// endpoint's) and without the vhost list.
fn for_one_vhost(file: &Value) -> Value {
    let mut body = serde_json::Map::new();
    for kind in ["exchanges", "queues", "bindings"] {
        let items: Vec<Value> = file[kind]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let mut item = item.clone();
                if let Some(fields) = item.as_object_mut() {
                    fields.remove("vhost");
                }
                item
            })
            .collect();
        body.insert(kind.to_owned(), Value::Array(items));
    }
    Value::Object(body)
}

/// Writes the declared topology as a boot-time definitions file for the default vhost.
async fn bless(declared: &TestVhost) {
    let exported = declared
        .api
        .get(&format!("/api/definitions/{}", declared.name))
        .await;
    let mut file = serde_json::Map::new();
    file.insert("vhosts".into(), json!([{"name": "/"}]));
    for kind in ["exchanges", "queues", "bindings"] {
        let mut items: Vec<Value> = exported[kind]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| normalised(kind, item).is_some())
            .map(|item| {
                let mut item = item.clone();
                if let Some(fields) = item.as_object_mut() {
                    fields.insert("vhost".into(), json!("/"));
                }
                item
            })
            .collect();
        items.sort_by_key(|item| normalised(kind, item));
        file.insert(kind.to_owned(), Value::Array(items));
    }
    let text = serde_json::to_string_pretty(&Value::Object(file)).expect("JSON prints") + "\n";
    std::fs::write(deploy_dir().join(DEFINITIONS), text).expect("definitions.json is writable");
}
