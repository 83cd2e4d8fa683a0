//! Export: the store as files any mail client reads.
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
use serde::Serialize;

use super::{Format, MAILDIR_FLAGS, mbox_entry};
use crate::files::OutputMode;
use crate::store::index::MessageRow as Row;
use crate::store::{BlobHash, Store};

/// What to export, and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub dir: PathBuf,
    pub format: Format,
    /// Only this account (any case).
    pub account: Option<String>,
    /// Only this folder (its display name).
    pub folder: Option<String>,
    pub include_expunged: bool,
    /// `dir` holds an earlier export: bring it up to date.
    pub update: bool,
    /// Write into a `dir` that is not empty, leaving what is there.
    pub force: bool,
    pub mode: OutputMode,
}

/// What [`export`] wrote.
#[derive(Debug, Serialize)]
pub struct Exported {
    pub dir: PathBuf,
    /// Messages written.
    pub exported: u64,
    /// Messages the store's view holds.
    pub messages: u64,
    pub folders: u64,
    /// Messages whose blob is damaged, each named: not exported.
    pub damaged: Vec<String>,
    /// Files of an earlier export removed by `update`.
    pub removed: u64,
    /// A mirror, upload or import was writing the store: the export is
    /// the store as it was when it began.
    pub writer_active: bool,
    /// A store in object storage: shards whose index is missing or stale,
    /// whose mail may not all be here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards_incomplete: Vec<String>,
}

impl Exported {
    /// Everything the store held is in the export.
    pub fn complete(&self) -> bool {
        self.damaged.is_empty() && !self.writer_active && self.shards_incomplete.is_empty()
    }
}

impl std::fmt::Display for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.damaged {
            writeln!(f, "not exported: {s}")?;
        }
        for s in &self.shards_incomplete {
            writeln!(
                f,
                "{s}: its accounts' mail may not all be in this export (see `mailferry status`)"
            )?;
        }
        if self.removed > 0 {
            writeln!(
                f,
                "removed {} files of messages no longer in the export",
                self.removed
            )?;
        }
        write!(
            f,
            "exported {} of {} messages from {} folders to {}",
            self.exported,
            self.messages,
            self.folders,
            self.dir.display()
        )?;
        if !self.damaged.is_empty() {
            write!(
                f,
                "; {} damaged in the store, not exported",
                self.damaged.len()
            )?;
        }
        writeln!(f)?;
        if self.writer_active {
            writeln!(
                f,
                "a mirror, upload or import was writing this store: the export holds the store \
                 as it was when the export began, not what that run added since; export again \
                 when it has finished"
            )?;
        }
        Ok(())
    }
}

/// Writes the store at `root` out as files.
pub fn export(root: &Path, opts: &ExportOptions) -> Result<Exported> {
    // No writer may start while this runs; one already running is said.
    let store = Store::open_whole(root)?;
    let index = store.index();
    // One query: the store as it was at this moment, whatever a running
    // mirror adds meanwhile (its blobs are durable before their rows).
    let rows = index.messages(
        opts.account.as_deref(),
        opts.folder.as_deref(),
        opts.include_expunged,
    )?;
    if rows.is_empty() {
        if let Some(a) = &opts.account
            && index.folder_status(Some(a))?.is_empty()
        {
            bail!("the store {} has no account {a}", root.display());
        }
        bail!("nothing to export (check --folder)");
    }
    write_out(&rows, &|h| store.read_blob(h), store.writer_active(), opts)
}

