#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    notification::startup::run_from_environment().await
}
