//! `mailferry import PATH...`: Maildir, .eml or mbox files into the store
//! as an account of their own ([`mailferry::mailfiles::import`]); vCard
//! and iCalendar files as the contacts, calendars and tasks of a mailbox
//! ([`mailferry::mailfiles::items`]).

use anyhow::{Result, bail};

use crate::cli::args::{Cli, ImportArgs};
use crate::cli::{EXIT_INCOMPLETE, EXIT_OK};
use mailferry::mailfiles::import::{default_account, import, scan};
use mailferry::mailfiles::items::{import_items, is_item_file};

pub fn run(cli: &Cli, args: &ImportArgs) -> Result<i32> {
    let items: Vec<_> = args.paths.iter().filter(|p| is_item_file(p)).collect();
    let mail: Vec<_> = args.paths.iter().filter(|p| !is_item_file(p)).collect();
    let owner = match (&args.account, items.first()) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(first)) => bail!(
            "{} holds contacts or calendars: say whose mailbox they belong to with --account \
             (the mailbox's address, as in the accounts file)",
            first.display()
        ),
        (None, None) => None,
    };
    // Read every mail tree before the store is touched: a wrong path is
    // an error with nothing half done.
    let mut trees = Vec::new();
    for dir in &mail {
        trees.push((dir, scan(dir)?));
    }
    let store = crate::cli::open_store(cli, None, mailferry::store::Creation::Allowed)?;
    let mut complete = true;
    for (dir, folders) in trees {
        let account = args.account.clone().unwrap_or_else(|| default_account(dir));
        let imported = import(&store, dir, &account, folders)?;
        eprint!("{imported}");
    }
    if let Some(owner) = owner {
        for path in items {
            let imported = import_items(&store, &owner, path)?;
            complete &= imported.problems.is_empty();
            eprint!("{imported}");
        }
    }
    Ok(if complete { EXIT_OK } else { EXIT_INCOMPLETE })
}
