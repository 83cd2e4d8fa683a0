//! `mailferry import DIR`: Maildir, .eml or mbox files into the store as
//! an account of their own ([`mailferry::mailfiles::import`]).

use anyhow::Result;

use crate::cli::EXIT_OK;
use crate::cli::args::{Cli, ImportArgs};
use mailferry::mailfiles::import::{default_account, import, scan};

pub fn run(cli: &Cli, args: &ImportArgs) -> Result<i32> {
    let account = args
        .account
        .clone()
        .unwrap_or_else(|| default_account(&args.dir));
    let folders = scan(&args.dir)?;
    let store = crate::cli::open_store(cli, None, mailferry::store::Creation::Allowed)?;
    let imported = import(&store, &args.dir, &account, folders)?;
    eprint!("{imported}");
    Ok(EXIT_OK)
}
