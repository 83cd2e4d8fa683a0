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

use std::collections::{HashMap, HashSet};
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
    internal_date: Option<i64>,
    hash: String,
}

pub fn run(cli: &Cli, args: &ExportArgs) -> Result<i32> {
    let (root, _) = crate::commands::store_to_read(cli, args.accounts.as_deref())?;
    let mode = args.file_mode.unwrap_or_default();
    // No writer may start while this runs; one already running is said.
    let hold = crate::store::hold_for_reading(&root);
    let index = Index::open_read_only(&root.join("index.sqlite"))?;
    // One query: the store as it was at this moment, whatever a running
    // mirror adds meanwhile (its blobs are durable before their rows).
    let rows = rows(&index, args)?;
    if rows.is_empty() {
        if let Some(a) = &args.account
            && index.folder_status(Some(a))?.is_empty()
        {
            bail!("the store {} has no account {a}", root.display());
        }
        bail!("nothing to export (check --folder)");
    }
    let not_empty = std::fs::read_dir(&args.dir).is_ok_and(|mut d| d.next().is_some());
    if not_empty && !args.update && !args.force {
        bail!(
            "{} is not empty: --update brings an earlier export there up to date (and removes \
             the files of messages no longer in it), --force writes beside what is there",
            args.dir.display()
        );
    }
    crate::files::create_dir_all(&args.dir, mode.dir())
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut places: HashMap<i64, PathBuf> = HashMap::new();
    let mut taken = Places::default();
    let mut count = 0u64;
    let mut skipped: Vec<String> = Vec::new();
    let mut mbox: Option<(i64, std::fs::File)> = None;
    let mut mbox_started: HashSet<i64> = HashSet::new();
    let mut written: HashSet<PathBuf> = HashSet::new();
    for r in &rows {
        let place = match places.get(&r.folder_id) {
            Some(p) => p.clone(),
            None => {
                let p = taken.claim(&args.dir, r, args.format);
                places.insert(r.folder_id, p.clone());
                p
            }
        };
        // A damaged blob is named and skipped; the rest goes on.
        let raw = match crate::store::blob_read(&root, &BlobHash::from_hex(&r.hash)?) {
            Ok(raw) => raw,
            Err(e) => {
                skipped.push(format!(
                    "{} / {} UID {}: {e}; `mailferry mirror` fetches it again",
                    r.account, r.folder, r.uid
                ));
                continue;
            }
        };
        let date = r.internal_date.unwrap_or(0);
        let when = r
            .internal_date
            .map(|d| std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.max(0) as u64));
        match args.format {
            ExportFormat::Maildir => {
                for sub in ["cur", "new", "tmp"] {
                    crate::files::create_dir_all(&place.join(sub), mode.dir())
                        .with_context(|| format!("cannot create {}", place.join(sub).display()))?;
                }
                let name = format!(
                    "{date}.M{}U{}.mailferry:2,{}",
                    &r.hash[..12],
                    r.uid,
                    maildir_flags(&r.flags)
                );
                let path = place.join("cur").join(name);
                write_file(&path, &raw, when, mode)?;
                written.insert(path);
            }
            ExportFormat::Eml => {
                crate::files::create_dir_all(&place, mode.dir())
                    .with_context(|| format!("cannot create {}", place.display()))?;
                let name = format!("{date}-{}-{}.eml", r.uid, &r.hash[..12]);
                let path = place.join(name);
                write_file(&path, &raw, when, mode)?;
                written.insert(path);
            }
            ExportFormat::Mbox => {
                // One file open at a time (rows come folder by folder), so
                // 100,000 folders do not need 100,000 file handles.
                if mbox.as_ref().is_none_or(|(id, _)| *id != r.folder_id) {
                    if let Some((_, f)) = mbox.take() {
                        f.sync_all()?;
                    }
                    if let Some(dir) = place.parent() {
                        crate::files::create_dir_all(dir, mode.dir())
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                    }
                    // Created (emptied) once per run, appended to after.
                    let f = if mbox_started.insert(r.folder_id) {
                        crate::files::create(&place, mode.file())
                    } else {
                        std::fs::OpenOptions::new().append(true).open(&place)
                    }
                    .with_context(|| format!("cannot create {}", place.display()))?;
                    written.insert(place.clone());
                    mbox = Some((r.folder_id, f));
                }
                let (_, file) = mbox.as_mut().expect("opened above");
                file.write_all(&mbox_entry(&raw, date))
                    .with_context(|| format!("cannot write {}", place.display()))?;
            }
        }
        count += 1;
    }
    if let Some((_, f)) = mbox.take() {
        f.sync_all()?;
    }
    for s in &skipped {
        eprintln!("not exported: {s}");
    }
    if args.update {
        let removed = remove_stale(&args.dir, &written)?;
        if removed > 0 {
            eprintln!("removed {removed} files of messages no longer in the export");
        }
    }
    eprintln!(
        "exported {count} of {} messages from {} folders to {}{}",
        rows.len(),
        places.len(),
        args.dir.display(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; {} damaged in the store, not exported", skipped.len())
        }
    );
    if hold.writer_active {
        eprintln!(
            "a mirror, upload or import was writing this store: the export holds the store as \
             it was when the export began, not what that run added since; export again when \
             it has finished"
        );
    }
    Ok(if skipped.is_empty() && !hold.writer_active {
        EXIT_OK
    } else {
        crate::commands::EXIT_INCOMPLETE
    })
}

