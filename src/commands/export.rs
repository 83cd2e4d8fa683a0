//! `mailferry export`: the store as files any mail client reads.
//!
//! - `maildir`: one Maildir per folder (`cur/` files named with the Maildir
//!   `:2,` flags, modification time = INTERNALDATE), nested as the folders are;
//! - `eml`: one `.eml` file per message (modification time = INTERNALDATE);
//! - `mbox`: one mboxrd file per folder (`>From ` quoting is reversible).
//!
//! Maildir and eml files hold the stored bytes exactly. Folder names become
//! safe path components (no separators, control characters or `.`/`..`),
//! and two folders that would land on the same path get distinct suffixes.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cli::{Cli, ExportArgs, ExportFormat};
use crate::commands::EXIT_OK;
use crate::store::{BlobHash, Index};

struct Row {
    account: String,
    folder_id: i64,
    folder: String,
    delimiter: Option<String>,
    uid: u32,
    flags: String,
    internal_date: i64,
    hash: String,
}

pub fn run(cli: &Cli, args: &ExportArgs) -> Result<i32> {
    let root = crate::commands::store_path(cli, None);
    let index = Index::open_read_only(&root.join("index.sqlite"))?;
    let rows = rows(&index, args)?;
    if rows.is_empty() {
        bail!("nothing to export (check --account and --folder)");
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut places: HashMap<i64, PathBuf> = HashMap::new();
    let mut taken: HashMap<String, i64> = HashMap::new();
    let mut count = 0u64;
    let mut mboxes: HashMap<i64, std::fs::File> = HashMap::new();
    for r in &rows {
        let place = match places.get(&r.folder_id) {
            Some(p) => p.clone(),
            None => {
                let p = unique_place(&args.dir, r, &mut taken);
                places.insert(r.folder_id, p.clone());
                p
            }
        };
        let raw = crate::store::blob_read(&root, &BlobHash::from_hex(&r.hash)?)?;
        let when =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.internal_date.max(0) as u64);
        match args.format {
            ExportFormat::Maildir => {
                for sub in ["cur", "new", "tmp"] {
                    std::fs::create_dir_all(place.join(sub))
                        .with_context(|| format!("cannot create {}", place.join(sub).display()))?;
                }
                let name = format!(
                    "{}.M{}U{}.mailferry:2,{}",
                    r.internal_date,
                    &r.hash[..12],
                    r.uid,
                    maildir_flags(&r.flags)
                );
                write_file(&place.join("cur").join(name), &raw, when)?;
            }
            ExportFormat::Eml => {
                std::fs::create_dir_all(&place)
                    .with_context(|| format!("cannot create {}", place.display()))?;
                let name = format!("{}-{}-{}.eml", r.internal_date, r.uid, &r.hash[..12]);
                write_file(&place.join(name), &raw, when)?;
            }
            ExportFormat::Mbox => {
                let file = match mboxes.get_mut(&r.folder_id) {
                    Some(f) => f,
                    None => {
                        let path = place.with_extension("mbox");
                        if let Some(dir) = path.parent() {
                            std::fs::create_dir_all(dir)?;
                        }
                        let f = std::fs::File::create(&path)
                            .with_context(|| format!("cannot create {}", path.display()))?;
                        mboxes.entry(r.folder_id).or_insert(f)
                    }
                };
                file.write_all(&mbox_entry(&raw, r.internal_date))?;
            }
        }
        count += 1;
    }
    for f in mboxes.values() {
        f.sync_all()?;
    }
    eprintln!(
        "exported {count} messages from {} folders to {}",
        places.len(),
        args.dir.display()
    );
    Ok(EXIT_OK)
}

fn rows(index: &Index, args: &ExportArgs) -> Result<Vec<Row>> {
    let mut stmt = index.connection().prepare(
        "SELECT a.name, f.id, f.display_name, f.delimiter, m.uid, m.flags, m.internal_date,
                m.blob_hash
         FROM messages m JOIN folders f ON f.id = m.folder_id JOIN accounts a ON a.id = f.account_id
         WHERE (?1 IS NULL OR a.name = ?1) AND (?2 IS NULL OR f.display_name = ?2)
           AND (?3 OR m.expunged_at IS NULL)
         ORDER BY a.name, f.display_name, m.uidvalidity, m.uid",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![args.account, args.folder, args.include_expunged],
        |r| {
            Ok(Row {
                account: r.get(0)?,
                folder_id: r.get(1)?,
                folder: r.get(2)?,
                delimiter: r.get(3)?,
                uid: r.get(4)?,
                flags: r.get(5)?,
                internal_date: r.get(6)?,
                hash: r.get(7)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// DIR/account/folder/sub/folder, each part made safe, distinct per folder.
fn unique_place(dir: &Path, r: &Row, taken: &mut HashMap<String, i64>) -> PathBuf {
    let parts: Vec<String> = match r.delimiter.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => r.folder.split(d).map(safe_component).collect(),
        None => vec![safe_component(&r.folder)],
    };
    let mut rel = PathBuf::from(safe_component(&r.account));
    for p in &parts {
        rel.push(p);
    }
    let mut candidate = rel.clone();
    let mut n = 1;
    // Case-insensitive file systems: compare lower-cased.
    while let Some(other) = taken.get(&candidate.to_string_lossy().to_lowercase()) {
        if *other == r.folder_id {
            break;
        }
        n += 1;
        candidate = rel.with_file_name(format!(
            "{} ({n})",
            rel.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    taken.insert(candidate.to_string_lossy().to_lowercase(), r.folder_id);
    dir.join(candidate)
}

fn safe_component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.trim() {
        "" => "_".to_string(),
        "." | ".." => cleaned.replace('.', "_"),
        // Maildir's own directory names.
        "cur" | "new" | "tmp" => format!("{cleaned}_"),
        _ => cleaned,
    }
}

/// Maildir info letters and the IMAP flags they stand for, in ASCII order.
pub(crate) const MAILDIR_FLAGS: &[(char, &str)] = &[
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

/// Maildir info letters, in ASCII order as the spec asks.
fn maildir_flags(flags: &str) -> String {
    MAILDIR_FLAGS
        .iter()
        .filter(|(_, f)| flags.split_whitespace().any(|g| g.eq_ignore_ascii_case(f)))
        .map(|(c, _)| *c)
        .collect()
}

fn write_file(path: &Path, bytes: &[u8], modified: std::time::SystemTime) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.set_modified(modified).ok();
    Ok(())
}

/// One mboxrd entry: a `From ` line, the message with `>`-quoted `From `
/// lines, and a blank line.
fn mbox_entry(raw: &[u8], internal_date: i64) -> Vec<u8> {
    let date = chrono::DateTime::from_timestamp(internal_date, 0)
        .unwrap_or_default()
        .format("%a %b %e %H:%M:%S %Y");
    let mut out = format!("From MAILER-DAEMON {date}\n").into_bytes();
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let unquoted = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
        if line[unquoted..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !raw.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_flags_are_maildir_letters() {
        assert_eq!(safe_component("a/b"), "a_b");
        assert_eq!(safe_component(".."), "__");
        assert_eq!(safe_component("cur"), "cur_");
        assert_eq!(maildir_flags("\\Seen \\Flagged $x \\Answered"), "FRS");
    }

    #[test]
    fn mboxrd_quotes_from_lines() {
        let e = mbox_entry(b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n", 0);
        let text = String::from_utf8(e).unwrap();
        assert!(text.starts_with("From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"));
        assert!(text.contains("\n>From here\r\n>>From there\r\n\n"));
    }
}
