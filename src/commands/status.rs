//! `mailferry status`: per account and folder, what the source had at the
//! last check, what is stored and what was expunged at the source.

use anyhow::Result;

use crate::cli::{Cli, StatusArgs};
use crate::commands::EXIT_OK;
use crate::store::Index;

pub fn run(cli: &Cli, args: &StatusArgs) -> Result<i32> {
    let root = cli
        .store
        .clone()
        .unwrap_or_else(|| "mailferry-store".into());
    let index = Index::open_read_only(&root.join("index.sqlite"))?;
    let folders = index.folder_status(args.account.as_deref())?;
    let last_mirror = index.last_run("mirror")?;
    if args.json {
        let out = serde_json::json!({
            "store": root,
            "last_mirror": last_mirror,
            "folders": folders,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", crate::report::status_table(&folders, last_mirror));
    }
    Ok(EXIT_OK)
}
