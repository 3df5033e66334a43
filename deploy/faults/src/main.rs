//! `fleet-node orchestrator|payment|inventory|notification`: runs one service of the fleet, through the same
//! `startup::run_from_environment` that service's own `main.rs` calls.
//!
//! Why one binary for every service: cargo hands an integration test the path of its own
//! package's binaries (`CARGO_BIN_EXE_<name>`) and of no other package's, and the fault tests need
//! every service as a real OS process they can SIGKILL and restart. Each arm is the very function the
//! service's `main` calls: what the tests kill is what runs in production.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let service = std::env::args().nth(1).unwrap_or_default();
    match service.as_str() {
        "orchestrator" => orchestrator::startup::run_from_environment().await,
        "payment" => payment::startup::run_from_environment().await,
        "inventory" => inventory::startup::run_from_environment().await,
        "notification" => notification::startup::run_from_environment().await,
        other => Err(format!(
            "unknown service `{other}`: usage: fleet-node orchestrator|payment|inventory|notification"
        )
        .into()),
    }
}
