//! `mailferry preflight`: go or no-go per account before a batch starts.

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
            crate::config::parse_size(q).map_err(|e| anyhow!("--quota {q:?}: {e}"))?;
    }
    let options = PreflightOptions {
        tokens: crate::commands::upload::token_provider(&config)?,
        map_file: args
            .map
            .as_deref()
            .map(crate::upload::MapFile::load)
            .transpose()?,
        merge_folders: args.merge_folders,
    };
    let progress = ui::progress(cli.quiet || args.json, config.accounts.len());
    let result = crate::commands::runtime()?.block_on(preflight(&config, &options, progress))?;
    // Recorded for `status` and the report; a store in use elsewhere (a
    // mirror running) only loses the record, not the answer.
    match open_store(cli, &config) {
        Ok(store) => {
            let index = store.index();
            let id = index.start_run("preflight")?;
            index.finish_run(id, &serde_json::to_string(&result)?)?;
        }
        Err(e) => eprintln!("note: preflight not recorded in the store: {e:#}"),
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
