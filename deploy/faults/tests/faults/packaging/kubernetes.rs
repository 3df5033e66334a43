//! deploy/k8s: every file is listed in the kustomization, every service has its Deployment
//! (probes, resources, non-root), Service, PodDisruptionBudget and autoscaler, the cluster
//! loads a faithful copy of definitions.json, and each container's environment is resolved
//! (envFrom, env, references into ConfigMaps and Secrets) for the settings checks.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{SERVICES, deploy_dir, read, scalar, yaml};

pub struct Kubernetes {
    /// Every document of every file, with its file.
    documents: Vec<(String, Value)>,
}

impl Kubernetes {
    pub fn read() -> Self {
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
    pub fn environment(&self, service: &str) -> BTreeMap<String, String> {
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
