#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    inventory::startup::run_from_environment().await
}
