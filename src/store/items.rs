//! Contacts, calendar events and tasks in the index (schema 8): the files
//! they came from, the items, and what could not be read.

use anyhow::Result;
use rusqlite::{OptionalExtension as _, params};

use super::index::{BlobMeta, NewBlob, insert_blob, now};
use super::{BlobHash, BlobWrite, Index};

/// What an item is, and what it becomes at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// A contact (vCard).
    Contact,
    /// A calendar event (VEVENT): one, or a series with its exceptions.
    Event,
    /// A task (VTODO).
    Task,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Contact => "contact",
            ItemKind::Event => "event",
            ItemKind::Task => "task",
        }
    }
}

/// What went wrong with an item of a file (stored with the words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// Text outside any card or calendar.
    OutsideText,
    /// A line the parser could not read, skipped; the item was kept.
    UnreadableLine,
    /// An item that ends before its END line.
    CutShort,
    /// Nothing could be read as an item.
    NotReadable,
    /// A time zone neither defined in the file nor known by name.
    UnknownZone,
    /// A recurrence rule that cannot be read, or has a part no standard defines.
    UnreadableRule,
    /// A kind of item Microsoft 365 has no counterpart for (VJOURNAL, ...).
    NoCounterpart,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::OutsideText => "outside-text",
            ProblemKind::UnreadableLine => "unreadable-line",
            ProblemKind::CutShort => "cut-short",
            ProblemKind::NotReadable => "not-readable",
            ProblemKind::UnknownZone => "unknown-zone",
            ProblemKind::UnreadableRule => "unreadable-rule",
            ProblemKind::NoCounterpart => "no-counterpart",
        }
    }
}

/// One item as read from a file, to record.
pub struct NewItem<'a> {
    pub kind: ItemKind,
    pub collection: &'a str,
    pub uid: &'a str,
    pub name: &'a str,
    /// Its text, stored as a blob.
    pub blob: &'a BlobWrite,
    pub size: u64,
}

/// One problem of a file, to record.
pub struct NewProblem<'a> {
    pub line: usize,
    pub item: Option<&'a str>,
    pub kind: ProblemKind,
    pub detail: &'a str,
}

/// What recording an item did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemChange {
    Added,
    /// The item was there with other text: it now has this one.
    Updated,
    Unchanged,
}

/// An item as the index holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredItem {
    pub kind: ItemKind,
    pub collection: String,
    pub uid: String,
    pub name: String,
    #[serde(skip)]
    pub blob: BlobHash,
}

/// How many items of each kind an account holds, and how many could not
/// be read from its files.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ItemCounts {
    pub contacts: u64,
    pub events: u64,
    pub tasks: u64,
    pub problems: u64,
}

impl ItemCounts {
    pub fn is_empty(&self) -> bool {
        *self == ItemCounts::default()
    }

    /// Holds contacts, events or tasks to upload (not only problems).
    pub fn has_items(&self) -> bool {
        self.contacts + self.events + self.tasks > 0
    }
}

