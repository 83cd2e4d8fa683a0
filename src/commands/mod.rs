//! One module per command. Each returns the process exit code; the
//! helpers here turn the shared command-line groups into settings.

pub mod cutover;
pub mod export;
pub mod gc;
pub mod import;
pub mod mirror;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod status;
pub mod sync;
pub mod ui;
pub mod upload;
pub mod verify;

use std::sync::Arc;

use anyhow::{Result, bail};

use crate::cli::{AccountsArgs, Cli, Command, SourceArgs, TargetArgs};
use crate::config::{self, AuthMethod, Config, OAuthFlow, OAuthSettings, Password, TargetKind};
use crate::outcome::FailureKind;
use crate::store::{Creation, Store};
use std::path::PathBuf;

/// Everything finished.
pub const EXIT_OK: i32 = 0;
/// The command ran, but some account or folder is incomplete.
pub const EXIT_INCOMPLETE: i32 = 1;
/// The command could not run.
pub const EXIT_ERROR: i32 = 2;
/// Some account could not log in (source or target): a password, a
/// locked account, a refused token.
pub const EXIT_LOGIN: i32 = 3;
/// Some server could not be reached, or the connection kept breaking.
pub const EXIT_CONNECT: i32 = 4;
/// Another mailferry process holds the store.
pub const EXIT_LOCKED: i32 = 5;
// Interrupted: 130 (SIGINT) or 143 (SIGTERM), see [`crate::stop::Signal`].

/// The exit code of a run: [`EXIT_LOGIN`] if an account could not log in,
/// else [`EXIT_CONNECT`] if a server could not be reached, else
/// [`EXIT_INCOMPLETE`] unless everything is `complete`.
pub fn exit_code(complete: bool, failures: impl IntoIterator<Item = Option<FailureKind>>) -> i32 {
    let failures: Vec<FailureKind> = failures.into_iter().flatten().collect();
    if failures.contains(&FailureKind::Login) {
        EXIT_LOGIN
    } else if failures.contains(&FailureKind::Connect) {
        EXIT_CONNECT
    } else if complete {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    }
}

/// The exit code of a command that could not run.
pub fn exit_code_of_error(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| c.is::<crate::store::StoreLocked>()) {
        return EXIT_LOCKED;
    }
    match crate::outcome::failure_kind(e) {
        FailureKind::Login => EXIT_LOGIN,
        FailureKind::Connect => EXIT_CONNECT,
        _ => EXIT_ERROR,
    }
}

pub fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Preflight(args) => preflight::run(&cli, args),
        Command::Mirror(args) => mirror::run(&cli, args),
        Command::Upload(args) => upload::run(&cli, args),
        Command::Sync(args) => sync::run(&cli, args),
        Command::Cutover(args) => cutover::run(&cli, args),
        Command::Plan(args) => plan::run(&cli, args),
        Command::Status(args) => status::run(&cli, args),
        Command::Report(args) => report::run(&cli, args),
        Command::Verify(args) => verify::run(&cli, args),
        Command::Gc(args) => gc::run(&cli, args),
        Command::Export(args) => export::run(&cli, args),
        Command::Import(args) => import::run(&cli, args),
    }
}

/// The accounts file, narrowed to `--only`.
pub fn load_accounts(args: &AccountsArgs) -> Result<Config> {
    let mut config = config::load(&args.accounts)?;
    for note in &config.notes {
        if note.starts_with("WARNING") {
            eprintln!("{note}");
        } else {
            eprintln!("note: {note}");
        }
    }
    if !args.only.is_empty() {
        let unknown: Vec<&str> = args
            .only
            .iter()
            .filter(|o| {
                !config
                    .accounts
                    .iter()
                    .any(|a| a.name.eq_ignore_ascii_case(o))
            })
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            bail!(
                "--only names accounts not in {}: {}",
                args.accounts.display(),
                unknown.join(", ")
            );
        }
        config
            .accounts
            .retain(|a| args.only.iter().any(|o| a.name.eq_ignore_ascii_case(o)));
    }
    if let Some(n) = args.accounts_at_once {
        config.accounts_at_once = n.max(1);
    }
    Ok(config)
}

pub fn apply_source(config: &mut Config, args: &SourceArgs) {
    let s = &mut config.source;
    if let Some(h) = &args.host {
        s.host = h.clone();
    }
    if let Some(p) = args.port {
        s.port = p;
    }
    if let Some(a) = args.auth {
        s.auth = a;
    }
    if let Some(t) = args.io_timeout {
        s.io_timeout = std::time::Duration::from_secs(t.max(1));
    }
    if let Some(c) = args.compress {
        s.compress = c;
    }
    if let Some(ca) = &args.ca_file {
        s.ca_file = Some(ca.clone());
    }
    if args.danger_accept_invalid_certs {
        s.danger_accept_invalid_certs = true;
        eprintln!(
            "WARNING: --danger-accept-invalid-certs: the source server's certificate is NOT \
             checked; passwords and mail can be read by anyone on the path"
        );
    }
}

