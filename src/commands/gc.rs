//! `mailferry gc`: the blob files no message points at, left by a run that
//! was stopped between storing a message and recording it. Lists them;
//! `--delete` removes them. Takes the store's lock, so no run can be about
//! to record one of them.

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Cli, GcArgs};
use crate::commands::EXIT_OK;
use crate::store::{Creation, Leftover};

#[derive(Debug, Serialize)]
struct Collected {
    leftovers: Vec<Leftover>,
    bytes: u64,
    deleted: bool,
}

pub fn run(cli: &Cli, args: &GcArgs) -> Result<i32> {
    let (_, config) = crate::commands::store_to_read(cli, args.accounts.as_deref())?;
    let store = crate::commands::open_store(cli, config.as_ref(), Creation::Refused)?;
    let leftovers = store.leftovers()?;
    if args.delete {
        store.remove_leftovers(&leftovers)?;
    }
    let result = Collected {
        bytes: leftovers.iter().map(|l| l.bytes).sum(),
        leftovers,
        deleted: args.delete,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(EXIT_OK);
    }
    for l in &result.leftovers {
        println!("{}", l.path.display());
    }
    let size = crate::format::bytes(result.bytes);
    let n = result.leftovers.len();
    match (n, args.delete) {
        (0, _) => println!("no leftovers: every blob file is recorded in the index"),
        (_, true) => println!("removed {n} leftover blob files ({size})"),
        (_, false) => println!(
            "{n} leftover blob files ({size}); `mailferry gc --delete` removes them (the next \
             mirror would adopt those whose messages the source still has)"
        ),
    }
    Ok(EXIT_OK)
}
