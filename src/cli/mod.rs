//! The binary's side: `args` (clap definitions), one module per command
//! (each returns the process exit code), `ui` (progress on the terminal)
//! and `outcome` (printing a result as text or JSON). The helpers here
//! turn the shared command-line groups into settings.

pub mod args;
pub mod cutover;
pub mod export;
pub mod gc;
pub mod import;
pub mod mirror;
pub mod outcome;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod status;
pub mod sync;
pub mod ui;
pub mod upload;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::args::{AccountsArgs, Cli, Command, ShardArgs, SourceArgs, TargetArgs};
use mailferry::config::{self, Config, OAuthFlow, OAuthLayer, Password, ServerLayer, TargetLayer};
use mailferry::outcome::FailureKind;
use mailferry::shard::Shard;
use mailferry::store::remote::ObjectUrl;
use mailferry::store::{Creation, ObjectPlace, Place, Store};
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
// Interrupted: 130 (SIGINT) or 143 (SIGTERM), see [`mailferry::stop::Signal`].

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
    if e.chain().any(|c| c.is::<mailferry::store::StoreLocked>()) {
        return EXIT_LOCKED;
    }
    match mailferry::imap::failure_kind(e) {
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

/// The accounts file, narrowed to `--only` and to this worker's shard.
pub fn load_accounts(args: &AccountsArgs) -> Result<Config> {
    let mut config = config::load(&args.accounts)?;
    for note in &config.notes {
        if note.starts_with("WARNING") {
            eprintln!("{note}");
        } else {
            eprintln!("note: {note}");
        }
    }
    narrow(&mut config, &args.only, &args.accounts)?;
    let index = std::env::var("JOB_COMPLETION_INDEX").ok();
    if let Some(shard) = shard_of(&args.shard, index.as_deref())? {
        let before = config.accounts.len();
        config.accounts.retain(|a| shard.holds(&a.name));
        config.shard = Some(shard);
        eprintln!(
            "note: shard {shard}: {} of the {before} accounts",
            config.accounts.len()
        );
    }
    if let Some(n) = args.accounts_at_once {
        config.accounts_at_once = n.max(1);
    }
    Ok(config)
}

/// The shard this worker takes: `--shard I/N`, or `--shards N` (also
/// MAILFERRY_SHARDS) with the index a Kubernetes Indexed Job gives its pod
/// (`job_index`, from JOB_COMPLETION_INDEX). Neither: the whole batch.
pub fn shard_of(args: &ShardArgs, job_index: Option<&str>) -> Result<Option<Shard>> {
    match (&args.shard, args.shards) {
        (Some(text), shards) => {
            let shard = Shard::parse(text)?;
            if let Some(n) = shards.filter(|n| *n != shard.count) {
                bail!("--shard {shard} and --shards {n} (or MAILFERRY_SHARDS) disagree");
            }
            Ok(Some(shard))
        }
        (None, Some(count)) => {
            let Some(index) = job_index else {
                bail!(
                    "--shards {count} (or MAILFERRY_SHARDS) takes the shard from \
                     JOB_COMPLETION_INDEX, which is not set (a Kubernetes Indexed Job sets it); \
                     elsewhere say --shard I/{count}"
                );
            };
            let Ok(index) = index.trim().parse::<u32>() else {
                bail!("JOB_COMPLETION_INDEX {index:?} is not a shard number");
            };
            Shard::new(index, count)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("JOB_COMPLETION_INDEX {index}: {e}"))
        }
        (None, None) => Ok(None),
    }
}

/// Keeps the accounts `--only` names (any case); a name not in `file` is
/// an error. No names: every account.
pub fn narrow(config: &mut Config, only: &[String], file: &std::path::Path) -> Result<()> {
    if only.is_empty() {
        return Ok(());
    }
    let unknown: Vec<&str> = only
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
            file.display(),
            unknown.join(", ")
        );
    }
    config
        .accounts
        .retain(|a| only.iter().any(|o| a.name.eq_ignore_ascii_case(o)));
    Ok(())
}

/// What the command line says of the source.
pub fn source_layer(args: &SourceArgs) -> ServerLayer {
    if args.danger_accept_invalid_certs {
        eprintln!(
            "WARNING: --danger-accept-invalid-certs: the source server's certificate is NOT \
             checked; passwords and mail can be read by anyone on the path"
        );
    }
    ServerLayer {
        host: args.host.clone(),
        port: args.port,
        auth: args.auth,
        ca_file: args.ca_file.clone(),
        danger_accept_invalid_certs: args.danger_accept_invalid_certs,
        connections: None,
        compress: args.compress,
        io_timeout: args.io_timeout.map(Duration::from_secs),
    }
}