/// [`export`] of a store in object storage: every shard's latest index
/// snapshot, the blobs read from the store. A shard whose snapshot is
/// missing or stale is named: its mail may not all be in the export.
pub fn export_objects(place: &crate::store::ObjectPlace, opts: &ExportOptions) -> Result<Exported> {
    use crate::store::shards::{ShardState, View};
    let view = View::read(place, "export")?;
    let mut rows = Vec::new();
    let mut account_known = false;
    for (copy, index) in view.indexes() {
        let mut part = index.messages(
            opts.account.as_deref(),
            opts.folder.as_deref(),
            opts.include_expunged,
        )?;
        // Folder ids are each index's own: kept apart per shard.
        for r in &mut part {
            r.folder_id += i64::from(copy.shard.index) << 40;
        }
        rows.extend(part);
        if let Some(a) = &opts.account {
            account_known |= !index.folder_status(Some(a))?.is_empty();
        }
    }
    if rows.is_empty() {
        if let Some(a) = &opts.account
            && !account_known
        {
            bail!("the store {} has no account {a}", place.url);
        }
        bail!("nothing to export (check --folder)");
    }
    let blobs = view.blobs();
    let mut exported = write_out(
        &rows,
        &|h| crate::store::Blobs::get(&blobs, h),
        view.writer_active(),
        opts,
    )?;
    exported.shards_incomplete = view
        .shards
        .iter()
        .filter(|c| matches!(c.state, ShardState::Missing | ShardState::Stale))
        .map(|c| format!("shard {} is {}", c.shard, c.state.as_str()))
        .collect();
    Ok(exported)
}

/// Writes `rows` out, their bytes from `read`.
fn write_out(
    rows: &[Row],
    read: &dyn Fn(&BlobHash) -> Result<Vec<u8>, crate::store::BlobDamaged>,
    writer_active: bool,
    opts: &ExportOptions,
) -> Result<Exported> {
    let mode = opts.mode;
    let not_empty = std::fs::read_dir(&opts.dir).is_ok_and(|mut d| d.next().is_some());
    if not_empty && !opts.update && !opts.force {
        bail!(
            "{} is not empty: --update brings an earlier export there up to date (and removes \
             the files of messages no longer in it), --force writes beside what is there",
            opts.dir.display()
        );
    }
    crate::files::create_dir_all(&opts.dir, mode.dir())
        .with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let mut places: HashMap<i64, PathBuf> = HashMap::new();
    let mut taken = Places::default();
    let mut count = 0u64;
    let mut skipped: Vec<String> = Vec::new();
    let mut mbox: Option<(i64, std::fs::File)> = None;
    let mut mbox_started: HashSet<i64> = HashSet::new();
    let mut written: HashSet<PathBuf> = HashSet::new();
    for r in rows {
        let place = match places.get(&r.folder_id) {
            Some(p) => p.clone(),
            None => {
                let p = taken.claim(&opts.dir, r, opts.format);
                places.insert(r.folder_id, p.clone());
                p
            }
        };
        // A damaged blob is named and skipped; the rest goes on.
        let raw = match read(&BlobHash::from_hex(&r.hash)?) {
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
        match opts.format {
            Format::Maildir => {
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
            Format::Eml => {
                crate::files::create_dir_all(&place, mode.dir())
                    .with_context(|| format!("cannot create {}", place.display()))?;
                let name = format!("{date}-{}-{}.eml", r.uid, &r.hash[..12]);
                let path = place.join(name);
                write_file(&path, &raw, when, mode)?;
                written.insert(path);
            }
            Format::Mbox => {
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
    let removed = if opts.update {
        remove_stale(&opts.dir, &written)?
    } else {
        0
    };
    Ok(Exported {
        dir: opts.dir.clone(),
        exported: count,
        messages: rows.len() as u64,
        folders: places.len() as u64,
        damaged: skipped,
        removed,
        writer_active,
        shards_incomplete: Vec::new(),
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
    fn claim(&mut self, dir: &Path, r: &Row, format: Format) -> PathBuf {
        let parts: Vec<String> = match r.delimiter.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => r.folder.split(d).map(safe_component).collect(),
            None => vec![safe_component(&r.folder)],
        };
        let is_file = matches!(format, Format::Mbox);
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
    mode: OutputMode,
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
            wire_folder: folder.into(),
            uidvalidity: 1,
            expunged: false,
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
            .map(|(i, n)| places.claim(dir, &row(i as i64, n), Format::Mbox))
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
        let a = maildirs.claim(dir, &row(1, "a"), Format::Maildir);
        let child = maildirs.claim(dir, &row(2, "a/b"), Format::Maildir);
        let upper = maildirs.claim(dir, &row(3, "A"), Format::Maildir);
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
}
