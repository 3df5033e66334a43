//! deploy/docker: the image builds and copies the four service binaries the workspace has, and
//! its entrypoint knows them.

use serde_json::Value;

use super::{SERVICES, deploy_dir, read};

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
