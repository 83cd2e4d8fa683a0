//! One module per command. Each returns the process exit code.

pub mod mirror;
pub mod status;

use crate::cli::{Cli, Command};

/// Everything finished.
pub const EXIT_OK: i32 = 0;
/// The command ran, but some account or folder is incomplete.
pub const EXIT_INCOMPLETE: i32 = 1;
/// The command could not run.
pub const EXIT_ERROR: i32 = 2;

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Mirror(args) => mirror::run(&cli, args),
        Command::Status(args) => status::run(&cli, args),
    }
}
