//! What the manifests pass to a service is what that service reads.
//!
//! The configuration loader ignores keys it does not know (no `deny_unknown_fields`: the
//! settings flatten the shared sections, which serde cannot combine with it), so a misspelt
//! `APP__AMQP__PREFECH` would be dropped silently at run time. Here each service's settings are
//! loaded with exactly the variables a manifest gives it, then every variable must name a key
//! of the loaded settings (their serialized key paths; the secrets, which are never serialized,
//! are compared with the value loaded instead), and the settings must pass the checks the
//! service runs at start-up.

use std::collections::{BTreeMap, HashMap};

use saga_common::configuration::{self, ServiceSettings};
use saga_common::http::auth::Authenticator;
use saga_common::service::Service;
use secrecy::ExposeSecret;
use serde_json::Value;

use super::SERVICES;
use super::compose::compose_environment;
use super::kubernetes::Kubernetes;

/// The queue `service` consumes (its delay queues are named after it).
pub fn queue(service: &str) -> &'static str {
    match service {
        "orchestrator" => orchestrator::startup::Orchestrator::QUEUE,
        "payment" => payment::startup::Payment::QUEUE,
        "inventory" => inventory::startup::Inventory::QUEUE,
        "notification" => notification::startup::Notification::QUEUE,
        other => panic!("no service {other}"),
    }
}

/// A service's settings as loaded from some variables, with what checking them needs.
pub struct Loaded {
    pub common: ServiceSettings,
    /// The whole settings serialized: their key paths are the keys the loader reads.
    serialized: Value,
    /// The service's own start-up check (`Service::validate`).
    validation: Result<(), String>,
}

fn load_as<S: Service>(variables: &BTreeMap<String, String>) -> Result<Loaded, String> {
    let variables: HashMap<String, String> = variables.clone().into_iter().collect();
    let settings =
        configuration::load_from(&S::default_settings(), variables).map_err(|e| e.to_string())?;
    Ok(Loaded {
        common: settings.as_ref().clone(),
        serialized: serde_json::to_value(&settings).map_err(|e| e.to_string())?,
        validation: S::validate(&settings),
    })
}

fn load(service: &str, variables: &BTreeMap<String, String>) -> Result<Loaded, String> {
    match service {
        "orchestrator" => load_as::<orchestrator::startup::Orchestrator>(variables),
        "payment" => load_as::<payment::startup::Payment>(variables),
        "inventory" => load_as::<inventory::startup::Inventory>(variables),
        "notification" => load_as::<notification::startup::Notification>(variables),
        other => panic!("no service {other}"),
    }
}

/// `service`'s settings as deploy/compose.yaml configures it.
pub fn compose_settings(service: &str) -> ServiceSettings {
    load(service, &compose_environment(service))
        .unwrap_or_else(|e| panic!("compose.yaml's {service} settings do not load: {e}"))
        .common
}

/// Secrets are `skip_serializing`: the loaded value stands for the key path.
fn secret_loaded(common: &ServiceSettings, path: &str) -> Option<String> {
    let secret = match path {
        "admin.token" => &common.admin.token,
        "auth.operator_token" => &common.auth.operator_token,
        "auth.jwt_secret" => &common.auth.jwt_secret,
        "auth.jwt_previous_secret" => &common.auth.jwt_previous_secret,
        _ => return None,
    };
    Some(secret.expose_secret().to_owned())
}

/// Every way `variables` is wrong for `service`; empty when the loader reads them all.
async fn problems(service: &str, variables: &BTreeMap<String, String>) -> Vec<String> {
    let loaded = match load(service, variables) {
        Ok(loaded) => loaded,
        Err(error) => return vec![format!("the settings do not load: {error}")],
    };
    let mut problems = Vec::new();
    let mut known = Vec::new();
    key_paths(&loaded.serialized, "", &mut known);
    for (name, value) in variables {
        let Some(path) = name.strip_prefix("APP__") else {
            problems.push(format!("{name} is not an APP__ setting"));
            continue;
        };
        let path = path.to_lowercase().replace("__", ".");
        let read = known.contains(&path)
            || secret_loaded(&loaded.common, &path).is_some_and(|loaded| loaded == *value);
        if !read {
            problems.push(format!("{name}: {service} has no setting `{path}`"));
        }
    }
    let common = &loaded.common;
    for check in [
        loaded.validation.clone(),
        common.amqp.validate(),
        common.retention.validate(),
        common.rate_limit.validate(),
        common.telemetry.validate(),
    ] {
        if let Err(error) = check {
            problems.push(error);
        }
    }
    if let Err(error) = Authenticator::from_settings(common).await {
        problems.push(format!("authentication: {error}"));
    }
    problems
}

fn key_paths(value: &Value, prefix: &str, paths: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                key_paths(value, &path, paths);
            }
        }
        _ => paths.push(prefix.to_owned()),
    }
}

#[tokio::test]
async fn compose_passes_each_service_settings_it_reads() {
    for service in SERVICES {
        let variables = compose_environment(service);
        assert!(
            variables.contains_key("APP__DATABASE__URL"),
            "compose.yaml gives {service} no database"
        );
        let problems = problems(service, &variables).await;
        assert!(
            problems.is_empty(),
            "compose.yaml, {service}:\n  {}",
            problems.join("\n  ")
        );
    }
}

#[tokio::test]
async fn kubernetes_passes_each_service_settings_it_reads() {
    let manifests = Kubernetes::read();
    for service in SERVICES {
        let variables = manifests.environment(service);
        let problems = problems(service, &variables).await;
        assert!(
            problems.is_empty(),
            "deploy/k8s, {service}:\n  {}",
            problems.join("\n  ")
        );
        // The delay queues in definitions.json follow compose's retry settings.
        let loaded = load(service, &variables).expect("loaded above");
        assert_eq!(
            loaded.common.retry.delays(),
            compose_settings(service).retry.delays(),
            "deploy/k8s gives {service} other retry delays than compose.yaml: other delay \
             queues than definitions.json's"
        );
    }
}

#[tokio::test]
async fn a_misspelt_or_foreign_setting_is_caught() {
    let mut variables = compose_environment("payment");
    variables.insert("APP__AMQP__PREFECH".into(), "10".into());
    variables.insert("APP__NOTIFY__SMTP_HOST".into(), "mailpit".into());
    let found = problems("payment", &variables).await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("amqp.prefech"), "{found:?}");
    assert!(found[1].contains("notify.smtp_host"), "{found:?}");
}