pub fn apply_target(config: &mut Config, args: &TargetArgs) -> Result<()> {
    let t = &mut config.target;
    if let Some(kind) = args.target_kind {
        t.kind = kind;
        if kind == TargetKind::Imap {
            t.max_message_bytes = None;
            if t.server.auth == AuthMethod::Xoauth2 && t.oauth.is_none() {
                t.server.auth = AuthMethod::Login;
            }
        }
    }
    if let Some(h) = &args.target_host {
        t.server.host = h.clone();
    }
    if let Some(p) = args.target_port {
        t.server.port = p;
    }
    if let Some(a) = args.target_auth {
        t.server.auth = a;
    }
    if let Some(ca) = &args.target_ca_file {
        t.server.ca_file = Some(ca.clone());
    }
    if args.target_danger_accept_invalid_certs {
        t.server.danger_accept_invalid_certs = true;
        eprintln!(
            "WARNING: --target-danger-accept-invalid-certs: the target server's certificate is \
             NOT checked; tokens and mail can be read by anyone on the path"
        );
    }
    if let Some(c) = args.target_connections {
        t.server.connections = c.max(1);
    }
    if let Some(secs) = args.target_io_timeout {
        t.server.io_timeout = std::time::Duration::from_secs(secs.max(1));
    }
    if let Some(m) = args.max_message_mib {
        t.max_message_bytes = Some(m << 20);
    }
    let wants_oauth = args.tenant.is_some()
        || args.client_id.is_some()
        || args.device_code
        || args.oauth_authority.is_some();
    if wants_oauth || t.oauth.is_some() {
        let mut o = t.oauth.take().unwrap_or_else(|| OAuthSettings {
            authority: config::M365_AUTHORITY.to_string(),
            ..OAuthSettings::default()
        });
        if let Some(v) = &args.tenant {
            o.tenant = v.clone();
        }
        if let Some(v) = &args.client_id {
            o.client_id = v.clone();
        }
        if let Some(var) = &args.client_secret_env {
            let secret = std::env::var(var).map_err(|_| {
                anyhow::anyhow!("--client-secret-env names {var}, which is not set")
            })?;
            o.client_secret = Some(Password::new(secret));
        }
        if let Some(path) = &args.client_secret_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read --client-secret-file {}: {e}", path.display())
            })?;
            o.client_secret = Some(Password::new(text.lines().next().unwrap_or("").to_string()));
        }
        if let Some(c) = &args.certificate {
            o.certificate = Some(c.clone());
        }
        if let Some(k) = &args.private_key {
            o.private_key = Some(k.clone());
        }
        if args.device_code {
            o.flow = OAuthFlow::DeviceCode;
        }
        if let Some(c) = &args.token_cache {
            o.token_cache = Some(c.clone());
        }
        if let Some(a) = &args.oauth_authority {
            o.authority = a.clone();
        }
        t.oauth = Some(o);
    }
    Ok(())
}

/// The store directory: `--store`, else `MAILFERRY_STORE`, else the
/// accounts file's `store`, else ./mailferry-store. When two of them name
/// different directories, says on stderr which one won (once per run).
pub fn store_path(cli: &Cli, config: Option<&Config>) -> PathBuf {
    let env = std::env::var_os("MAILFERRY_STORE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let named: Vec<(&str, PathBuf)> = [
        ("--store", cli.store.clone()),
        ("MAILFERRY_STORE", env),
        (
            "the accounts file's `store`",
            config.and_then(|c| c.store.clone()),
        ),
    ]
    .into_iter()
    .filter_map(|(from, p)| p.map(|p| (from, p)))
    .collect();
    let Some((from, chosen)) = named.first().cloned() else {
        return PathBuf::from("mailferry-store");
    };
    let others: Vec<String> = named[1..]
        .iter()
        .filter(|(_, p)| *p != chosen)
        .map(|(f, p)| format!("{f} ({})", p.display()))
        .collect();
    static SAID: std::sync::Once = std::sync::Once::new();
    if !others.is_empty() {
        SAID.call_once(|| {
            eprintln!(
                "note: the store is {} from {from}; not used: {}",
                chosen.display(),
                others.join(", ")
            )
        });
    }
    chosen
}

/// For a command that only reads: the accounts file, when given, and the
/// store that it or the flags name, which must exist.
pub fn store_to_read(
    cli: &Cli,
    accounts: Option<&std::path::Path>,
) -> Result<(PathBuf, Option<Config>)> {
    // Passwords are not needed to read the store: a TOML's password_env
    // need not be set for `status` in a cron job.
    let config = accounts.map(config::load_without_secrets).transpose()?;
    let root = store_path(cli, config.as_ref());
    if !crate::store::exists(&root) {
        return Err(crate::store::no_store(&root));
    }
    Ok((root, config))
}

/// Opens the store for writing and says which one it is; only a command
/// that fills a store from nothing may make one.
pub fn open_store(cli: &Cli, config: Option<&Config>, creation: Creation) -> Result<Arc<Store>> {
    let root = store_path(cli, config);
    let store = Store::open(&root, creation)?;
    let shown = std::fs::canonicalize(&root).unwrap_or(root);
    if store.made() {
        eprintln!("store: {} (new)", shown.display());
    } else {
        eprintln!("store: {}", shown.display());
    }
    if store.made_private() > 0 {
        eprintln!(
            "note: other local users could read this store; its {} files and directories \
             are now private (0700/0600)",
            store.made_private()
        );
    }
    warn_lost_index(&store);
    Ok(Arc::new(store))
}

/// Says so when a store's index was missing or empty and a new one begun.
pub fn warn_lost_index(store: &Store) {
    if store.lost_index() {
        eprintln!(
            "WARNING: the store {} holds messages but its index was missing or empty (deleted, \
             truncated or replaced); a new index is being built. {}.",
            store.root().display(),
            crate::store::index::LOST_INDEX_ADVICE
        );
    }
}

/// The runtime for network work. Blocking threads hash, compress and
/// fsync blobs; a few keep the disk busy, more would only add memory.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(8)
        .enable_all()
        .build()?)
}
