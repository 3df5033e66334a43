//! `loadgen`: see `lib.rs` for what it does and `--help` for its arguments.

use std::process::ExitCode;

// One thread: the load generator shares the machine with what it measures, and a pool of
// workers costs it more CPU per saga than one thread; it needs a tenth of a core. `bench`
// shares it: its samplers wake a few times a second (the flush probe has a thread of its own).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bench") {
        return bench(&args[1..]).await;
    }
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

async fn bench(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", loadgen::bench::cli::USAGE);
        return ExitCode::SUCCESS;
    }
    let settings = match loadgen::bench::cli::parse(args) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("loadgen bench: {message}\n\n{}", loadgen::bench::cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match loadgen::bench::run(settings).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("loadgen bench: a phase's invariants do NOT hold, or it wrote no result");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("loadgen bench: {error}");
            ExitCode::from(1)
        }
    }
}
