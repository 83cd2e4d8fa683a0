//! `mailferry status`: every account of the batch (never mirrored, failed
//! with the server's words, in progress, complete), per folder the source
//! and the target side by side, every message that did not go and why,
//! when each phase last ran, and the cutover. Exits 0 only when every
//! account is complete.

use std::path::Path;

use anyhow::Result;

use crate::cli::args::{Cli, StatusArgs};
use crate::cli::{EXIT_INCOMPLETE, EXIT_OK};
use mailferry::report::{Selection, Snapshot};
use mailferry::store::{Place, Store};

/// What the store says of the batch, read without taking its lock (a run
/// may be going on). With an accounts file, every account in it is shown.
pub fn snapshot(cli: &Cli, accounts: Option<&Path>, account: Option<&str>) -> Result<Snapshot> {
    let (place, config) = crate::cli::store_to_read(cli, accounts)?;
    let batch = match (accounts, &config) {
        (Some(file), Some(c)) => Some((file, c.accounts.iter().map(|a| a.name.clone()).collect())),
        _ => None,
    };
    let select = Selection { batch, account };
    match place {
        Place::Objects(place) => Snapshot::gather_objects(&place, &select),
        Place::Dir(root) => {
            let store = Store::open_read_only(&root)?;
            Snapshot::gather(&root, store.index(), &select)
        }
    }
}

pub fn run(cli: &Cli, args: &StatusArgs) -> Result<i32> {
    let snap = snapshot(cli, args.accounts.as_deref(), args.account.as_deref())?;
    if let Some(out) = &args.json {
        let mut text = serde_json::to_string_pretty(&snap)?;
        text.push('\n');
        mailferry::files::write_output(out, text.as_bytes(), args.file_mode.unwrap_or_default())?;
    } else if args.summary {
        print!("{}", mailferry::report::phases(&snap));
        print!("{}", mailferry::report::account_lines(&snap));
    } else {
        print!("{}", mailferry::report::status_table(&snap));
        print!(
            "{}",
            mailferry::report::target_table(&snap.targets, &snap.not_uploaded)
        );
    }
    Ok(if snap.complete {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    })
}
