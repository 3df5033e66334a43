//! `loadgen`: see `lib.rs` for what it does and `--help` for its arguments.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match loadgen::cli::parse(&args) {
        Ok(loadgen::cli::Command::Run(settings)) => *settings,
        Ok(loadgen::cli::Command::Help) => {
            println!("{}", loadgen::cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("loadgen: {message}\n\n{}", loadgen::cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match loadgen::run(settings).await {
        Ok(outcome) if outcome.invariants_hold => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("loadgen: the invariants do NOT hold (see above)");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::from(1)
        }
    }
}
