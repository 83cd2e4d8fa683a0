//! Importing a user's contacts, calendars and tasks (vCard, Outlook-style
//! CSV and iCalendar files) into the store, beside the mailbox's mail: the file is kept
//! whole as a blob, each item as a blob of its own text, and what could
//! not be read is named and recorded. Importing the same file again adds
//! nothing; a changed item is updated, never added twice.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::ItemProblem;
use super::calendar::read_ics;
use super::cards::read_vcards;
use super::contacts_csv::read_contacts_csv;
use crate::store::Store;
use crate::store::items::{ItemChange, ItemKind, NewItem, NewProblem};

/// What importing one file did.
#[derive(Debug, Serialize)]
pub struct FileImported {
    pub file: String,
    pub contacts: u64,
    pub events: u64,
    pub tasks: u64,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// What could not be read; the rest of the file was imported.
    pub problems: Vec<ItemProblem>,
}

impl std::fmt::Display for FileImported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.problems {
            writeln!(f, "not imported: {p}")?;
        }
        let mut what = Vec::new();
        for (n, one, many) in [
            (self.contacts, "contact", "contacts"),
            (self.events, "event", "events"),
            (self.tasks, "task", "tasks"),
        ] {
            if n > 0 {
                what.push(format!("{n} {}", if n == 1 { one } else { many }));
            }
        }
        writeln!(
            f,
            "{}: {} ({} added, {} updated, {} unchanged){}",
            self.file,
            if what.is_empty() {
                "no items".to_string()
            } else {
                what.join(", ")
            },
            self.added,
            self.updated,
            self.unchanged,
            if self.problems.is_empty() {
                String::new()
            } else {
                format!("; {} problems, named above", self.problems.len())
            }
        )
    }
}

/// Does `path` name a file of contacts or calendars (by its extension)?
pub fn is_item_file(path: &Path) -> bool {
    kind_of(path).is_some()
}

enum FileKind {
    Cards,
    ContactsCsv,
    Calendar,
}

fn kind_of(path: &Path) -> Option<FileKind> {
    let ext = path.extension()?.to_string_lossy().to_ascii_lowercase();
    match ext.as_str() {
        "vcf" | "vcard" => Some(FileKind::Cards),
        "csv" => Some(FileKind::ContactsCsv),
        "ics" | "ical" | "ifb" => Some(FileKind::Calendar),
        _ => None,
    }
}

/// Imports the contacts, events and tasks of the file at `path` into
/// `account`'s mailbox in `store`.
pub fn import_items(store: &Store, account: &str, path: &Path) -> Result<FileImported> {
    let Some(kind) = kind_of(path) else {
        bail!(
            "{} is not a vCard (.vcf), contacts CSV (.csv) or iCalendar (.ics) file",
            path.display()
        );
    };
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    // A file's own name (without extension) is its collection unless it
    // names one itself (X-WR-CALNAME).
    let stem = path.file_stem().map_or_else(
        || "Imported".to_string(),
        |s| s.to_string_lossy().to_string(),
    );
    // (kind, collection, uid, name, text)
    let mut read: Vec<(ItemKind, String, String, String, String)> = Vec::new();
    let problems = match kind {
        FileKind::Cards => {
            let (cards, problems) = read_vcards(&bytes, &file);
            for c in cards {
                read.push((ItemKind::Contact, stem.clone(), c.uid, c.name, c.text));
            }
            problems
        }
        FileKind::ContactsCsv => {
            let (cards, problems) = read_contacts_csv(&bytes, &file);
            for c in cards {
                read.push((ItemKind::Contact, stem.clone(), c.uid, c.name, c.text));
            }
            problems
        }
        FileKind::Calendar => {
            let (items, problems) = read_ics(&bytes, &file);
            for i in items {
                let collection = i.calendar.clone().unwrap_or_else(|| stem.clone());
                read.push((i.kind, collection, i.uid, i.summary, i.text));
            }
            problems
        }
    };
    let file_blob = store.write_blob(&bytes)?;
    let blobs = read
        .iter()
        .map(|(_, _, _, _, text)| store.write_blob(text.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    let items: Vec<NewItem> = read
        .iter()
        .zip(&blobs)
        .map(|((kind, collection, uid, name, text), blob)| NewItem {
            kind: *kind,
            collection,
            uid,
            name,
            blob,
            size: text.len() as u64,
        })
        .collect();
    let recorded: Vec<NewProblem> = problems
        .iter()
        .map(|p| NewProblem {
            line: p.line,
            item: p.item.as_deref(),
            kind: p.kind,
            detail: &p.problem,
        })
        .collect();
    let index = store.index();
    let account_id = index.item_account_id(account)?;
    let changes = index.record_item_file(
        account_id,
        &file,
        &file_blob,
        bytes.len() as u64,
        &items,
        &recorded,
    )?;
    let count = |k: ItemKind| read.iter().filter(|r| r.0 == k).count() as u64;
    let changed = |c: ItemChange| changes.iter().filter(|x| **x == c).count() as u64;
    Ok(FileImported {
        file,
        contacts: count(ItemKind::Contact),
        events: count(ItemKind::Event),
        tasks: count(ItemKind::Task),
        added: changed(ItemChange::Added),
        updated: changed(ItemChange::Updated),
        unchanged: changed(ItemChange::Unchanged),
        problems,
    })
}
