//! `mailferry import DIR`: a Maildir tree, a directory of `.eml` files or
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

use crate::cli::{Cli, ImportArgs};
use crate::commands::EXIT_OK;
use crate::imap::mutf7;
use crate::store::index::{BlobMeta, NewBlob, NewMessage};

/// One message found on disk.
struct Found {
    bytes: Vec<u8>,
    flags: String,
    date: i64,
}

pub fn run(cli: &Cli, args: &ImportArgs) -> Result<i32> {
    if !args.dir.exists() {
        bail!("{} does not exist", args.dir.display());
    }
    let account = args.account.clone().unwrap_or_else(|| {
        format!(
            "import:{}",
            args.dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| "local".into())
        )
    });
    let folders = scan(&args.dir)?;
    if folders.is_empty() {
        bail!("{} holds no Maildir, .eml or mbox mail", args.dir.display());
    }
    let store = crate::commands::open_store(cli, None, crate::store::Creation::Allowed)?;
    // An account a mirror fills must not be mixed with files: the next
    // mirror would take the imported messages for expunged ones.
    let origin = store.index().account_origin(&account)?;
    if let Some(crate::store::index::AccountOrigin::Mirrored { host }) = origin {
        bail!(
            "the store already holds {account} as an account mirrored from {host}; import \
             under another name (e.g. --account import:{account}) and give its upload the \
             target mailbox with TargetAddress"
        );
    }
    let account_id = store
        .index()
        .imported_account_id(&account, &args.dir.display().to_string())?;
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
    eprintln!(
        "account {account}: added {added} messages, {already} already stored ({written} new \
         blobs)"
    );
    Ok(EXIT_OK)
}

/// Folder name → messages, for everything under `dir`.
fn scan(dir: &Path) -> Result<BTreeMap<String, Vec<Found>>> {
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
    let mut flags: Vec<&str> = super::export::MAILDIR_FLAGS
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

/// Splits an mboxrd file: messages start at `From ` lines that follow a
/// blank line (or open the file); one `>` is removed from `>From ` lines.
fn split_mbox(text: &[u8]) -> Vec<Found> {
    let mut out = Vec::new();
    let mut current: Option<(i64, Vec<u8>)> = None;
    let mut previous_blank = true;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if previous_blank && line.starts_with(b"From ") {
            if let Some((date, mut body)) = current.take() {
                // The blank line before `From ` separates; it is not mail.
                if body.ends_with(b"\n") {
                    body.pop();
                }
                out.push(Found {
                    bytes: body,
                    flags: String::new(),
                    date,
                });
            }
            current = Some((from_line_date(line), Vec::new()));
            previous_blank = false;
            continue;
        }
        previous_blank = line == b"\n" || line == b"\r\n";
        if let Some((_, body)) = current.as_mut() {
            let quotes = line.iter().take_while(|&&b| b == b'>').count();
            if quotes > 0 && line[quotes..].starts_with(b"From ") {
                body.extend_from_slice(&line[1..]);
            } else {
                body.extend_from_slice(line);
            }
        }
    }
    if let Some((date, mut body)) = current {
        if body.ends_with(b"\n") {
            body.pop();
        }
        out.push(Found {
            bytes: body,
            flags: String::new(),
            date,
        });
    }
    out
}

/// The asctime date of a `From sender Thu Jan  1 00:00:00 1970` line.
fn from_line_date(line: &[u8]) -> i64 {
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < 7 {
        return 0;
    }
    let date = words[words.len() - 5..].join(" ");
    chrono::NaiveDateTime::parse_from_str(&date, "%a %b %e %H:%M:%S %Y")
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(0)
}
