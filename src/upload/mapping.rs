//! Folder mapping: which target folder each source folder goes to.
//!
//! For Microsoft 365: special-use attributes first (`\Sent` to Sent Items,
//! ...), then well-known source names (Sent, Sent Messages, INBOX.Trash,
//! Spam, ...) to Exchange's names; every other folder keeps its hierarchy
//! with the target's separator. A component that holds the target's
//! separator gets `_` in its place, and the reserved top-level name `Files`
//! becomes `Files (migrated)`. For any other IMAP target the names stay as
//! they are, with the target's separator.
//!
//! Namespaces: servers keep personal folders under a prefix ("INBOX." on
//! Cyrus and Courier, none on Dovecot and Exchange). The source's prefix is
//! taken off and the target's put on, so `INBOX.Projects` on Courier is
//! `Projects` on Exchange and `Projects` on Dovecot is `INBOX.Projects` on
//! Cyrus; folders below the inbox itself stay below it. A user-edited map
//! file overrides any of it, and a map that sends two folders to one name
//! is an error unless merging was asked for.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::config::TargetKind;
use crate::store::index::FolderRow;

/// Exchange Online's names for the special folders.
const EXCHANGE: &[(&str, &str)] = &[
    ("\\Sent", "Sent Items"),
    ("\\Trash", "Deleted Items"),
    ("\\Junk", "Junk Email"),
    ("\\Drafts", "Drafts"),
    ("\\Archive", "Archive"),
];

/// Source names (any case, at the top or directly under INBOX) that mean a
/// special folder.
const WELL_KNOWN: &[(&str, &str)] = &[
    ("sent", "Sent Items"),
    ("sent items", "Sent Items"),
    ("sent messages", "Sent Items"),
    ("sent mail", "Sent Items"),
    ("sent-mail", "Sent Items"),
    ("trash", "Deleted Items"),
    ("deleted items", "Deleted Items"),
    ("deleted messages", "Deleted Items"),
    ("deleted", "Deleted Items"),
    ("bin", "Deleted Items"),
    ("junk", "Junk Email"),
    ("junk email", "Junk Email"),
    ("junk e-mail", "Junk Email"),
    ("spam", "Junk Email"),
    ("bulk mail", "Junk Email"),
    ("drafts", "Drafts"),
    ("draft", "Drafts"),
    ("archive", "Archive"),
    ("archives", "Archive"),
];

/// Top-level names Exchange keeps for itself, and what they become.
const RESERVED: &[(&str, &str)] = &[("files", "Files (migrated)")];

/// Where one source folder goes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MapEntry {
    pub source_folder_id: i64,
    /// The source folder as people read it.
    pub source: String,
    /// The target folder as people read it (with the target's separator);
    /// `None` when the folder is not uploaded.
    pub target: Option<String>,
    /// Why: `special-use \Sent`, `well-known name`, `same path`, `map file`, ...
    pub why: String,
}

/// Overrides from a map file: account → source folder → target (empty = skip).
#[derive(Debug, Clone, Default)]
pub struct MapFile {
    rows: HashMap<(String, String), (Option<String>, u64)>,
    file: String,
}

impl MapFile {
    /// Reads `Account,SourceFolder,TargetFolder` rows (names as `plan` prints them).
    pub fn load(path: &Path) -> Result<MapFile> {
        let file = path.display().to_string();
        let text = std::fs::read(path).with_context(|| format!("cannot read map file {file}"))?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(&text[..]);
        let mut rows = HashMap::new();
        for (i, record) in reader.records().enumerate() {
            let line = i as u64 + 2;
            let record = record.map_err(|e| anyhow::anyhow!("{file} line {line}: {e}"))?;
            if record.len() != 3 {
                bail!("{file} line {line}: expected Account,SourceFolder,TargetFolder");
            }
            let key = (record[0].trim().to_ascii_lowercase(), record[1].to_string());
            let target = Some(record[2].trim().to_string()).filter(|t| !t.is_empty());
            if rows.insert(key, (target, line)).is_some() {
                bail!(
                    "{file} line {line}: {} / {} is mapped twice",
                    &record[0],
                    &record[1]
                );
            }
        }
        Ok(MapFile { rows, file })
    }

