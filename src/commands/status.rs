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
    let last_upload = index.last_run("upload")?;
    let targets = index.target_status()?;
    let not_uploaded = index.not_uploaded()?;
    if args.json {
        let out = serde_json::json!({
            "store": root,
            "last_mirror": last_mirror,
            "last_upload": last_upload,
            "folders": folders,
            "targets": targets,
            "not_uploaded": not_uploaded,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", crate::report::status_table(&folders, last_mirror));
        print!(
            "{}",
            crate::report::target_table(&targets, &not_uploaded, last_upload)
        );
    }
    Ok(EXIT_OK)
}
