//! deploy/compose.yaml: it parses, every service is wired to the broker, the database and its
//! health check, what it mounts exists, and its environment as compose would build it (with
//! compose.env.example's values) for the settings checks.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use super::{SERVICES, deploy_dir, read, scalar, yaml};

/// What `docker compose --env-file compose.env` would set in `service`'s container, with the
/// values of compose.env.example.
pub fn compose_environment(service: &str) -> BTreeMap<String, String> {
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
