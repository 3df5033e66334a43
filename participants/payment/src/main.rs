#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    payment::startup::run_from_environment().await
}
