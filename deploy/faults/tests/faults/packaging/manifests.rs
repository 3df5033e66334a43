//! The manifests against the code: deploy/compose.yaml, deploy/k8s/ and deploy/docker/ parse,
//! and what they pass to a service is what that service reads.
//!
//! The configuration loader ignores keys it does not know (no `deny_unknown_fields`: the
//! settings flatten the shared sections, which serde cannot combine with it), so a misspelt
//! `APP__AMQP__PREFECH` would be dropped silently at run time. Here each service's settings are
//! loaded with exactly the variables a manifest gives it, then every variable must name a key
//! of the loaded settings (their serialized key paths; the secrets, which are never serialized,
//! are compared with the value loaded instead), and the settings must pass the checks the
//! service runs at start-up.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use saga_common::configuration::{self, ServiceSettings};
use saga_common::http::auth::Authenticator;
use saga_common::service::Service;
use secrecy::ExposeSecret;
use serde_json::Value;

use super::{SERVICES, deploy_dir, read};

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

/// The operator console's settings (`console.*`, issue 27), which the manifests already pass
/// to the orchestrator while its branch is merged: tolerated only while the orchestrator does
/// not read them, checked like any other setting once it does. Empty this list then.
const PENDING: &[&str] = &[
    "console.payment_url",
    "console.inventory_url",
    "console.notification_url",
];

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
        if !read && !PENDING.contains(&path.as_str()) {
            problems.push(format!("{name}: {service} has no setting `{path}`"));
        }
    }
    let common = &loaded.common;
    for check in [
        loaded.validation.clone(),
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

// ---- deploy/compose.yaml --------------------------------------------------------------------

fn yaml(relative: &str) -> Vec<Value> {
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

/// What `docker compose --env-file compose.env` would set in `service`'s container, with the
/// values of compose.env.example.
fn compose_environment(service: &str) -> BTreeMap<String, String> {
    let compose = yaml("compose.yaml").remove(0);
    let example = env_file("compose.env.example");
    let environment = &compose["services"][service]["environment"];
    let Value::Object(environment) = environment else {
        panic!("compose.yaml: {service} has no `environment` mapping")
    };
    environment
        .iter()
        .map(|(name, value)| {
            let value =
                scalar(value).unwrap_or_else(|| panic!("compose.yaml: {name} of {service}"));
            (name.clone(), interpolate(&value, &example))
        })
        .collect()
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// `NAME=value` lines, `#` comments.
fn env_file(relative: &str) -> HashMap<String, String> {
    read(relative)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{relative}: `{line}` is not NAME=value"));
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

/// Compose's `${NAME}`, `${NAME:?message}`, `${NAME:-default}` and `$$`; every NAME must be in
/// compose.env.example, so the example documents all a user has to set.
fn interpolate(text: &str, variables: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = after
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {text}"));
            let expression = &after[..end];
            let name_end = expression.find([':', '?', '-']).unwrap_or(expression.len());
            let name = &expression[..name_end];
            let value = variables.get(name).unwrap_or_else(|| {
                panic!("compose.yaml reads ${{{name}}}, which compose.env.example does not set")
            });
            out.push_str(value);
            rest = &after[end + 1..];
        } else {
            panic!("compose.yaml: write ${{NAME}} rather than $NAME in {text}");
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn compose_parses_and_wires_the_broker_the_database_and_prometheus() {
    let compose = yaml("compose.yaml").remove(0);
    let services = compose["services"]
        .as_object()
        .expect("compose.yaml has services");
    for name in ["rabbitmq", "postgres", "prometheus", "mailpit"]
        .into_iter()
        .chain(SERVICES)
    {
        assert!(services.contains_key(name), "compose.yaml has no {name}");
    }
    for service in SERVICES {
        let definition = &services[service];
        assert_eq!(
            definition["command"],
            serde_json::json!([service]),
            "{service}"
        );
        assert!(definition["healthcheck"]["test"].is_array(), "{service}");
        for dependency in ["rabbitmq", "postgres"] {
            assert_eq!(
                definition["depends_on"][dependency]["condition"], "service_healthy",
                "{service} waits for {dependency}"
            );
        }
    }
    // Every file compose mounts from the repository exists (the user creates the two `.example`
    // ones' copies; those must exist as examples).
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let Some(source) = volume.as_str().and_then(|v| v.split(':').next()) else {
                continue;
            };
            if !source.starts_with('.') {
                continue; // a named volume
            }
            let path = deploy_dir().join(source);
            let example = format!("{}.example", path.display());
            assert!(
                path.exists() || Path::new(&example).exists(),
                "compose.yaml mounts {source} into {name}, and neither it nor {source}.example exists"
            );
        }
    }
    // Prometheus's configuration and the broker's parse too.
    let prometheus = yaml("compose/prometheus.yml").remove(0);
    let jobs: Vec<&str> = prometheus["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .filter_map(|job| job["job_name"].as_str())
        .collect();
    for job in SERVICES.into_iter().chain(["rabbitmq"]) {
        assert!(
            jobs.contains(&job),
            "compose/prometheus.yml scrapes no {job}"
        );
    }
    let users: Value =
        serde_json::from_str(&read("rabbitmq/users.json.example")).expect("users.json.example");
    assert!(users["users"].is_array() && users["permissions"].is_array());
}

// ---- deploy/k8s -----------------------------------------------------------------------------

struct Kubernetes {
    /// Every document of every file, with its file.
    documents: Vec<(String, Value)>,
}

impl Kubernetes {
    fn read() -> Self {
        let directory = deploy_dir().join("k8s");
        let mut files: Vec<String> = std::fs::read_dir(&directory)
            .expect("deploy/k8s exists")
            .map(|entry| {
                entry
                    .expect("a directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(".yaml"))
            .collect();
        files.sort();
        let mut documents = Vec::new();
        for file in files {
            for document in yaml(&format!("k8s/{file}")) {
                documents.push((file.clone(), document));
            }
        }
        Self { documents }
    }

    fn find(&self, kind: &str, name: &str) -> &Value {
        self.documents
            .iter()
            .map(|(_, document)| document)
            .find(|document| document["kind"] == kind && document["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("deploy/k8s has no {kind} {name}"))
    }

    /// A ConfigMap's `data` or a Secret's `stringData` (templates keep their values readable).
    fn values(&self, kind: &str, name: &str) -> BTreeMap<String, String> {
        let field = if kind == "Secret" {
            "stringData"
        } else {
            "data"
        };
        let Value::Object(values) = &self.find(kind, name)[field] else {
            panic!("{kind} {name} has no {field}")
        };
        values
            .iter()
            .map(|(key, value)| (key.clone(), scalar(value).unwrap_or_default()))
            .collect()
    }

    /// The environment of the Deployment `service`'s container `service`: `envFrom`, then
    /// `env` (which wins), references resolved.
    fn environment(&self, service: &str) -> BTreeMap<String, String> {
        let deployment = self.find("Deployment", service);
        let container = deployment["spec"]["template"]["spec"]["containers"]
            .as_array()
            .and_then(|containers| containers.iter().find(|c| c["name"] == service))
            .unwrap_or_else(|| panic!("Deployment {service} has no container {service}"));
        let mut variables = BTreeMap::new();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let (kind, reference) = match (&source["configMapRef"], &source["secretRef"]) {
                (Value::Object(_), _) => ("ConfigMap", &source["configMapRef"]),
                (_, Value::Object(_)) => ("Secret", &source["secretRef"]),
                _ => panic!("{service}: envFrom {source}"),
            };
            let name = reference["name"]
                .as_str()
                .expect("envFrom names its source");
            variables.extend(self.values(kind, name));
        }
        for variable in container["env"].as_array().into_iter().flatten() {
            let name = variable["name"].as_str().expect("env has names").to_owned();
            let value = if let Some(value) = scalar(&variable["value"]) {
                value
            } else {
                let from = &variable["valueFrom"];
                let (kind, reference) = match (&from["configMapKeyRef"], &from["secretKeyRef"]) {
                    (Value::Object(_), _) => ("ConfigMap", &from["configMapKeyRef"]),
                    (_, Value::Object(_)) => ("Secret", &from["secretKeyRef"]),
                    _ => panic!("{service}: {name} has no value"),
                };
                let source = reference["name"]
                    .as_str()
                    .expect("a reference names its source");
                let key = reference["key"]
                    .as_str()
                    .expect("a reference names its key");
                self.values(kind, source)
                    .remove(key)
                    .unwrap_or_else(|| panic!("{service}: {kind} {source} has no key {key}"))
            };
            variables.insert(name, value);
        }
        variables
    }
}

#[test]
fn kubernetes_manifests_are_complete() {
    let manifests = Kubernetes::read();
    let kustomization = yaml("k8s/kustomization.yaml").remove(0);
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|resource| resource.as_str().expect("a file name").to_owned())
        .collect();
    listed.sort();
    let mut files: Vec<String> = manifests
        .documents
        .iter()
        .map(|(file, _)| file.clone())
        .filter(|file| file != "kustomization.yaml")
        .collect();
    files.dedup();
    assert_eq!(
        listed, files,
        "kustomization.yaml lists every manifest, and only those"
    );

    for service in SERVICES {
        let deployment = manifests.find("Deployment", service);
        let spec = &deployment["spec"]["template"]["spec"];
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{service}");
        let container = &spec["containers"][0];
        assert_eq!(container["args"], serde_json::json!([service]), "{service}");
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"], "/health/live",
            "{service}"
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"], "/health/ready",
            "{service}"
        );
        assert!(container["startupProbe"].is_object(), "{service}");
        for bound in ["requests", "limits"] {
            assert!(
                container["resources"][bound]["cpu"].is_string(),
                "{service} {bound}"
            );
            assert!(
                container["resources"][bound]["memory"].is_string(),
                "{service} {bound}"
            );
        }
        // The probes, the Service and the port the process listens on agree.
        let port = manifests.environment(service)["APP__APPLICATION__PORT"].clone();
        assert_eq!(
            container["ports"][0]["containerPort"].to_string(),
            port,
            "{service}"
        );
        let target = &manifests.find("Service", service)["spec"]["ports"][0]["targetPort"];
        assert!(
            *target == "http" || target.as_u64().map(|p| p.to_string()) == Some(port.clone()),
            "{service}: {target}"
        );
        manifests.find("PodDisruptionBudget", service);
        let autoscaler = manifests.find("HorizontalPodAutoscaler", service);
        assert_eq!(autoscaler["apiVersion"], "autoscaling/v2");
        assert_eq!(autoscaler["spec"]["scaleTargetRef"]["name"], service);
    }

    let cluster = manifests.find("RabbitmqCluster", "saga-rabbitmq");
    assert_eq!(cluster["apiVersion"], "rabbitmq.com/v1beta1");
    assert_eq!(cluster["spec"]["replicas"], 3);
    let config = cluster["spec"]["rabbitmq"]["additionalConfig"]
        .as_str()
        .expect("additionalConfig");
    assert!(config.contains("load_definitions"), "{config}");
    // The ConfigMap the cluster loads is deploy/rabbitmq/definitions.json itself.
    let embedded = manifests.values("ConfigMap", "saga-rabbitmq-definitions");
    let embedded: Value = serde_json::from_str(&embedded["definitions.json"])
        .expect("the ConfigMap's definitions.json parses");
    let file: Value =
        serde_json::from_str(&read("rabbitmq/definitions.json")).expect("definitions.json");
    assert_eq!(
        embedded, file,
        "deploy/k8s/rabbitmq.yaml's definitions.json is a copy of deploy/rabbitmq/definitions.json: \
         copy it again"
    );
}

// ---- deploy/docker --------------------------------------------------------------------------

#[test]
fn the_image_holds_the_four_service_binaries() {
    let dockerfile = read("docker/Dockerfile");
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(deploy_dir())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let binaries: Vec<&str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|package| package["targets"].as_array().into_iter().flatten())
        .filter(|target| target["kind"] == serde_json::json!(["bin"]))
        .filter_map(|target| target["name"].as_str())
        .collect();
    let entrypoint = read("docker/entrypoint.sh");
    for service in SERVICES {
        assert!(
            binaries.contains(&service),
            "no binary {service} in the workspace: {binaries:?}"
        );
        assert!(
            dockerfile.contains(&format!("--bin {service}")),
            "the Dockerfile does not build {service}"
        );
        assert!(
            dockerfile.contains(&format!("target/release/{service} ")),
            "the Dockerfile does not copy {service}"
        );
        assert!(
            entrypoint.contains(service),
            "entrypoint.sh cannot start {service}"
        );
    }
    assert!(
        dockerfile.contains("HEALTHCHECK"),
        "the image has a health check"
    );
    assert!(
        dockerfile.contains("USER "),
        "the image runs as a user of its own"
    );
}
