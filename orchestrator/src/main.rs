#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    orchestrator::startup::run_from_environment().await
}
