//! `loadgen`: see `lib.rs` for what it does and `--help` for its arguments.

use std::process::ExitCode;

// One thread: the load generator shares the machine with what it measures, and a pool of
// workers costs it more CPU per saga than one thread; it needs a tenth of a core. `bench`
// shares it: its samplers wake a few times a second (the flush probe has a thread of its own).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => return bench(&args[1..]).await,
        Some("token") => return token(&args[1..]),
        _ => {}
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

/// `loadgen token`: one customer JWT on stdout (what deploy/token.sh prints).
fn token(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", loadgen::cli::TOKEN_USAGE);
        return ExitCode::SUCCESS;
    }
    let request = match loadgen::cli::parse_token(args, &|name| std::env::var(name).ok()) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("loadgen token: {message}\n\n{}", loadgen::cli::TOKEN_USAGE);
            return ExitCode::from(2);
        }
    };
    let now = chrono::Utc::now().timestamp();
    match loadgen::auth::mint(&request.jwt_secret, &request.customer_id, request.ttl, now) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("loadgen token: {error}");
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
