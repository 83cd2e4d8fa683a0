//! `mailferry upload`: replay the store into the target mailboxes.

use std::sync::Arc;

use anyhow::Result;

use crate::cli::args::{Cli, UploadArgs, UploadOnlyArgs};
use crate::cli::outcome::{Form, emit};
use crate::cli::{load_accounts, open_store, target_layer, ui};
use mailferry::config::{AuthMethod, Config};
use mailferry::oauth::TokenProvider;
use mailferry::store::Creation;
use mailferry::store::Store;
use mailferry::upload::{self, MapFile, UploadOptions, UploadSummary};

pub fn run(cli: &Cli, args: &UploadArgs) -> Result<i32> {
    let mut config = load_accounts(&args.accounts)?;
    config.resolve(
        &mailferry::config::ServerLayer::default(),
        &target_layer(&args.target)?,
    );
    let store = open_store(cli, Some(&config), Creation::Refused)?;
    let summary = upload_with(cli, &config, &args.upload, store)?;
    emit(&summary, Form::json(args.json))
}

/// The upload's options from the accounts file and the command line's
/// knobs (shared with `sync` and `cutover`).
pub fn upload_options(config: &Config, args: &UploadOnlyArgs) -> Result<Arc<UploadOptions>> {
    Ok(Arc::new(UploadOptions {
        target: config.target.clone(),
        accounts_at_once: config.accounts_at_once,
        only_failed: args.retry_failed,
        dry_run: args.dry_run,
        merge_folders: args.merge_folders,
        send_nul_bytes: args.send_nul_bytes,
        map_file: args.map.as_deref().map(MapFile::load).transpose()?,
        tokens: if args.dry_run {
            None
        } else {
            token_provider(config)?
        },
    }))
}

/// Runs an upload with the command line's knobs (shared with `sync`).
pub fn upload_with(
    cli: &Cli,
    config: &Config,
    args: &UploadOnlyArgs,
    store: Arc<Store>,
) -> Result<UploadSummary> {
    let runtime = crate::cli::runtime()?;
    let options = upload_options(config, args)?;
    let progress = if args.dry_run {
        ui::progress(true, 0)
    } else {
        ui::progress(cli.quiet, config.accounts.len())
    };
    runtime.block_on(upload::upload(store, config, options, progress))
}

/// The OAuth token source for an XOAUTH2 target, if it is one.
pub fn token_provider(config: &Config) -> Result<Option<Arc<TokenProvider>>> {
    Ok(match (&config.target.oauth, config.target.server.auth) {
        (Some(oauth), AuthMethod::Xoauth2) => {
            let tls = mailferry::imap::tls::client_config(None, false)?;
            Some(Arc::new(TokenProvider::new(
                oauth.clone(),
                tls,
                Box::new(|message| eprintln!("{message}")),
            )?))
        }
        _ => None,
    })
}

/// The options of a read-back of the targets (`verify --target`).
pub fn check_options(config: &Config) -> Result<Arc<UploadOptions>> {
    Ok(Arc::new(UploadOptions {
        target: config.target.clone(),
        accounts_at_once: config.accounts_at_once,
        only_failed: false,
        dry_run: false,
        merge_folders: false,
        send_nul_bytes: false,
        map_file: None,
        tokens: token_provider(config)?,
    }))
}

/// Reads every account's target folders back (`verify --target`).
pub fn check_with(
    cli: &Cli,
    config: &Config,
    store: Arc<Store>,
    requeue: bool,
) -> Result<mailferry::upload::check::TargetCheck> {
    let runtime = crate::cli::runtime()?;
    let options = check_options(config)?;
    let progress = ui::progress(cli.quiet, config.accounts.len());
    runtime.block_on(mailferry::upload::check::check_targets(
        store, config, options, progress, requeue,
    ))
}
