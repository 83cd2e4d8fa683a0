//! Command-line definitions (clap), one variant per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{AuthMethod, Compression};

const EXAMPLES: &str = "\
Examples:
  # Copy every mailbox listed in a Microsoft 365 migration CSV into ./store
  mailferry --store ./store mirror --accounts batch.csv

  # The same with source settings, passwords from files or the environment
  mailferry mirror --accounts mailferry.toml

  # Run it again at any time: only what changed at the source is fetched
  mailferry --store ./store mirror --accounts batch.csv

  # What is in the store, per account and folder
  mailferry --store ./store status
  mailferry --store ./store status --json

Exit codes: 0 all accounts complete, 1 some account or folder incomplete,
2 the command could not run (bad input, store in use, ...).";

#[derive(Debug, Parser)]
#[command(
    name = "mailferry",
    version,
    about = "Move whole mailboxes from an IMAP host into Microsoft 365 through a local, \
             deduplicated, verifiable store",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// The store directory (blobs and index). Default: the config file's
    /// `store`, else ./mailferry-store.
    #[arg(long, short = 's', global = true, env = "MAILFERRY_STORE")]
    pub store: Option<PathBuf>,

    /// More log output (-v info, -vv debug, -vvv trace). Logs go to stderr.
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// No progress bars, only the final summary.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy every folder of every source account into the store; re-runs
    /// fetch only what changed.
    Mirror(MirrorArgs),
    /// Show, per account and folder, what the source had and what is stored.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Source IMAP server [default: secure.emailsrvr.com, or the config's].
    #[arg(long)]
    pub host: Option<String>,

    /// Source port, implicit TLS [default: 993].
    #[arg(long)]
    pub port: Option<u16>,

    /// How to log in at the source [default: login].
    #[arg(long, value_enum)]
    pub auth: Option<AuthMethod>,

    /// COMPRESS=DEFLATE: auto uses it unless the server is on this machine
    /// [default: auto].
    #[arg(long, value_enum)]
    pub compress: Option<Compression>,

    /// Seconds a server may send nothing before its connection counts as
    /// dead (a slow but moving transfer never times out).
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub io_timeout: u64,

    /// PEM file with extra CA certificates to trust (a private CA).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// Do NOT verify the server's TLS certificate. Anyone on the path can
    /// then read the passwords and mail. For test labs only.
    #[arg(long)]
    pub danger_accept_invalid_certs: bool,
}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Accounts: a Microsoft 365 migration CSV (EmailAddress,UserName,Password[,UserRoot])
    /// or a mailferry TOML file.
    #[arg(long, short = 'a', value_name = "FILE")]
    pub accounts: PathBuf,

    #[command(flatten)]
    pub source: SourceArgs,

    /// Only these accounts (by EmailAddress); may be repeated.
    #[arg(long, value_name = "EMAIL")]
    pub only: Vec<String>,

    /// Connections per account [default: 4, or the config's]. Rackspace
    /// allows 15 per user and IP by default.
    #[arg(long)]
    pub connections: Option<usize>,

    /// Accounts mirrored at the same time [default: 4].
    #[arg(long)]
    pub accounts_at_once: Option<usize>,

    /// Most message data held in memory at once, in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_memory_mib: u64,

    /// Print the run summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this account.
    #[arg(long, value_name = "EMAIL")]
    pub account: Option<String>,

    /// JSON on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
}
