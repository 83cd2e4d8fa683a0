//! Import: a Maildir tree, a directory of `.eml` files or
//! mbox files, into the store as an account of its own, so that an old
//! local export can be uploaded like mirrored mail.
//!
//! Each directory (or mbox file) is a folder named by its path under DIR
//! with `/` between levels. Messages get UIDs in file-name order (mbox: in
//! file order) under UIDVALIDITY 1, so importing the same tree again adds
//! nothing twice. Maildir flags come from the `:2,` info; dates from the
//! file's modification time or the mbox `From ` line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Found, MAILDIR_FLAGS, split_mbox};
use crate::imap::mutf7;
use crate::store::Store;
use crate::store::index::{AccountOrigin, BlobMeta, NewBlob, NewMessage};

/// What [`import`] did.
#[derive(Debug, Serialize)]
pub struct Imported {
    pub account: String,
    /// Messages new to the account.
    pub added: u64,
    /// Messages an earlier import had stored already.
    pub already: u64,
    /// Blobs this import wrote (a message stored for another account too
    /// is stored once).
    pub new_blobs: u64,
}

impl std::fmt::Display for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "account {}: added {} messages, {} already stored ({} new blobs)",
            self.account, self.added, self.already, self.new_blobs
        )
    }
}

/// The account name an import of `dir` gets unless one is given.
pub fn default_account(dir: &Path) -> String {
    format!(
        "import:{}",
        dir.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "local".into())
    )
}

/// Reads the mail under `dir`, failing before any store is touched when
/// there is none.
pub fn scan(dir: &Path) -> Result<BTreeMap<String, Vec<Found>>> {
    if !dir.exists() {
        bail!("{} does not exist", dir.display());
    }
    let folders = scan_tree(dir)?;
    if folders.is_empty() {
        bail!("{} holds no Maildir, .eml or mbox mail", dir.display());
    }
    Ok(folders)
}

/// Stores `folders` (read from `dir` by [`scan`]) as `account`.
pub fn import(
    store: &Store,
    dir: &Path,
    account: &str,
    folders: BTreeMap<String, Vec<Found>>,
) -> Result<Imported> {
    // An account a mirror fills must not be mixed with files: the next
    // mirror would take the imported messages for expunged ones.
    let origin = store.index().account_origin(account)?;
    if let Some(AccountOrigin::Mirrored { host }) = origin {
        bail!(
            "the store already holds {account} as an account mirrored from {host}; import \
             under another name (e.g. --account import:{account}) and give its upload the \
             target mailbox with TargetAddress"
        );
    }
    let account_id = store
        .index()
        .imported_account_id(account, &dir.display().to_string())?;
    let (mut added, mut already, mut written) = (0u64, 0u64, 0u64);
    for (name, found) in folders {
        let wire = mutf7::encode(&name);
        let folder_id = store
            .index()
            .upsert_folder(account_id, &wire, &name, Some("/"), "")?;
        // A message already in the folder (an earlier import of the same
        // files) is not added again; new ones get UIDs after the last.
        let (mut held, mut last_uid) = store.index().folder_blobs(folder_id, 1)?;
        let mut blobs = Vec::new();
        let mut rows = Vec::new();
        for m in &found {
            let hash = crate::store::BlobHash::of(&m.bytes);
            if !held.insert(hash.to_hex()) {
                already += 1;
                continue;
            }
            last_uid += 1;
            let w = store.write_blob(&m.bytes)?;
            written += u64::from(w.created);
            if let Some(stored_size) = w.stored_size {
                blobs.push(NewBlob {
                    hash: w.hash,
                    size: m.bytes.len() as u64,
                    stored_size,
                    meta: BlobMeta::parse(&m.bytes),
                });
            }
            rows.push(NewMessage {
                uid: last_uid,
                blob: w.hash,
                flags: m.flags.clone(),
                modseq: None,
                // 0: no date could be read from the file.
                internal_date: (m.date != 0).then_some((m.date, 0)),
                size: m.bytes.len() as u64,
            });
        }
        added += rows.len() as u64;
        let index = store.index();
        index.insert_messages(folder_id, 1, &blobs, &rows)?;
        index.save_folder_state(
            folder_id,
            1,
            Some(last_uid + 1),
            None,
            held.len() as u32,
            last_uid,
        )?;
    }
    Ok(Imported {
        account: account.to_string(),
        added,
        already,
        new_blobs: written,
    })
}

/// Folder name → messages, for everything under `dir`.
fn scan_tree(dir: &Path) -> Result<BTreeMap<String, Vec<Found>>> {
    let mut folders: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    for path in files {
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        let parent = rel.parent().unwrap_or(Path::new(""));
        let in_maildir = parent.file_name().is_some_and(|n| n == "cur" || n == "new");
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        if in_maildir {
            let folder = folder_name(parent.parent().unwrap_or(Path::new("")));
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let flags = name
                .rsplit_once(":2,")
                .map(|(_, f)| flags_from_info(f))
                .unwrap_or_default();
            folders.entry(folder).or_default().push(Found {
                bytes: read(&path)?,
                flags,
                date: mtime(&path),
            });
        } else if parent.file_name().is_some_and(|n| n == "tmp") {
            continue;
        } else if ext.as_deref() == Some("eml") {
            folders.entry(folder_name(parent)).or_default().push(Found {
                bytes: read(&path)?,
                flags: String::new(),
                date: mtime(&path),
            });
        } else if ext.as_deref() == Some("mbox") || is_mbox(&path) {
            let folder = folder_name(&rel.with_extension(""));
            let text = read(&path)?;
            folders.entry(folder).or_default().extend(split_mbox(&text));
        }
    }
    Ok(folders)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn mtime(path: &Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

fn folder_name(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    if parts.is_empty() {
        "INBOX".to_string()
    } else {
        parts.join("/")
    }
}

fn flags_from_info(info: &str) -> String {
    let mut flags: Vec<&str> = MAILDIR_FLAGS
        .iter()
        .filter(|(c, _)| info.contains(*c))
        .map(|(_, f)| *f)
        .collect();
    flags.sort_unstable();
    flags.join(" ")
}

fn is_mbox(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0u8; 5];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"From "
}