    fn get(&self, account: &str, source: &str) -> Option<&(Option<String>, u64)> {
        self.rows
            .get(&(account.to_ascii_lowercase(), source.to_string()))
    }

    /// Rows that name a folder the store does not know, as errors.
    fn unknown_rows(&self, account: &str, known: &[MapEntry]) -> Vec<String> {
        self.rows
            .iter()
            .filter(|((a, s), _)| {
                *a == account.to_ascii_lowercase() && !known.iter().any(|k| &k.source == s)
            })
            .map(|((_, s), (_, line))| {
                format!(
                    "{} line {line}: no source folder {s:?} for {account}",
                    self.file
                )
            })
            .collect()
    }
}

/// Where a server keeps a mailbox's own folders: under `prefix` (as
/// people read it, "INBOX." or ""), nested with `delimiter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub prefix: String,
    pub delimiter: String,
}

impl Namespace {
    /// No prefix: Dovecot's default, Exchange.
    pub fn flat(delimiter: &str) -> Namespace {
        Namespace {
            prefix: String::new(),
            delimiter: delimiter.to_string(),
        }
    }
}

/// The source's personal prefix: as recorded by the mirror, else "INBOX"
/// and the separator when every folder but the inbox lies below it (how
/// Cyrus and Courier show a mailbox), else none.
/// Each account's folder map, as `plan` shows it and `upload` will use it.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct FolderPlan {
    pub accounts: Vec<AccountMap>,
}

/// One account's folders and where they go.
#[derive(Debug, Clone, Serialize)]
pub struct AccountMap {
    pub account: String,
    pub folders: Vec<MapEntry>,
}

/// Maps every account of `config` from what the store holds (a mirror
/// must have run) into a target of `kind` with `namespace`.
pub fn plan(
    index: &crate::store::Index,
    config: &crate::config::Config,
    kind: TargetKind,
    namespace: &Namespace,
    overrides: Option<&MapFile>,
    merge_folders: bool,
) -> Result<FolderPlan> {
    let mut accounts = Vec::new();
    for account in &config.accounts {
        let id = index.find_account(&account.name)?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} ({}): nothing in the store yet; run `mailferry mirror` first",
                account.name,
                account.origin
            )
        })?;
        let folders: Vec<FolderRow> = index
            .folders(id)?
            .into_iter()
            .filter(|f| f.deleted_at.is_none())
            .collect();
        let prefix = source_prefix(&folders, index.personal_prefix(id)?.as_deref());
        let folders = map_account(
            &account.name,
            &folders,
            &prefix,
            kind,
            namespace,
            overrides,
            merge_folders,
        )?;
        accounts.push(AccountMap {
            account: account.name.clone(),
            folders,
        });
    }
    Ok(FolderPlan { accounts })
}

