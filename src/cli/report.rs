//! `mailferry report --html FILE`: the batch as one self-contained HTML
//! page for the customer, with the same numbers as `status --json`.

use anyhow::Result;

use crate::cli::EXIT_OK;
use crate::cli::args::{Cli, ReportArgs};

pub fn run(cli: &Cli, args: &ReportArgs) -> Result<i32> {
    let snap = super::status::snapshot(cli, args.accounts.as_deref(), args.account.as_deref())?;
    let page = mailferry::report::html::render(&snap);
    let mode = args.file_mode.unwrap_or_default();
    mailferry::files::write_output(&args.html, page.as_bytes(), mode)?;
    if !mailferry::files::is_stdout(&args.html) {
        println!("{}", args.html.display());
    }
    Ok(EXIT_OK)
}
