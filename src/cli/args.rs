//! Command-line definitions (clap), one variant per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use mailferry::config::{AuthMethod, Compression, Named, TargetKind};

const EXAMPLES: &str = "\
Examples (the four phases of a batch):
  # 1. Prepare: log in everywhere, count, and say go or no-go per account
  mailferry --store ./store preflight --accounts mailferry.toml

  # 2. Initial copy: every mailbox into the store, then into Microsoft 365
  mailferry --store ./store mirror --accounts batch.csv
  mailferry --store ./store plan --accounts batch.csv
  mailferry --store ./store upload --accounts batch.csv --tenant contoso.onmicrosoft.com \\
      --client-id 00000000-0000-0000-0000-000000000000 --client-secret-env MAILFERRY_SECRET

  # 3. Incremental syncs until cutover: only what changed moves
  mailferry sync --accounts mailferry.toml --every 24h

  # 4. After the MX records point to Microsoft 365: the final pass
  mailferry cutover --accounts mailferry.toml --check-mx

  # Where the batch stands: per folder, one line per account, JSON, HTML
  mailferry --store ./store status
  mailferry --store ./store status --summary
  mailferry --store ./store status --json
  mailferry --store ./store report --html batch-report.html

  # Prove nothing was lost: the store, then the target read back
  mailferry --store ./store verify
  mailferry verify --target --accounts mailferry.toml

Exit codes (when several apply, the first in this list that does):
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM: run again to continue
  5    the store is in use by another mailferry process
  3    some account could not log in (source or target: password, token)
  4    some server could not be reached (DNS, refused, TLS, dropped)
  2    the command could not run (bad input, no store, ...)
  1    some account or folder is incomplete (or NO-GO, or a batch not done)
  0    everything complete (or GO)";

#[derive(Debug, Parser)]
#[command(
    name = "mailferry",
    version,
    about = "Move whole mailboxes from an IMAP host into Microsoft 365 through a local, \
             deduplicated, verifiable store",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// The store: a directory (blobs and index), or object storage
    /// (az://container/prefix, s3://bucket/prefix; credentials from the
    /// environment as Azure's and AWS's tools read them). Default:
    /// $MAILFERRY_STORE, else the accounts file's `store`, else
    /// ./mailferry-store. Only a first `mirror`, `sync` or `import` makes a
    /// new store.
    #[arg(long, short = 's', global = true)]
    pub store: Option<PathBuf>,

    /// With a store in object storage: the local directory where each
    /// shard's index is kept while a worker runs (restored from the store
    /// when missing or older).
    #[arg(
        long,
        global = true,
        env = "MAILFERRY_WORK_DIR",
        default_value = "mailferry-work",
        value_name = "DIR"
    )]
    pub work_dir: PathBuf,

    /// With a store in object storage: how long a worker's hold on its
    /// shard lasts unless renewed (every third of it). A worker killed
    /// without ending its run keeps the shard that long.
    #[arg(long, global = true, env = "MAILFERRY_LEASE", default_value = "2m", value_parser = parse_interval, value_name = "DURATION")]
    pub lease: std::time::Duration,

    /// With a store in object storage: how often a running worker writes
    /// its shard's index to the store (also at the end of each run).
    #[arg(long, global = true, env = "MAILFERRY_SNAPSHOT_EVERY", default_value = "5m", value_parser = parse_interval, value_name = "DURATION")]
    pub snapshot_every: std::time::Duration,

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
    /// Before a batch starts: log in to every source and target (changing
    /// nothing), count each folder, and say go or no-go per account.
    Preflight(PreflightArgs),
    /// Copy every folder of every source account into the store; re-runs
    /// fetch only what changed.
    Mirror(MirrorArgs),
    /// Replay the store into the target mailboxes (Microsoft 365 by
    /// default); re-runs append only what is missing or failed.
    Upload(UploadArgs),
    /// Mirror, then upload.
    Sync(SyncArgs),
    /// The final pass after the MX records point to Microsoft 365: check
    /// MX (optional), mirror, upload, read the target back, and record the
    /// batch complete. Running it again is harmless.
    Cutover(CutoverArgs),
    /// Print each account's folder map (source folder to target folder).
    Plan(PlanArgs),
    /// Read a Maildir tree, .eml files or mbox files into the store as an
    /// account of its own (to upload an old local export); a user's
    /// contacts, calendars and tasks (.vcf, .csv, .ics) for their mailbox;
    /// an Outlook data file (.pst): both.
    Import(ImportArgs),
    /// Write the store out as Maildir, mbox or .eml files.
    Export(ExportArgs),
    /// Re-hash every blob and check that the index and the objects agree.
    Verify(VerifyArgs),
    /// List (or with --delete, remove) the blob files no message points at:
    /// leftovers of a run that was stopped between storing and recording.
    Gc(GcArgs),
    /// Show, per account and folder, what the source had and what is stored;
    /// per target folder, what was uploaded, skipped (and why) and failed.
    Status(StatusArgs),
    /// Write a self-contained HTML page of the batch for the customer:
    /// totals, a bar per folder, every message that did not go.
    Report(ReportArgs),
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
    #[arg(long, value_parser = named::<AuthMethod>())]
    pub auth: Option<AuthMethod>,

    /// COMPRESS=DEFLATE: auto uses it unless the server is on this machine
    /// [default: auto].
    #[arg(long, value_parser = named::<Compression>())]
    pub compress: Option<Compression>,

    /// Seconds a source server may send nothing (while connecting, logging
    /// in or answering) before its connection counts as dead; a slow but
    /// moving transfer never times out [default: 180].
    #[arg(long, value_name = "SECS")]
    pub io_timeout: Option<u64>,

    /// PEM file with extra CA certificates to trust (a private CA).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// Do NOT verify the server's TLS certificate. Anyone on the path can
    /// then read the passwords and mail. For test labs only.
    #[arg(long)]
    pub danger_accept_invalid_certs: bool,
}