impl FolderPlan {
    /// Writes the plan as a map file (Account,SourceFolder,TargetFolder) to
    /// edit and pass to `upload --map`.
    pub fn write_map(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_path(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        w.write_record(["Account", "SourceFolder", "TargetFolder"])?;
        for a in &self.accounts {
            for e in &a.folders {
                w.write_record([
                    a.account.as_str(),
                    &e.source,
                    e.target.as_deref().unwrap_or(""),
                ])?;
            }
        }
        w.flush()?;
        Ok(())
    }
}

pub fn source_prefix(folders: &[FolderRow], recorded: Option<&str>) -> String {
    if let Some(p) = recorded {
        return p.to_string();
    }
    let mut below = 0;
    for f in folders {
        let Some(d) = f.delimiter.as_deref().filter(|d| !d.is_empty()) else {
            return String::new();
        };
        if f.display_name.eq_ignore_ascii_case("INBOX") {
            continue;
        }
        if !starts_with_inbox(&f.display_name, d) {
            return String::new();
        }
        below += 1;
    }
    match folders.iter().find_map(|f| f.delimiter.as_deref()) {
        Some(d) if below > 0 => format!("INBOX{d}"),
        _ => String::new(),
    }
}

fn starts_with_inbox(name: &str, delimiter: &str) -> bool {
    name.len() > 5 + delimiter.len()
        && name.is_char_boundary(5)
        && name[..5].eq_ignore_ascii_case("INBOX")
        && name[5..].starts_with(delimiter)
}

/// Maps an account's source folders, from the source's personal prefix
/// (see [`source_prefix`]) to the target's namespace.
pub fn map_account(
    account: &str,
    folders: &[FolderRow],
    source_prefix: &str,
    kind: TargetKind,
    target: &Namespace,
    overrides: Option<&MapFile>,
    allow_merge: bool,
) -> Result<Vec<MapEntry>> {
    let mut entries: Vec<MapEntry> = folders
        .iter()
        .map(|f| {
            let (target, why) = default_target(f, kind, source_prefix, target);
            MapEntry {
                source_folder_id: f.id,
                source: f.display_name.clone(),
                target: Some(target),
                why,
            }
        })
        .collect();
    if let Some(map) = overrides {
        let unknown = map.unknown_rows(account, &entries);
        if !unknown.is_empty() {
            bail!("{}", unknown.join("; "));
        }
        for e in &mut entries {
            if let Some((target, _)) = map.get(account, &e.source) {
                e.target = target.clone();
                e.why = "map file".to_string();
            }
        }
    }
    if !allow_merge {
        let mut seen: HashMap<String, &MapEntry> = HashMap::new();
        for e in &entries {
            let Some(t) = &e.target else { continue };
            // Exchange folder names ignore case.
            let key = if kind == TargetKind::M365 {
                t.to_lowercase()
            } else {
                t.clone()
            };
            if let Some(first) = seen.insert(key, e) {
                bail!(
                    "{account}: folders {:?} and {:?} would both go to {t:?}; edit the map \
                     (plan --write-map) or pass --merge-folders to upload them into one",
                    first.source,
                    e.source
                );
            }
        }
    }
    Ok(entries)
}

/// Where `f` goes by default. With no prefix on either side this is the
/// mapping of stores from before namespaces were read (see
/// [`legacy_target`]).
pub fn default_target(
    f: &FolderRow,
    kind: TargetKind,
    source_prefix: &str,
    target: &Namespace,
) -> (String, String) {
    let delimiter = target.delimiter.as_str();
    let source_delim = f.delimiter.as_deref().unwrap_or("");
    let name = f.display_name.as_str();
    if name.eq_ignore_ascii_case("INBOX") {
        return ("INBOX".to_string(), "inbox".to_string());
    }
    // The part of the name below the source's prefix; a folder below the
    // inbox that is not the namespace's stays below the inbox.
    let prefixed = !source_prefix.is_empty()
        && name.len() > source_prefix.len()
        && name.is_char_boundary(source_prefix.len())
        && name[..source_prefix.len()].eq_ignore_ascii_case(source_prefix);
    let (under_inbox, relative) = if prefixed {
        (false, &name[source_prefix.len()..])
    } else if !source_delim.is_empty() && starts_with_inbox(name, source_delim) {
        (true, &name[5 + source_delim.len()..])
    } else {
        (false, name)
    };
    let parts: Vec<&str> = if source_delim.is_empty() {
        vec![relative]
    } else {
        relative.split(source_delim).collect()
    };
    if kind == TargetKind::M365 {
        for attr in f.attributes.split_whitespace() {
            if let Some((_, name)) = EXCHANGE.iter().find(|(a, _)| a.eq_ignore_ascii_case(attr)) {
                return (name.to_string(), format!("special-use {attr}"));
            }
        }
        // "Sent" at the top, or "INBOX.Sent" on servers that keep all
        // folders under INBOX.
        let leaf = match parts.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        if let Some(leaf) = leaf
            && let Some((_, name)) = WELL_KNOWN
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(leaf.trim()))
        {
            return (name.to_string(), "well-known name".to_string());
        }
    }
    let mut why = "same path".to_string();
    let cleaned: Vec<String> = parts
        .iter()
        .map(|p| {
            let mut c = if delimiter.is_empty() {
                p.to_string()
            } else {
                p.replace(delimiter, "_")
            };
            if c != *p {
                why = format!("{delimiter:?} in a name became _");
            }
            if c.trim().is_empty() {
                c = "_".to_string();
                why = "empty name became _".to_string();
            }
            c
        })
        .collect();
    let mut joined = cleaned.join(delimiter);
    if under_inbox {
        joined = format!("INBOX{delimiter}{joined}");
    } else if !target.prefix.is_empty() {
        joined = format!("{}{joined}", target.prefix);
        if why == "same path" {
            why = format!("under the target's {:?}", target.prefix);
        }
    } else if prefixed && why == "same path" {
        why = format!("without the source's {source_prefix:?}");
    }
    if kind == TargetKind::M365
        && !under_inbox
        && target.prefix.is_empty()
        && cleaned.len() == 1
        && let Some((_, renamed)) = RESERVED
            .iter()
            .find(|(r, _)| r.eq_ignore_ascii_case(&cleaned[0]))
    {
        joined = renamed.to_string();
        why = "reserved at the target".to_string();
    }
    (joined, why)
}

