//! `mailferry preflight`: go or no-go per account before a batch starts.

use std::collections::HashMap;

use anyhow::{Result, anyhow};

use crate::cli::args::{Cli, PreflightArgs};
use crate::cli::{load_accounts, open_store, source_layer, target_layer, ui};
use mailferry::preflight::{PreflightOptions, preflight};

pub fn run(cli: &Cli, args: &PreflightArgs) -> Result<i32> {
    let mut config = load_accounts(&args.accounts)?;
    config.resolve(&source_layer(&args.source), &target_layer(&args.target)?);
    if let Some(q) = &args.quota {
        config.target.quota_bytes =
            Some(mailferry::config::parse_size(q).map_err(|e| anyhow!("--quota {q:?}: {e}"))?);
    }
    let options = PreflightOptions {
        tokens: crate::cli::upload::token_provider(&config)?,
        map_file: args
            .map
            .as_deref()
            .map(mailferry::upload::MapFile::load)
            .transpose()?,
        merge_folders: args.merge_folders,
        already_uploaded: already_uploaded(cli, &config),
        items: stored_items(cli, &config),
        graph: crate::cli::upload::graph_client(&config)?,
    };
    let progress = ui::progress(cli.quiet || args.json, config.accounts.len());
    let result = crate::cli::runtime()?.block_on(preflight(&config, &options, progress))?;
    // Recorded for `status` and the report; a store in use elsewhere (a
    // mirror running) only loses the record, not the answer.
    let root = crate::cli::store_path(cli, Some(&config));
    if !mailferry::store::exists(&root) {
        eprintln!(
            "note: no store at {} yet, so this preflight is not recorded (the first mirror \
             makes the store)",
            root.display()
        );
    } else {
        match open_store(cli, Some(&config), mailferry::store::Creation::Refused) {
            Ok(store) => {
                let index = store.index();
                let id = index.start_run("preflight")?;
                index.finish_run(id, &serde_json::to_string(&result)?)?;
            }
            Err(e) => eprintln!("note: preflight not recorded in the store: {e:#}"),
        }
    }
    crate::cli::outcome::emit(&result, crate::cli::outcome::Form::json(args.json))
}

/// What the store's ledger already placed in each target mailbox, in bytes
/// (nothing when there is no store yet).
fn already_uploaded(cli: &Cli, config: &mailferry::config::Config) -> HashMap<String, u64> {
    let root = crate::cli::store_path(cli, Some(config));
    let Ok(store) = mailferry::store::Store::open_read_only(&root) else {
        return HashMap::new();
    };
    let index = store.index();
    let mut out = HashMap::new();
    for a in &config.accounts {
        let bytes = index
            .ledger()
            .placed_bytes(&a.target, &config.target.server.address())
            .unwrap_or(0);
        out.insert(a.target.clone(), bytes);
    }
    out
}

/// What the store holds of contacts, events and tasks per account (by
/// lower-case name; nothing when there is no store yet).
fn stored_items(
    cli: &Cli,
    config: &mailferry::config::Config,
) -> HashMap<String, mailferry::store::items::ItemCounts> {
    let root = crate::cli::store_path(cli, Some(config));
    let Ok(store) = mailferry::store::Store::open_read_only(&root) else {
        return HashMap::new();
    };
    store
        .index()
        .item_counts()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, c)| c.has_items())
        .map(|(name, c)| (name.to_lowercase(), c))
        .collect()
}
