//! `mailferry sync`: mirror, then upload, from one accounts file.

use anyhow::Result;

use crate::cli::{Cli, SyncArgs};
use crate::commands::{
    EXIT_INCOMPLETE, EXIT_OK, apply_source, apply_target, load_accounts, open_store,
};

pub fn run(cli: &Cli, args: &SyncArgs) -> Result<i32> {
    let mut config = load_accounts(&args.accounts)?;
    apply_source(&mut config, &args.source);
    apply_target(&mut config, &args.target)?;
    let store = open_store(cli, &config)?;
    let mirrored = super::mirror::mirror_with(cli, &config, &args.mirror, store.clone())?;
    // An account whose mirror failed still uploads what the store holds.
    let uploaded = super::upload::upload_with(cli, &config, &args.upload, store)?;
    if args.json {
        let both = serde_json::json!({ "mirror": mirrored, "upload": uploaded });
        println!("{}", serde_json::to_string_pretty(&both)?);
    } else {
        print!("{}", crate::report::mirror_summary(&mirrored));
        println!();
        print!("{}", crate::report::upload_summary(&uploaded));
    }
    Ok(if mirrored.all_complete() && uploaded.all_complete() {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    })
}
