//! The `mailferry` binary: parse arguments, set up logging, run the
//! command, map the outcome to an exit code. Arguments, progress drawing
//! and printing live here (`cli/`); the work is done by the `mailferry`
//! library, which knows nothing of the terminal.

mod cli;

use clap::Parser as _;
use cli::args::{Cli, Command};
use mailferry::stop::{self, Signal};

/// glibc's malloc gives every thread that meets a locked arena an arena of
/// its own (up to 8 per core), and each keeps what was freed in it: the
/// first mirror of a 70,000-message account peaked at 78 MB of heap against
/// 56 MB for 7,000, and one arena held it to 47 and 38 MB, with less time in
/// the kernel (docs/BENCHMARKS.md, issue 13). The threads that allocate
/// much are few and short-lived, so sharing one costs nothing measurable.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    // SAFETY: mallopt only sets a tunable of the allocator; called first in
    // main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    one_malloc_arena();
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
    // Commands that move mail stop cleanly; the others just stop.
    let graceful = matches!(
        cli.command,
        Command::Mirror(_) | Command::Upload(_) | Command::Sync(_) | Command::Cutover(_)
    );
    on_signals(graceful);
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", mailferry::outcome::error_chain(&e));
            cli::exit_code_of_error(&e)
        }
    };
    let code = match stop::requested() {
        Some(signal) => {
            eprintln!("interrupted — run again to continue");
            signal.exit_code()
        }
        None => code,
    };
    std::process::exit(code);
}

/// SIGINT and SIGTERM: the first asks the run to stop taking new work and
/// to print its summary; a second (or the first, for a command that only
/// reads) ends the process at once. Either way the store is consistent:
/// its writes are ordered so that a kill at any moment is safe.
fn on_signals(graceful: bool) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let signal = if sig == SIGINT {
                Signal::Interrupt
            } else {
                Signal::Terminate
            };
            if !graceful || stop::requested().is_some() {
                eprintln!("\nstopped at once; the store is safe; run again to continue");
                std::process::exit(signal.exit_code());
            }
            eprintln!(
                "\nstopping: no new work is started, work in flight is abandoned safely; \
                 press Ctrl-C again to stop at once"
            );
            stop::request(signal);
        }
    });
}
