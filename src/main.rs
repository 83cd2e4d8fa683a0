//! The `mailferry` binary: parse arguments, set up logging, run the
//! command, map the outcome to an exit code.

use clap::Parser as _;
use mailferry::cli::Cli;
use mailferry::commands::{self, EXIT_ERROR};

fn main() {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILFERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", mailferry::mirror::error_chain(&e));
            EXIT_ERROR
        }
    };
    std::process::exit(code);
}
