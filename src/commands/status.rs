//! `mailferry status`: per account and folder, the source and the target
//! side by side (at the source, stored, expunged, uploaded, already there,
//! skipped, failed, pending), every message that did not go and why, when
//! each phase last ran, and the cutover.

use anyhow::Result;

use crate::cli::{Cli, StatusArgs};
use crate::commands::EXIT_OK;
use crate::report::Snapshot;
use crate::store::Index;

/// What the store says, read without taking its lock (a run may be going on).
pub fn snapshot(cli: &Cli, account: Option<&str>) -> Result<Snapshot> {
    let root = crate::commands::store_path(cli, None);
    let index = Index::open_read_only(&root.join("index.sqlite"))?;
    Snapshot::gather(&root, &index, account)
}

pub fn run(cli: &Cli, args: &StatusArgs) -> Result<i32> {
    let snap = snapshot(cli, args.account.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&snap)?);
    } else if args.summary {
        print!("{}", crate::report::phases(&snap));
        print!("{}", crate::report::account_lines(&snap));
    } else {
        print!("{}", crate::report::status_table(&snap));
        print!(
            "{}",
            crate::report::target_table(&snap.targets, &snap.not_uploaded)
        );
    }
    Ok(EXIT_OK)
}