/// What stores from before namespaces were read mapped `f` to: the same
/// path with the target's separator, whatever the prefixes. A folder
/// uploaded there stays there.
pub fn legacy_target(f: &FolderRow, kind: TargetKind, delimiter: &str) -> String {
    default_target(f, kind, "", &Namespace::flat(delimiter)).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(id: i64, name: &str, delim: &str, attrs: &str) -> FolderRow {
        FolderRow {
            id,
            wire_name: name.to_string(),
            display_name: name.to_string(),
            delimiter: Some(delim.to_string()),
            attributes: attrs.to_string(),
            uidvalidity: None,
            uidnext: None,
            highestmodseq: None,
            source_count: None,
            synced_uid: 0,
            deleted_at: None,
        }
    }

    fn targets(entries: &[MapEntry]) -> Vec<(String, Option<String>)> {
        entries
            .iter()
            .map(|e| (e.source.clone(), e.target.clone()))
            .collect()
    }

    #[test]
    fn exchange_names_come_from_special_use_then_well_known_names() {
        let folders = [
            folder(1, "INBOX", ".", ""),
            folder(2, "Gesendet", ".", "\\Sent"),
            folder(3, "INBOX.Trash", ".", ""),
            folder(4, "Spam", ".", ""),
            folder(5, "Projects.2024.Q1", ".", ""),
            folder(6, "Files", ".", ""),
            folder(7, "a/b", ".", ""),
            folder(8, "Work.Sent", ".", ""),
        ];
        let m = map_account(
            "a@x",
            &folders,
            "",
            TargetKind::M365,
            &Namespace::flat("/"),
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            targets(&m),
            vec![
                ("INBOX".into(), Some("INBOX".into())),
                ("Gesendet".into(), Some("Sent Items".into())),
                ("INBOX.Trash".into(), Some("Deleted Items".into())),
                ("Spam".into(), Some("Junk Email".into())),
                ("Projects.2024.Q1".into(), Some("Projects/2024/Q1".into())),
                ("Files".into(), Some("Files (migrated)".into())),
                ("a/b".into(), Some("a_b".into())),
                ("Work.Sent".into(), Some("Work/Sent".into())),
            ]
        );
    }

    #[test]
    fn a_generic_target_keeps_the_names() {
        let folders = [
            folder(1, "Sent", "/", "\\Sent"),
            folder(2, "Files", "/", ""),
        ];
        let m = map_account(
            "a@x",
            &folders,
            "",
            TargetKind::Imap,
            &Namespace::flat("."),
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            targets(&m),
            vec![
                ("Sent".into(), Some("Sent".into())),
                ("Files".into(), Some("Files".into()))
            ]
        );
    }

    #[test]
    fn two_folders_to_one_name_is_an_error_unless_merging() {
        let folders = [
            folder(1, "Sent", "/", ""),
            folder(2, "Sent Messages", "/", ""),
        ];
        let err = map_account(
            "a@x",
            &folders,
            "",
            TargetKind::M365,
            &Namespace::flat("/"),
            None,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("Sent Messages") && err.contains("Sent Items"),
            "{err}"
        );
        assert!(
            map_account(
                "a@x",
                &folders,
                "",
                TargetKind::M365,
                &Namespace::flat("/"),
                None,
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn a_map_file_overrides_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.csv");
        std::fs::write(
            &path,
            "Account,SourceFolder,TargetFolder\na@x,Sent,Old Sent\na@x,Junk,\n",
        )
        .unwrap();
        let map = MapFile::load(&path).unwrap();
        let folders = [folder(1, "Sent", "/", ""), folder(2, "Junk", "/", "")];
        let m = map_account(
            "a@x",
            &folders,
            "",
            TargetKind::M365,
            &Namespace::flat("/"),
            Some(&map),
            false,
        )
        .unwrap();
        assert_eq!(
            targets(&m),
            vec![
                ("Sent".into(), Some("Old Sent".into())),
                ("Junk".into(), None)
            ]
        );
        std::fs::write(&path, "Account,SourceFolder,TargetFolder\na@x,Nope,X\n").unwrap();
        let map = MapFile::load(&path).unwrap();
        let err = map_account(
            "a@x",
            &folders,
            "",
            TargetKind::M365,
            &Namespace::flat("/"),
            Some(&map),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("map.csv line 2") && err.contains("Nope"),
            "{err}"
        );
    }

    #[test]
    fn the_source_prefix_comes_off_and_the_targets_goes_on() {
        // Courier or Cyrus: everything below INBOX.
        let courier = [
            folder(1, "INBOX", ".", ""),
            folder(2, "INBOX.Sent", ".", ""),
            folder(3, "INBOX.Projects", ".", ""),
            folder(4, "INBOX.Projects.2024", ".", ""),
        ];
        assert_eq!(source_prefix(&courier, None), "INBOX.");
        assert_eq!(source_prefix(&courier, Some("")), "");
        let m = map_account(
            "a@x",
            &courier,
            "INBOX.",
            TargetKind::M365,
            &Namespace::flat("/"),
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            targets(&m),
            vec![
                ("INBOX".into(), Some("INBOX".into())),
                ("INBOX.Sent".into(), Some("Sent Items".into())),
                ("INBOX.Projects".into(), Some("Projects".into())),
                ("INBOX.Projects.2024".into(), Some("Projects/2024".into())),
            ]
        );
        // Dovecot's flat layout into Cyrus: below the target's INBOX.;
        // a folder below the inbox stays below it, once.
        let dovecot = [
            folder(1, "INBOX", "/", ""),
            folder(2, "Archive", "/", ""),
            folder(3, "Archive/2023", "/", ""),
            folder(4, "INBOX/Lists", "/", ""),
        ];
        assert_eq!(source_prefix(&dovecot, None), "");
        let cyrus = Namespace {
            prefix: "INBOX.".into(),
            delimiter: ".".into(),
        };
        let m = map_account("a@x", &dovecot, "", TargetKind::Imap, &cyrus, None, false).unwrap();
        assert_eq!(
            targets(&m),
            vec![
                ("INBOX".into(), Some("INBOX".into())),
                ("Archive".into(), Some("INBOX.Archive".into())),
                ("Archive/2023".into(), Some("INBOX.Archive.2023".into())),
                ("INBOX/Lists".into(), Some("INBOX.Lists".into())),
            ]
        );
        // Courier into Cyrus: prefix for prefix.
        let m = map_account(
            "a@x",
            &courier,
            "INBOX.",
            TargetKind::Imap,
            &cyrus,
            None,
            false,
        )
        .unwrap();
        assert_eq!(m[2].target.as_deref(), Some("INBOX.Projects"));
        // What older stores uploaded to stays reachable.
        assert_eq!(
            legacy_target(&courier[2], TargetKind::M365, "/"),
            "INBOX/Projects"
        );
    }
}