/// One worker's part of a batch split across several workers.
#[derive(Debug, Clone, Default, Args)]
pub struct ShardArgs {
    /// Only the accounts of shard I of N (counting from 0): those whose
    /// EmailAddress hashes to I. The same on every run and machine.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// Split the batch into N shards and take the one JOB_COMPLETION_INDEX
    /// names, as a Kubernetes Indexed Job sets it.
    #[arg(long, value_name = "N", env = "MAILFERRY_SHARDS")]
    pub shards: Option<u32>,
}

/// Which accounts a command works on.
#[derive(Debug, Args)]
pub struct AccountsArgs {
    /// Accounts: a Microsoft 365 migration CSV (EmailAddress,UserName,Password[,UserRoot])
    /// or a mailferry TOML file.
    #[arg(long, short = 'a', value_name = "FILE")]
    pub accounts: PathBuf,

    /// Only these accounts (by EmailAddress); may be repeated.
    #[arg(long, value_name = "EMAIL")]
    pub only: Vec<String>,

    #[command(flatten)]
    pub shard: ShardArgs,

    /// Accounts worked on at the same time [default: 4, or the config's].
    #[arg(long)]
    pub accounts_at_once: Option<usize>,
}

#[derive(Debug, Args)]
pub struct MirrorOnlyArgs {
    /// Connections per source account [default: 4, or the config's].
    /// Rackspace allows 15 per user and IP by default.
    #[arg(long)]
    pub connections: Option<usize>,

    /// Most message data held in memory at once, in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_memory_mib: u64,

    /// Look for new mail only: a folder whose message count, UIDNEXT and
    /// UIDVALIDITY are unchanged is not opened, so flag changes and
    /// deletions in it wait for the next run without --quick. Saves most on
    /// servers without CONDSTORE (Courier), where a full run reads every
    /// folder's flags.
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    #[command(flatten)]
    pub accounts: AccountsArgs,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub mirror: MirrorOnlyArgs,

    #[command(flatten)]
    pub link: LinkArgs,

    /// Print the run summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How much of the line mailferry may take.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// At most this many bytes per second over all IMAP connections of the
    /// run together, both ways (a line shared with people at work): 2M is
    /// 2 MB/s, 20Mbit is 2.5 MB/s [default: no cap].
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_rate: Option<u64>,
}

fn parse_rate(text: &str) -> Result<u64, String> {
    mailferry::rate::parse_rate(text).map_err(|e| e.to_string())
}

