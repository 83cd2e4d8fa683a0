//! `mailferry gc`: the blob files no message points at, left by a run that
//! was stopped between storing a message and recording it. Lists them;
//! `--delete` removes them. Takes the store's lock, so no run can be about
//! to record one of them.

use anyhow::Result;
use serde::Serialize;

use crate::cli::EXIT_OK;
use crate::cli::args::{Cli, GcArgs};
use crate::cli::outcome::{Form, Outcome, emit};
use mailferry::store::{Creation, Leftover, Place};

/// The leftovers found, and whether they were removed.
#[derive(Debug, Serialize)]
struct Collected {
    leftovers: Vec<Leftover>,
    bytes: u64,
    deleted: bool,
}

impl std::fmt::Display for Collected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for l in &self.leftovers {
            writeln!(f, "{}", l.path.display())?;
        }
        let size = mailferry::format::bytes(self.bytes);
        let n = self.leftovers.len();
        match (n, self.deleted) {
            (0, _) => writeln!(f, "no leftovers: every blob file is recorded in the index"),
            (_, true) => writeln!(f, "removed {n} leftover blob files ({size})"),
            (_, false) => writeln!(
                f,
                "{n} leftover blob files ({size}); `mailferry gc --delete` removes them (the \
                 next mirror would adopt those whose messages the source still has)"
            ),
        }
    }
}

impl Outcome for Collected {
    fn exit_code(&self) -> i32 {
        EXIT_OK
    }
}

pub fn run(cli: &Cli, args: &GcArgs) -> Result<i32> {
    let (place, config) = crate::cli::store_to_read(cli, args.accounts.as_deref())?;
    let leftovers = match place {
        Place::Objects(place) => mailferry::store::shards::leftovers(&place, args.delete)?,
        Place::Dir(_) => {
            let store = crate::cli::open_store(cli, config.as_ref(), Creation::Refused)?;
            let leftovers = store.leftovers()?;
            if args.delete {
                store.remove_leftovers(&leftovers)?;
            }
            store.close()?;
            leftovers
        }
    };
    let collected = Collected {
        bytes: leftovers.iter().map(|l| l.bytes).sum(),
        leftovers,
        deleted: args.delete,
    };
    emit(&collected, Form::json(args.json))
}