/// Removes the files under `dir` that an export writes (Maildir message
/// files, .eml and .mbox files) but this one did not: copies of messages
/// gone from the store's view, or Maildir files whose flags changed.
/// Anything else is left alone. Returns how many were removed.
fn remove_stale(dir: &Path, written: &HashSet<PathBuf>) -> Result<u64> {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let ours =
                name.contains(".mailferry:2,") || name.ends_with(".eml") || name.ends_with(".mbox");
            if ours && !written.contains(&path) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The paths an export has given out, so that no two folders share a file
/// or directory (compared without case, for case-insensitive file systems),
/// and no folder's file sits where another needs a directory.
#[derive(Default)]
struct Places {
    /// mbox files.
    files: HashSet<String>,
    /// Directories some place lies in.
    dirs: HashSet<String>,
    /// Directories that are a folder's own (Maildir, eml); subfolders nest in them.
    owned: HashSet<String>,
}

impl Places {
    /// Where folder `r` goes: a directory (Maildir, eml) or a file (mbox),
    /// DIR/account/folder/sub/folder with each part made safe, distinct
    /// from every place given out before.
    fn claim(&mut self, dir: &Path, r: &Row, format: ExportFormat) -> PathBuf {
        let parts: Vec<String> = match r.delimiter.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => r.folder.split(d).map(safe_component).collect(),
            None => vec![safe_component(&r.folder)],
        };
        let is_file = matches!(format, ExportFormat::Mbox);
        let mut parent = PathBuf::from(safe_component(&r.account));
        for p in &parts[..parts.len() - 1] {
            // mbox files end in .mbox; directories never do, so no folder's
            // file can stand where another's directory must be.
            if is_file && p.to_lowercase().ends_with(".mbox") {
                parent.push(format!("{p}_"));
            } else {
                parent.push(p);
            }
        }
        let leaf = parts.last().cloned().unwrap_or_else(|| "_".into());
        let key = |p: &Path| p.to_string_lossy().to_lowercase();
        let mut n = 1;
        let chosen = loop {
            let name = match (n, is_file) {
                (1, false) => leaf.clone(),
                (1, true) => format!("{leaf}.mbox"),
                (_, false) => format!("{leaf} ({n})"),
                (_, true) => format!("{leaf} ({n}).mbox"),
            };
            let candidate = parent.join(name);
            let k = key(&candidate);
            let free = if is_file {
                !self.files.contains(&k) && !self.dirs.contains(&k)
            } else {
                !self.owned.contains(&k)
            };
            if free {
                break candidate;
            }
            n += 1;
        };
        for a in chosen.ancestors().skip(1) {
            if !a.as_os_str().is_empty() {
                self.dirs.insert(key(a));
            }
        }
        if is_file {
            self.files.insert(key(&chosen));
        } else {
            self.owned.insert(key(&chosen));
            self.dirs.insert(key(&chosen));
        }
        dir.join(chosen)
    }
}

