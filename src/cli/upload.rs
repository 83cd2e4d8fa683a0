//! `mailferry upload`: replay the store into the target mailboxes.

use std::sync::Arc;

use anyhow::Result;

use crate::cli::args::{Cli, UploadArgs, UploadOnlyArgs};
use crate::cli::outcome::{Form, Uploaded, emit};
use crate::cli::{load_accounts, open_store, target_layer, ui};
use mailferry::config::{AuthMethod, Config};
use mailferry::graph::{self, ItemOptions, ItemsUploaded};
use mailferry::oauth::TokenProvider;
use mailferry::store::Creation;
use mailferry::store::Store;
use mailferry::upload::{self, MapFile, UploadOptions};

pub fn run(cli: &Cli, args: &UploadArgs) -> Result<i32> {
    let mut config = load_accounts(&args.accounts)?;
    config.resolve(
        &mailferry::config::ServerLayer::default(),
        &target_layer(&args.target)?,
    );
    config.limit_rate(args.link.max_rate);
    let store = open_store(cli, Some(&config), Creation::Refused)?;
    let summary = upload_with(cli, &config, &args.upload, store.clone())?;
    store.close()?;
    crate::cli::say_requests(&store);
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

/// Runs an upload with the command line's knobs (shared with `sync`):
/// the mail, then the contacts, events and tasks imported for the accounts.
pub fn upload_with(
    cli: &Cli,
    config: &Config,
    args: &UploadOnlyArgs,
    store: Arc<Store>,
) -> Result<Uploaded> {
    let runtime = crate::cli::runtime()?;
    let options = upload_options(config, args)?;
    let progress = if args.dry_run {
        ui::progress(true, 0)
    } else {
        ui::progress(cli.quiet, config.accounts.len())
    };
    let mail = if args.items_only {
        None
    } else {
        Some(runtime.block_on(upload::upload(
            store.clone(),
            config,
            options,
            progress.clone(),
        ))?)
    };
    let items = if args.dry_run || args.mail_only {
        None
    } else {
        upload_items(config, args, store, progress, &runtime)?
    };
    Ok(Uploaded { mail, items })
}

/// The contacts, events and tasks of the batch's accounts, through
/// Microsoft Graph; None when the store holds none for them.
fn upload_items(
    config: &Config,
    args: &UploadOnlyArgs,
    store: Arc<Store>,
    progress: Arc<dyn mailferry::progress::Progress>,
    runtime: &tokio::runtime::Runtime,
) -> Result<Option<ItemsUploaded>> {
    let accounts = graph::accounts_with_items(&store, &config.accounts)?;
    if accounts.is_empty() {
        return Ok(None);
    }
    let Some(client) = graph_client(config)? else {
        // Said per account, after the mail's summary, not instead of it.
        let why = format!(
            "its contacts, events and tasks go through Microsoft Graph, and this target ({}) \
             names no Graph (--graph-url) or no OAuth settings (--tenant, --client-id and a \
             secret or certificate); --mail-only leaves them",
            config.target.server.host
        );
        return Ok(Some(ItemsUploaded {
            accounts: accounts
                .iter()
                .map(|a| graph::AccountItems {
                    account: a.name.clone(),
                    target: a.target.clone(),
                    error: Some(why.clone()),
                    ..graph::AccountItems::default()
                })
                .collect(),
            requests: 0,
            graph_requests: 0,
            throttled: 0,
        }));
    };
    let options = Arc::new(ItemOptions {
        client,
        invite_attendees: args.invite_attendees,
        accounts_at_once: config.accounts_at_once,
    });
    Ok(Some(runtime.block_on(graph::upload_items(
        store, &accounts, options, progress,
    ))?))
}

/// The Graph client for contacts, events and tasks, when the target
/// names a Graph and OAuth settings.
pub fn graph_client(config: &Config) -> Result<Option<Arc<graph::client::GraphClient>>> {
    let (Some(url), Some(oauth)) = (&config.target.graph_url, &config.target.oauth) else {
        return Ok(None);
    };
    let tls = mailferry::imap::tls::client_config(None, false)?;
    let tokens = Arc::new(TokenProvider::new(
        graph::token_settings(oauth),
        tls.clone(),
        Box::new(|message| eprintln!("{message}")),
    )?);
    Ok(Some(Arc::new(graph::client::GraphClient::new(
        url,
        tokens,
        tls,
        config.target.server.max_rate.clone(),
    )?)))
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
