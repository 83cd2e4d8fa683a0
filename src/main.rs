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
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _, filter};
    let level =
        EnvFilter::try_from_env("MAILFERRY_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    // async-imap logs raw protocol lines at debug and trace, LOGIN and
    // AUTHENTICATE included: never let those through, whatever the level.
    let no_raw_protocol = filter::filter_fn(|meta| {
        let raw =
            meta.target().starts_with("async_imap") || meta.target().starts_with("imap_proto");
        !raw || *meta.level() <= tracing::Level::WARN
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(level)
                .with_filter(no_raw_protocol),
        )
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