impl Index {
    /// Every account that holds items (or problems), with its counts.
    pub fn item_counts(&self) -> Result<Vec<(String, ItemCounts)>> {
        let mut stmt = self.connection().prepare(
            "SELECT a.name,
                    (SELECT COUNT(*) FROM items i WHERE i.account_id = a.id AND i.kind = 'contact'),
                    (SELECT COUNT(*) FROM items i WHERE i.account_id = a.id AND i.kind = 'event'),
                    (SELECT COUNT(*) FROM items i WHERE i.account_id = a.id AND i.kind = 'task'),
                    (SELECT COUNT(*) FROM item_problems p JOIN item_files f ON f.id = p.file_id
                     WHERE f.account_id = a.id)
             FROM accounts a
             WHERE EXISTS (SELECT 1 FROM item_files f WHERE f.account_id = a.id)
             ORDER BY a.name",
        )?;
        let rows = stmt.query_map([], |r| {
            let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok((
                r.get::<_, String>(0)?,
                ItemCounts {
                    contacts: n(1)?,
                    events: n(2)?,
                    tasks: n(3)?,
                    problems: n(4)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The account an import of items goes to: the mailbox's own row if
    /// the store knows it, else a new one that a later mirror fills (it
    /// names no source host yet).
    pub fn item_account_id(&self, name: &str) -> Result<i64> {
        if let Some(id) = self.find_account(name)? {
            return Ok(id);
        }
        self.connection().execute(
            "INSERT INTO accounts (name, host, username, created_at) VALUES (?1, '', '', ?2)",
            params![name, now()],
        )?;
        Ok(self.connection().last_insert_rowid())
    }

    /// Records a file of items (its blob written already) with what was
    /// read from it, in one transaction; the file's problems replace those
    /// of an earlier import of the same bytes. Returns what each item did.
    pub fn record_item_file(
        &self,
        account_id: i64,
        name: &str,
        file: &BlobWrite,
        file_size: u64,
        items: &[NewItem],
        problems: &[NewProblem],
    ) -> Result<Vec<ItemChange>> {
        let tx = self.connection().unchecked_transaction()?;
        let t = now();
        let add_blob = |w: &BlobWrite, size: u64| -> Result<()> {
            if let Some(stored_size) = w.stored_size {
                insert_blob(
                    &tx,
                    &NewBlob {
                        hash: w.hash,
                        size,
                        stored_size,
                        meta: BlobMeta::default(),
                    },
                    t,
                )?;
            }
            Ok(())
        };
        add_blob(file, file_size)?;
        tx.execute(
            "INSERT INTO item_files (account_id, name, blob_hash, imported_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account_id, blob_hash) DO UPDATE SET name = excluded.name,
                imported_at = excluded.imported_at",
            params![account_id, name, file.hash.to_hex(), t],
        )?;
        let file_id: i64 = tx.query_row(
            "SELECT id FROM item_files WHERE account_id = ?1 AND blob_hash = ?2",
            params![account_id, file.hash.to_hex()],
            |r| r.get(0),
        )?;
        let mut changes = Vec::with_capacity(items.len());
        for item in items {
            add_blob(item.blob, item.size)?;
            let before: Option<String> = tx
                .query_row(
                    "SELECT blob_hash FROM items
                     WHERE account_id = ?1 AND kind = ?2 AND collection = ?3 AND uid = ?4",
                    params![account_id, item.kind.as_str(), item.collection, item.uid],
                    |r| r.get(0),
                )
                .optional()?;
            let hash = item.blob.hash.to_hex();
            let change = match before {
                None => ItemChange::Added,
                Some(h) if h == hash => ItemChange::Unchanged,
                Some(_) => ItemChange::Updated,
            };
            tx.execute(
                "INSERT INTO items (account_id, kind, collection, uid, blob_hash, name, file_id,
                                    updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (account_id, kind, collection, uid) DO UPDATE SET
                    blob_hash = excluded.blob_hash, name = excluded.name,
                    file_id = excluded.file_id,
                    updated_at = CASE WHEN items.blob_hash = excluded.blob_hash
                                 THEN items.updated_at ELSE excluded.updated_at END",
                params![
                    account_id,
                    item.kind.as_str(),
                    item.collection,
                    item.uid,
                    hash,
                    item.name,
                    file_id,
                    t
                ],
            )?;
            changes.push(change);
        }
        tx.execute("DELETE FROM item_problems WHERE file_id = ?1", [file_id])?;
        for p in problems {
            tx.execute(
                "INSERT INTO item_problems (file_id, line, item, kind, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![file_id, p.line as i64, p.item, p.kind.as_str(), p.detail],
            )?;
        }
        tx.commit()?;
        Ok(changes)
    }

    /// The items of `account`, by kind, collection and name.
    pub fn items(&self, account: &str) -> Result<Vec<StoredItem>> {
        let mut stmt = self.connection().prepare(
            "SELECT i.kind, i.collection, i.uid, i.name, i.blob_hash
             FROM items i JOIN accounts a ON a.id = i.account_id
             WHERE a.name = ?1 COLLATE NOCASE
             ORDER BY i.kind, i.collection, i.name, i.uid",
        )?;
        let rows = stmt.query_map([account], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, collection, uid, name, blob) = row?;
            let kind = [ItemKind::Contact, ItemKind::Event, ItemKind::Task]
                .into_iter()
                .find(|k| k.as_str() == kind)
                .ok_or_else(|| {
                    anyhow::anyhow!("the index holds an item of unknown kind {kind:?}")
                })?;
            out.push(StoredItem {
                kind,
                collection,
                uid,
                name,
                blob: BlobHash::from_hex(&blob)?,
            });
        }
        Ok(out)
    }
}