/// What the command line says of the target.
pub fn target_layer(args: &TargetArgs) -> Result<TargetLayer> {
    if args.target_danger_accept_invalid_certs {
        eprintln!(
            "WARNING: --target-danger-accept-invalid-certs: the target server's certificate is \
             NOT checked; tokens and mail can be read by anyone on the path"
        );
    }
    let client_secret = match (&args.client_secret_env, &args.client_secret_file) {
        (Some(var), _) => Some(Password::new(std::env::var(var).map_err(|_| {
            anyhow::anyhow!("--client-secret-env names {var}, which is not set")
        })?)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read --client-secret-file {}: {e}", path.display())
            })?;
            Some(Password::new(text.lines().next().unwrap_or("").to_string()))
        }
        (None, None) => None,
    };
    let oauth = OAuthLayer {
        authority: args.oauth_authority.clone(),
        tenant: args.tenant.clone(),
        client_id: args.client_id.clone(),
        client_secret,
        certificate: args.certificate.clone(),
        private_key: args.private_key.clone(),
        flow: args.device_code.then_some(OAuthFlow::DeviceCode),
        scope: None,
        token_cache: args.token_cache.clone(),
    };
    let names_oauth = oauth.authority.is_some()
        || oauth.tenant.is_some()
        || oauth.client_id.is_some()
        || oauth.client_secret.is_some()
        || oauth.certificate.is_some()
        || oauth.private_key.is_some()
        || oauth.flow.is_some()
        || oauth.token_cache.is_some();
    Ok(TargetLayer {
        kind: args.target_kind,
        server: ServerLayer {
            host: args.target_host.clone(),
            port: args.target_port,
            auth: args.target_auth,
            ca_file: args.target_ca_file.clone(),
            danger_accept_invalid_certs: args.target_danger_accept_invalid_certs,
            connections: args.target_connections,
            compress: None,
            io_timeout: args.target_io_timeout.map(Duration::from_secs),
        },
        max_message_bytes: args.max_message_mib.map(|m| m << 20),
        quota_bytes: None,
        oauth: names_oauth.then_some(oauth),
        graph_url: args.graph_url.clone(),
    })
}

/// The store directory: `--store`, else `MAILFERRY_STORE`, else the
/// accounts file's `store`, else ./mailferry-store. When two of them name
/// different directories, says on stderr which one won (once per run).
pub fn store_path(cli: &Cli, config: Option<&Config>) -> PathBuf {
    let (root, note) = config::store_root(
        cli.store.clone(),
        std::env::var_os("MAILFERRY_STORE").map(PathBuf::from),
        config.and_then(|c| c.store.clone()),
    );
    static SAID: std::sync::Once = std::sync::Once::new();
    if let Some(note) = note {
        SAID.call_once(|| eprintln!("note: {note}"));
    }
    root
}

/// For a command that only reads: the accounts file, when given, and the
/// store that it or the flags name; a directory must be a store (a store
/// in object storage is looked for when it is read).
pub fn store_to_read(
    cli: &Cli,
    accounts: Option<&std::path::Path>,
) -> Result<(Place, Option<Config>)> {
    // Passwords are not needed to read the store: a TOML's password_env
    // need not be set for `status` in a cron job.
    let config = accounts.map(config::load_without_secrets).transpose()?;
    let place = store_place(cli, config.as_ref())?;
    if let Place::Dir(root) = &place
        && !mailferry::store::exists(root)
    {
        return Err(mailferry::store::no_store(root));
    }
    Ok((place, config))
}

/// Where the store is: a directory, or object storage with this worker's
/// shard and working directory.
pub fn store_place(cli: &Cli, config: Option<&Config>) -> Result<Place> {
    let root = store_path(cli, config);
    let Some(url) = root.to_str().map(ObjectUrl::parse).transpose()?.flatten() else {
        return Ok(Place::Dir(root));
    };
    let settings = mailferry::store::remote::settings_from_env();
    // object_store honours the SDKs' switch; it must not pass unseen.
    for (key, value) in &settings {
        if key.ends_with("allow_invalid_certificates") && value.eq_ignore_ascii_case("true") {
            eprintln!(
                "WARNING: {} is set: the object store's TLS certificate is NOT verified; \
                 anyone on the path can read and change the mail stored at {url}",
                key.to_ascii_uppercase()
            );
        }
    }
    Ok(Place::Objects(ObjectPlace {
        url,
        settings,
        work: cli.work_dir.clone(),
        shard: config
            .and_then(|c| c.shard)
            .unwrap_or(Shard { index: 0, count: 1 }),
        lease: cli.lease,
        snapshot_every: cli.snapshot_every,
    }))
}

/// Opens the store for writing and says which one it is; only a command
/// that fills a store from nothing may make one.
pub fn open_store(cli: &Cli, config: Option<&Config>, creation: Creation) -> Result<Arc<Store>> {
    let place = store_place(cli, config)?;
    let store = Store::open_at(&place, creation)?;
    let shown = match &place {
        Place::Dir(root) => std::fs::canonicalize(root)
            .unwrap_or(root.clone())
            .display()
            .to_string(),
        Place::Objects(o) => format!(
            "{} (shard {}, index in {})",
            o.url,
            o.shard,
            o.shard_dir().display()
        ),
    };
    if store.made() {
        eprintln!("store: {shown} (new)");
    } else {
        eprintln!("store: {shown}");
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

/// With a store in object storage: how many requests the run made of it
/// (what the service bills), after the last snapshot.
pub fn say_requests(store: &Store) {
    let n = store.remote_requests();
    if n > 0 {
        eprintln!("object storage: {n} requests");
    }
}

/// Says so when a store's index was missing or empty and a new one begun.
pub fn warn_lost_index(store: &Store) {
    if store.lost_index() {
        eprintln!(
            "WARNING: the store {} holds messages but its index was missing or empty (deleted, \
             truncated or replaced); a new index is being built. {}.",
            store.shown(),
            mailferry::store::index::LOST_INDEX_ADVICE
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
