//! `mailferry import PATH...`: Maildir, .eml or mbox files into the store
//! as an account of their own ([`mailferry::mailfiles::import`]); vCard
//! and iCalendar files as the contacts, calendars and tasks of a mailbox
//! ([`mailferry::mailfiles::items`]); Outlook data files (.pst) as both
//! ([`mailferry::mailfiles::pst`]).

use anyhow::{Result, bail};

use crate::cli::args::{Cli, ImportArgs};
use crate::cli::{EXIT_INCOMPLETE, EXIT_OK};
use mailferry::mailfiles::import::{default_account, import, scan};
use mailferry::mailfiles::items::{import_items, is_item_file};
use mailferry::mailfiles::pst::{self, PstParts, is_pst_file};

pub fn run(cli: &Cli, args: &ImportArgs) -> Result<i32> {
    if let Some(file) = &args.accounts {
        return from_export_folders(cli, file, &args.only);
    }
    let items: Vec<_> = args.paths.iter().filter(|p| is_item_file(p)).collect();
    let psts: Vec<_> = args.paths.iter().filter(|p| is_pst_file(p)).collect();
    let mail: Vec<_> = args
        .paths
        .iter()
        .filter(|p| !is_item_file(p) && !is_pst_file(p))
        .collect();
    let owner = match (&args.account, items.first().or(psts.first())) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(first)) => bail!(
            "{} holds contacts or calendars: say whose mailbox they belong to with --account \
             (the mailbox's address, as in the accounts file)",
            first.display()
        ),
        (None, None) => None,
    };
    // Read every mail tree, and open every Outlook data file, before the
    // store is touched: a wrong path or a protected file is an error with
    // nothing half done.
    let mut trees = Vec::new();
    for dir in &mail {
        trees.push((dir, scan(dir)?));
    }
    let mut outlook_files = Vec::new();
    for path in &psts {
        outlook_files.push(pst::open(path)?);
    }
    let store = crate::cli::open_store(cli, None, mailferry::store::Creation::Allowed)?;
    let mut complete = true;
    for (dir, folders) in trees {
        let account = args.account.clone().unwrap_or_else(|| default_account(dir));
        let imported = import(&store, dir, &account, folders)?;
        eprint!("{imported}");
    }
    if let Some(owner) = owner {
        for file in outlook_files {
            let imported = pst::import_pst(&store, &owner, file, PstParts::Everything)?;
            complete &= imported.problems.is_empty();
            eprint!("{imported}");
        }
        for path in items {
            let imported = import_items(&store, &owner, path)?;
            complete &= imported.problems.is_empty();
            eprint!("{imported}");
        }
    }
    store.close()?;
    Ok(if complete { EXIT_OK } else { EXIT_INCOMPLETE })
}

/// `import --accounts FILE`: every contacts, calendar or tasks file in
/// each account's export folder, for that account's mailbox; of an
/// Outlook data file there, its contacts, calendars and tasks (the
/// mailbox's mail comes from its mirror). A folder that cannot be read is
/// named and the other accounts go on.
fn from_export_folders(cli: &Cli, file: &std::path::Path, only: &[String]) -> Result<i32> {
    // Passwords are not needed to import files.
    let mut config = mailferry::config::load_without_secrets(file)?;
    crate::cli::narrow(&mut config, only, file)?;
    let with_exports: Vec<_> = config
        .accounts
        .iter()
        .filter_map(|a| a.exports.as_ref().map(|dir| (a, dir)))
        .collect();
    if with_exports.is_empty() {
        bail!(
            "{} names no export folder for any account (an ExportFolder column, or `exports` \
             in a TOML [[account]])",
            file.display()
        );
    }
    let store = crate::cli::open_store(cli, Some(&config), mailferry::store::Creation::Allowed)?;
    let mut complete = true;
    for (account, dir) in with_exports {
        eprintln!("{} ({}):", account.name, dir.display());
        let files = match export_files(dir) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("  {e:#} ({})", account.origin);
                complete = false;
                continue;
            }
        };
        if files.is_empty() {
            eprintln!("  no .vcf, .csv, .ics or .pst file there");
        }
        for path in files {
            let imported = if is_pst_file(&path) {
                pst::open(&path)
                    .and_then(|file| {
                        pst::import_pst(&store, &account.name, file, PstParts::ItemsOnly)
                    })
                    .map(|done| (done.problems.is_empty(), done.to_string()))
            } else {
                import_items(&store, &account.name, &path)
                    .map(|done| (done.problems.is_empty(), done.to_string()))
            };
            match imported {
                Ok((clean, said)) => {
                    complete &= clean;
                    eprint!("{said}");
                }
                Err(e) => {
                    complete = false;
                    eprintln!("  {e:#}");
                }
            }
        }
    }
    store.close()?;
    Ok(if complete { EXIT_OK } else { EXIT_INCOMPLETE })
}

/// The contacts, calendar, tasks and Outlook data files in `dir` and
/// below, in name order.
fn export_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    if !dir.is_dir() {
        bail!("the export folder {} does not exist", dir.display());
    }
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", d.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if is_item_file(&path) || is_pst_file(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
