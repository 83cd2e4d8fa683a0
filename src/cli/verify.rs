//! `mailferry verify`: re-hash every blob and check that the index and the
//! objects agree ([`mailferry::store::verify`]), or read the target back
//! (`--target`). Every fault is named; the exit code is 1 if there is any.

use anyhow::Result;

use crate::cli::args::{Cli, VerifyArgs};
use crate::cli::outcome::{Form, TargetsChecked, emit};
use crate::cli::{load_accounts, open_store, target_layer};
use mailferry::graph::check::ItemsChecked;
use mailferry::store::Creation;
use mailferry::store::verify::verify;

pub fn run(cli: &Cli, args: &VerifyArgs) -> Result<i32> {
    if args.target {
        return run_target(cli, args);
    }
    // The store's own check covers every blob, whoever stored it: a shard
    // would not narrow it, and saying so is better than ignoring it.
    if let Some(shard) = &args.shard.shard {
        anyhow::bail!(
            "--shard {shard} narrows `verify --target` to a shard's accounts; \
             `verify` of the store checks every blob"
        );
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let progress = crate::cli::ui::ByteBar::new(
        !cli.quiet && !args.json,
        "verify [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    );
    let (place, _) = crate::cli::store_to_read(cli, args.accounts.as_deref())?;
    let report = match place {
        mailferry::store::Place::Objects(place) => {
            mailferry::store::verify::verify_objects(&place, jobs.max(1), &progress)?
        }
        mailferry::store::Place::Dir(root) => verify(&root, jobs.max(1), &progress)?,
    };
    progress.finish();
    emit(&report, Form::json(args.json))
}

/// `verify --target`: read the target folders back.
fn run_target(cli: &Cli, args: &VerifyArgs) -> Result<i32> {
    let accounts = crate::cli::args::AccountsArgs {
        accounts: args.accounts.clone().expect("clap requires --accounts"),
        only: args.only.clone(),
        shard: args.shard.clone(),
        accounts_at_once: None,
    };
    let mut config = load_accounts(&accounts)?;
    config.resolve(
        &mailferry::config::ServerLayer::default(),
        &target_layer(&args.target_settings)?,
    );
    let store = open_store(cli, Some(&config), Creation::Refused)?;
    let mail = if args.items_only {
        None
    } else {
        Some(crate::cli::upload::check_with(
            cli,
            &config,
            store.clone(),
            args.requeue_missing,
        )?)
    };
    let items = check_items(&config, store.clone(), args.requeue_missing)?;
    store.close()?;
    emit(&TargetsChecked { mail, items }, Form::json(args.json))
}

/// Reads back the contacts, events and tasks of the accounts that have
/// any, when the target names a Graph.
fn check_items(
    config: &mailferry::config::Config,
    store: std::sync::Arc<mailferry::store::Store>,
    requeue: bool,
) -> Result<Option<ItemsChecked>> {
    let accounts = mailferry::graph::accounts_with_items(&store, &config.accounts)?;
    if accounts.is_empty() {
        return Ok(None);
    }
    let Some(client) = crate::cli::upload::graph_client(config)? else {
        anyhow::bail!(
            "{} accounts have contacts, events or tasks, and this target names no Microsoft \
             Graph to read them back from (--graph-url, and the OAuth settings)",
            accounts.len()
        );
    };
    Ok(Some(crate::cli::runtime()?.block_on(
        mailferry::graph::check::check_items(store, &accounts, client, requeue),
    )?))
}