fn rows(index: &Index, args: &ExportArgs) -> Result<Vec<Row>> {
    let mut stmt = index.connection().prepare(
        "SELECT a.name, f.id, f.display_name, f.delimiter, m.uid, m.flags, m.internal_date,
                m.blob_hash
         FROM messages m JOIN folders f ON f.id = m.folder_id JOIN accounts a ON a.id = f.account_id
         WHERE (?1 IS NULL OR a.name = ?1 COLLATE NOCASE) AND (?2 IS NULL OR f.display_name = ?2)
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

/// File names stop at 255 bytes on common file systems; longer folder
/// names are cut and given a hash of the whole name, so they stay distinct.
const MAX_COMPONENT_BYTES: usize = 200;

fn safe_component(s: &str) -> String {
    let cleaned = safe_chars(s);
    if cleaned.len() <= MAX_COMPONENT_BYTES {
        return cleaned;
    }
    let mut cut = MAX_COMPONENT_BYTES - 12;
    while !cleaned.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = BlobHash::of(s.as_bytes()).to_hex();
    format!("{}~{}", cleaned[..cut].trim_end(), &digest[..10])
}

fn safe_chars(s: &str) -> String {
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
        // Maildir's own directory names (also as spelled on a file system
        // that ignores case).
        c if ["cur", "new", "tmp"].contains(&c.to_ascii_lowercase().as_str()) => {
            format!("{cleaned}_")
        }
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

fn write_file(
    path: &Path,
    bytes: &[u8],
    modified: Option<std::time::SystemTime>,
    mode: crate::files::OutputMode,
) -> Result<()> {
    let mut f = crate::files::create(path, mode.file())
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(t) = modified {
        f.set_modified(t).ok();
    }
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
        assert_eq!(safe_component("New"), "New_");
        assert_eq!(maildir_flags("\\Seen \\Flagged $x \\Answered"), "FRS");
    }

    fn row(id: i64, folder: &str) -> Row {
        Row {
            account: "alice".into(),
            folder_id: id,
            folder: folder.into(),
            delimiter: Some("/".into()),
            uid: 1,
            flags: String::new(),
            internal_date: None,
            hash: String::new(),
        }
    }

    #[test]
    fn every_folder_gets_its_own_place() {
        let dir = Path::new("/out");
        let mut places = Places::default();
        let names = [
            "a.b",
            "a.c",
            "x",
            "x.mbox",
            "x.mbox/y",
            "X",
            "x.mbox_/y",
            "a.b/c",
        ];
        let got: Vec<PathBuf> = names
            .iter()
            .enumerate()
            .map(|(i, n)| places.claim(dir, &row(i as i64, n), ExportFormat::Mbox))
            .collect();
        let distinct: HashSet<String> = got
            .iter()
            .map(|p| p.to_string_lossy().to_lowercase())
            .collect();
        assert_eq!(distinct.len(), names.len(), "{got:?}");
        assert_eq!(got[0], Path::new("/out/alice/a.b.mbox"));
        assert_eq!(got[1], Path::new("/out/alice/a.c.mbox"));
        // No mbox file is also a directory another one lies in.
        for p in &got {
            assert!(got.iter().all(|q| !q.starts_with(p) || q == p), "{got:?}");
        }
        let mut maildirs = Places::default();
        let a = maildirs.claim(dir, &row(1, "a"), ExportFormat::Maildir);
        let child = maildirs.claim(dir, &row(2, "a/b"), ExportFormat::Maildir);
        let upper = maildirs.claim(dir, &row(3, "A"), ExportFormat::Maildir);
        assert_eq!(child, a.join("b"));
        assert_eq!(upper, Path::new("/out/alice/A (2)"));
    }

    #[test]
    fn very_long_folder_names_are_cut_and_stay_distinct() {
        let long_a = format!("{}a", "é".repeat(5000));
        let long_b = format!("{}b", "é".repeat(5000));
        let (a, b) = (safe_component(&long_a), safe_component(&long_b));
        assert!(a.len() <= MAX_COMPONENT_BYTES && b.len() <= MAX_COMPONENT_BYTES);
        assert_ne!(a, b);
        assert_eq!(safe_component("Inbox"), "Inbox");
    }

    #[test]
    fn mboxrd_quotes_from_lines() {
        let e = mbox_entry(b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n", 0);
        let text = String::from_utf8(e).unwrap();
        assert!(text.starts_with("From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"));
        assert!(text.contains("\n>From here\r\n>>From there\r\n\n"));
    }
}
