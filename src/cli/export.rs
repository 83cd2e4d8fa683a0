//! `mailferry export`: the store as Maildir, mbox or .eml files
//! ([`mailferry::mailfiles::export`]).

use anyhow::Result;

use crate::cli::args::{Cli, ExportArgs, ExportFormat};
use crate::cli::{EXIT_INCOMPLETE, EXIT_OK};
use mailferry::mailfiles::Format;
use mailferry::mailfiles::export::{ExportOptions, export, export_objects};

pub fn run(cli: &Cli, args: &ExportArgs) -> Result<i32> {
    let (place, _) = crate::cli::store_to_read(cli, args.accounts.as_deref())?;
    let options = ExportOptions {
        dir: args.dir.clone(),
        format: match args.format {
            ExportFormat::Maildir => Format::Maildir,
            ExportFormat::Mbox => Format::Mbox,
            ExportFormat::Eml => Format::Eml,
        },
        account: args.account.clone(),
        folder: args.folder.clone(),
        include_expunged: args.include_expunged,
        update: args.update,
        force: args.force,
        mode: args.file_mode.unwrap_or_default(),
    };
    let exported = match place {
        mailferry::store::Place::Objects(place) => export_objects(&place, &options)?,
        mailferry::store::Place::Dir(root) => export(&root, &options)?,
    };
    eprint!("{exported}");
    Ok(if exported.complete() {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    })
}
