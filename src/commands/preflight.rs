//! `mailferry preflight`: go or no-go per account before a batch starts.

use std::collections::HashMap;

use anyhow::{Result, anyhow};

use crate::cli::{Cli, PreflightArgs};
use crate::commands::{
    EXIT_INCOMPLETE, EXIT_OK, apply_source, apply_target, load_accounts, open_store, ui,
};
use crate::preflight::{PreflightOptions, preflight};

pub fn run(cli: &Cli, args: &PreflightArgs) -> Result<i32> {
    let mut config = load_accounts(&args.accounts)?;
    apply_source(&mut config, &args.source);
    apply_target(&mut config, &args.target)?;
    if let Some(q) = &args.quota {
        config.target.quota_bytes =
            Some(crate::config::parse_size(q).map_err(|e| anyhow!("--quota {q:?}: {e}"))?);
    }
    let options = PreflightOptions {
        tokens: crate::commands::upload::token_provider(&config)?,
        map_file: args
            .map
            .as_deref()
            .map(crate::upload::MapFile::load)
            .transpose()?,
        merge_folders: args.merge_folders,
        already_uploaded: already_uploaded(cli, &config),
    };
    let progress = ui::progress(cli.quiet || args.json, config.accounts.len());
    let result = crate::commands::runtime()?.block_on(preflight(&config, &options, progress))?;
    // Recorded for `status` and the report; a store in use elsewhere (a
    // mirror running) only loses the record, not the answer.
    let root = crate::commands::store_path(cli, Some(&config));
    if !crate::store::exists(&root) {
        eprintln!(
            "note: no store at {} yet, so this preflight is not recorded (the first mirror \
             makes the store)",
            root.display()
        );
    } else {
        match open_store(cli, Some(&config), crate::store::Creation::Refused) {
            Ok(store) => {
                let index = store.index();
                let id = index.start_run("preflight")?;
                index.finish_run(id, &serde_json::to_string(&result)?)?;
            }
            Err(e) => eprintln!("note: preflight not recorded in the store: {e:#}"),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", crate::report::preflight(&result));
    }
    Ok(if result.all_go() {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    })
}

/// What the store's ledger already placed in each target mailbox, in bytes
/// (nothing when there is no store yet).
fn already_uploaded(cli: &Cli, config: &crate::config::Config) -> HashMap<String, u64> {
    let root = crate::commands::store_path(cli, Some(config));
    let Ok(store) = crate::store::Store::open_read_only(&root) else {
        return HashMap::new();
    };
    let index = store.index();
    let mut out = HashMap::new();
    for a in &config.accounts {
        let bytes =
            crate::store::ledger::placed_bytes(index, &a.target, &config.target.server.address())
                .unwrap_or(0);
        out.insert(a.target.clone(), bytes);
    }
    out
}
