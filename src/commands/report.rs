//! `mailferry report --html FILE`: the batch as one self-contained HTML
//! page for the customer, with the same numbers as `status --json`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::cli::{Cli, ReportArgs};
use crate::commands::EXIT_OK;

pub fn run(cli: &Cli, args: &ReportArgs) -> Result<i32> {
    let snap = super::status::snapshot(cli, args.account.as_deref())?;
    if let Some(account) = &args.account
        && snap.accounts.is_empty()
    {
        bail!("the store at {} has no account {account}", snap.store);
    }
    let page = crate::report::html::render(&snap);
    write_atomically(&args.html, page.as_bytes())?;
    println!("{}", args.html.display());
    Ok(EXIT_OK)
}

/// Writes `bytes` next to `path` under a temporary name, syncs it, and
/// renames it over `path`: a reader sees the old page or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