/// Where the upload goes and how to log in there.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// m365 (Exchange Online: XOAUTH2, Exchange's folder names and limits)
    /// or imap (any server) [default: m365, or the config's].
    #[arg(long, value_parser = named::<TargetKind>())]
    pub target_kind: Option<TargetKind>,

    /// Target IMAP server [default: outlook.office365.com].
    #[arg(long)]
    pub target_host: Option<String>,

    /// Target port, implicit TLS [default: 993].
    #[arg(long)]
    pub target_port: Option<u16>,

    /// How to log in at the target [default: xoauth2 for m365, login for imap].
    #[arg(long, value_parser = named::<AuthMethod>())]
    pub target_auth: Option<AuthMethod>,

    /// PEM file with extra CA certificates for the target.
    #[arg(long, value_name = "PEM")]
    pub target_ca_file: Option<PathBuf>,

    /// Do NOT verify the target's TLS certificate. For test labs only.
    #[arg(long)]
    pub target_danger_accept_invalid_certs: bool,

    /// Seconds the target may send nothing (while connecting, logging in,
    /// taking an APPEND or answering) before its connection counts as dead
    /// [default: 180].
    #[arg(long, value_name = "SECS")]
    pub target_io_timeout: Option<u64>,

    /// Connections per target mailbox [default: 4]. Exchange Online allows
    /// few per mailbox and throttles beyond that.
    #[arg(long)]
    pub target_connections: Option<usize>,

    /// Skip messages larger than this, in MiB [default: 35 for m365, none
    /// for imap; an APPENDLIMIT the server announces also applies].
    #[arg(long, value_name = "MIB")]
    pub max_message_mib: Option<u64>,

    /// Microsoft Graph's root, where contacts, events and tasks go
    /// [default: https://graph.microsoft.com/v1.0 for m365, none for imap].
    #[arg(long, value_name = "URL")]
    pub graph_url: Option<String>,

    /// Azure AD tenant (id or domain) for OAuth.
    #[arg(long)]
    pub tenant: Option<String>,

    /// The app registration's client id.
    #[arg(long)]
    pub client_id: Option<String>,

    /// Environment variable holding the client secret.
    #[arg(long, value_name = "VAR")]
    pub client_secret_env: Option<String>,

    /// File whose first line is the client secret.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,

    /// PEM certificate of the app (certificate credential instead of a secret).
    #[arg(long, value_name = "PEM")]
    pub certificate: Option<PathBuf>,

    /// PEM private key for --certificate (default: the certificate file).
    #[arg(long, value_name = "PEM")]
    pub private_key: Option<PathBuf>,

    /// Sign in one user interactively (device code) instead of app-only.
    #[arg(long)]
    pub device_code: bool,

    /// Where the device-code flow keeps its refresh token (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub token_cache: Option<PathBuf>,

    /// The identity platform's address [default: https://login.microsoftonline.com].
    #[arg(long, value_name = "URL")]
    pub oauth_authority: Option<String>,
}

#[derive(Debug, Args)]
pub struct UploadOnlyArgs {
    /// Retry only the messages that failed before.
    #[arg(long)]
    pub retry_failed: bool,

    /// Print what would be appended where; change nothing, connect nowhere.
    #[arg(long)]
    pub dry_run: bool,

    /// A folder map (Account,SourceFolder,TargetFolder) that overrides the
    /// default mapping; `plan --write-map` writes one to edit.
    #[arg(long, value_name = "CSV")]
    pub map: Option<PathBuf>,

    /// Allow several source folders to go to one target folder.
    #[arg(long)]
    pub merge_folders: bool,

    /// Send messages that hold NUL bytes to a target without BINARY in a
    /// plain literal (some servers keep them, others refuse or strip them).
    /// Without it such messages are skipped and reported.
    #[arg(long)]
    pub send_nul_bytes: bool,

    /// Add the attendees of imported events to them. Microsoft Graph then
    /// SENDS EVERY ATTENDEE AN INVITATION (it cannot be told not to).
    /// Without it, events are created without attendees and name them in
    /// their description.
    #[arg(long)]
    pub invite_attendees: bool,

    /// Upload mail only, not the imported contacts, events and tasks.
    #[arg(long, conflicts_with = "items_only")]
    pub mail_only: bool,

    /// Upload the imported contacts, events and tasks only, not mail.
    #[arg(long)]
    pub items_only: bool,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    #[command(flatten)]
    pub accounts: AccountsArgs,

    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub upload: UploadOnlyArgs,

    #[command(flatten)]
    pub link: LinkArgs,

    /// Print the run summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub accounts: AccountsArgs,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub mirror: MirrorOnlyArgs,

    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub upload: UploadOnlyArgs,

    #[command(flatten)]
    pub link: LinkArgs,

    /// Keep running: start a new sync this long after the last one started
    /// (e.g. 24h, 6h, 30m), until stopped. The store is free between runs.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_interval)]
    pub every: Option<std::time::Duration>,

    /// With --every: stop after this many runs.
    #[arg(long, value_name = "N", requires = "every")]
    pub runs: Option<u64>,

    /// Print both summaries as JSON on stdout (one document per run).
    #[arg(long)]
    pub json: bool,
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let d =
        humantime::parse_duration(text).map_err(|e| format!("{e} (say e.g. 24h, 6h or 30m)"))?;
    if d.is_zero() {
        return Err("the interval must be more than zero".into());
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub accounts: AccountsArgs,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub mirror: MirrorOnlyArgs,

    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub upload: UploadOnlyArgs,

    /// First look up each account domain's MX records and warn where they
    /// do not point to Microsoft 365 yet (mail still arriving at the old
    /// host after the cutover would be left behind).
    #[arg(long)]
    pub check_mx: bool,

    /// The DNS server for --check-mx [default: the system's resolver].
    #[arg(long, value_name = "IP:PORT", requires = "check_mx")]
    pub resolver: Option<std::net::SocketAddr>,

    /// Stop before copying anything when MX does not point to Microsoft 365.
    #[arg(long, requires = "check_mx")]
    pub require_mx: bool,

    /// JSON on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub accounts: AccountsArgs,

    /// m365 or imap [default: m365, or the config's].
    #[arg(long, value_parser = named::<TargetKind>())]
    pub target_kind: Option<TargetKind>,

    /// The target's hierarchy separator [default: /].
    #[arg(long, default_value = "/")]
    pub target_separator: String,

    /// The target's personal namespace prefix: empty for Microsoft 365 and
    /// Dovecot, "INBOX." for Cyrus and Courier.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub target_prefix: String,

    /// A folder map to apply (see --write-map).
    #[arg(long, value_name = "CSV")]
    pub map: Option<PathBuf>,

    /// Allow several source folders to go to one target folder.
    #[arg(long)]
    pub merge_folders: bool,

    /// Write the map as Account,SourceFolder,TargetFolder to edit and pass
    /// to `upload --map`.
    #[arg(long, value_name = "CSV")]
    pub write_map: Option<PathBuf>,

    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub accounts: AccountsArgs,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub target: TargetArgs,

    /// Mailbox size limit at the target, e.g. 50GB or 100GB (binary units,
    /// as Exchange counts) [default: 50GB, or the config's; an account's
    /// own Quota wins, and a target that announces QUOTA wins over both].
    #[arg(long, value_name = "SIZE")]
    pub quota: Option<String>,

    /// The folder map the upload will use (see `plan --write-map`); folders
    /// it leaves out do not count against the quota.
    #[arg(long, value_name = "CSV")]
    pub map: Option<PathBuf>,

    /// Several source folders may go to one target folder.
    #[arg(long)]
    pub merge_folders: bool,

    /// JSON on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The batch's accounts file: every account in it is shown, also those
    /// never mirrored or failed, and its `store` is the store.
    #[arg(long, short = 'a', value_name = "FILE")]
    pub accounts: Option<PathBuf>,

    /// Only this account (any case); an account the store and the
    /// accounts file do not know is an error.
    #[arg(long, value_name = "EMAIL")]
    pub account: Option<String>,

    /// JSON, for scripts: on stdout, or into FILE (`-` is stdout).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-",
          conflicts_with = "summary")]
    pub json: Option<PathBuf>,

    /// Mode of the JSON file (octal) [default: 600, the owner only].
    #[arg(long, value_name = "OCTAL", value_parser = mailferry::files::OutputMode::parse)]
    pub file_mode: Option<mailferry::files::OutputMode>,

    /// One line per account (progress of a whole batch).
    #[arg(long)]
    pub summary: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Where to write the HTML page: a file (replaced atomically if it
    /// exists), or `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,

    /// The batch's accounts file: every account in it is shown, also those
    /// never mirrored or failed, and its `store` is the store.
    #[arg(long, short = 'a', value_name = "FILE")]
    pub accounts: Option<PathBuf>,

    /// Only this account (any case).
    #[arg(long, value_name = "EMAIL")]
    pub account: Option<String>,

    /// Mode of the page (octal) [default: 600, the owner only].
    #[arg(long, value_name = "OCTAL", value_parser = mailferry::files::OutputMode::parse)]
    pub file_mode: Option<mailferry::files::OutputMode>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Threads re-hashing blobs [default: the number of cores].
    #[arg(long)]
    pub jobs: Option<usize>,

    /// Instead of the store, read every target folder back and check that
    /// each message the ledger has there is there (needs --accounts and the
    /// target settings). Reports only, unless --requeue-missing.
    #[arg(long, requires = "accounts")]
    pub target: bool,

    /// With --target: mark missing messages failed, so that the next upload
    /// appends them again. Not after go-live: mail users deleted at the
    /// target would come back.
    #[arg(long, requires = "target")]
    pub requeue_missing: bool,

    /// With --target: read back only the contacts, events and tasks
    /// (through Microsoft Graph), not the mail.
    #[arg(long, requires = "target")]
    pub items_only: bool,

    /// Accounts file (needed with --target); its `store` is the store.
    #[arg(long, short = 'a', value_name = "FILE")]
    pub accounts: Option<PathBuf>,

    /// Only these accounts (with --target); may be repeated.
    #[arg(long, value_name = "EMAIL")]
    pub only: Vec<String>,

    #[command(flatten)]
    pub shard: ShardArgs,

    #[command(flatten)]
    pub target_settings: TargetArgs,

    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove the leftovers; without it, only list them.
    #[arg(long)]
    pub delete: bool,

    /// An accounts file whose `store` is the store.
    #[arg(long, short = 'a', value_name = "FILE")]
    pub accounts: Option<PathBuf>,

    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Maildir,
    Mbox,
    Eml,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// maildir (one Maildir per folder), mbox (one mboxrd file per folder)
    /// or eml (one file per message).
    #[arg(long, value_enum)]
    pub format: ExportFormat,

    /// Where to write; created if missing.
    pub dir: PathBuf,

    /// Only this account (any case).
    #[arg(long, value_name = "EMAIL")]
    pub account: Option<String>,

    /// An accounts file whose `store` is the store.
    #[arg(long, short = 'a', value_name = "FILE")]
    pub accounts: Option<PathBuf>,

    /// Mode of the files written (octal; directories get the matching
    /// search bits) [default: 600, the owner only].
    #[arg(long, value_name = "OCTAL", value_parser = mailferry::files::OutputMode::parse)]
    pub file_mode: Option<mailferry::files::OutputMode>,

    /// Only this folder (its name as `status` shows it).
    #[arg(long)]
    pub folder: Option<String>,

    /// Also messages that were expunged at the source.
    #[arg(long)]
    pub include_expunged: bool,

    /// DIR holds an earlier export: bring it up to date, removing the
    /// files of messages this export no longer holds.
    #[arg(long, conflicts_with = "force")]
    pub update: bool,

    /// Write into a DIR that is not empty, leaving what is there.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A Maildir tree, a directory of .eml files or of mbox files (mail);
    /// files of contacts (.vcf, or .csv in Outlook's columns) and of
    /// calendars and tasks (.ics); Outlook data files (.pst: mail,
    /// contacts, calendars and tasks; of a mailbox the store mirrors, only
    /// the contacts, calendars and tasks).
    #[arg(required_unless_present = "accounts", value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// An accounts file whose ExportFolder column (TOML: `exports`) names
    /// each user's folder of contacts, calendars and tasks: every such
    /// file in it (.vcf, .csv, .ics, and the items of a .pst) is imported
    /// for that mailbox.
    #[arg(long, short = 'a', value_name = "FILE", conflicts_with = "account")]
    pub accounts: Option<PathBuf>,

    /// With --accounts: only these accounts (any case).
    #[arg(long, value_name = "EMAIL", requires = "accounts")]
    pub only: Vec<String>,

    /// For mail: the account name in the store [default:
    /// import:<directory name>], not that of a mirrored account (to upload
    /// it into a mailbox, give that mailbox as the account's
    /// TargetAddress). For contacts, calendars and tasks: the mailbox they
    /// belong to (required).
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
}

/// A parser for a setting spelled by name, with the library's names and
/// help ([`Named`]): the command line and the TOML accept the same words.
fn named<T: Named + Clone + Send + Sync + 'static>()
-> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(
        T::CHOICES
            .iter()
            .map(|(name, help)| clap::builder::PossibleValue::new(*name).help(*help)),
    )
    .map(|name| T::from_name(&name).expect("clap let only a known name through"))
}
