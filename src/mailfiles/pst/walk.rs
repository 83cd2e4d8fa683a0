//! The walk through a .pst's folders: each item read, mail handed to the
//! store folder by folder, contacts, events and tasks gathered and then
//! recorded as the file's items.

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context as _, Result};
use outlook_pst::messaging::folder::Folder;
use sha2::{Digest as _, Sha256};

use super::source::{NamedIds, OutlookFile, PSETID_MEETING, Props, Tag, row_ids, rows};
use super::{PstImported, PstParts, PstProblem, calendar, contact, guarded, mail};
use crate::mailfiles::Found;
use crate::mailfiles::calendar::read_ics;
use crate::mailfiles::cards::read_vcards;
use crate::mailfiles::import::import;
use crate::store::Store;
use crate::store::items::{ItemChange, ItemKind, NewItem, NewProblem, ProblemKind};

/// How problems name the top of the personal folders.
pub const TOP: &str = "(top of the file)";

/// Mail is handed to the store in pieces of about this size, so memory
/// stays bounded whatever the size of a folder.
const CHUNK_BYTES: usize = 32 << 20;

/// Where the walk through the file's folders is.
pub struct Walk<'a> {
    store: &'a Store,
    path: &'a Path,
    account: &'a str,
    pst: &'a OutlookFile,
    names: &'a NamedIds,
    done: PstImported,
    with_mail: bool,
    /// (kind, collection, uid, name, text) read so far.
    items: Vec<(ItemKind, String, String, String, String)>,
    uids: HashSet<(ItemKind, String, String)>,
    mail_folders: HashSet<String>,
}

/// What an item is, by its message class.
enum Class {
    Mail,
    Contact,
    List,
    Event,
    Task,
}

fn class_of(class: &str) -> Class {
    let is = |prefix: &str| {
        class.eq_ignore_ascii_case(prefix)
            || class
                .get(..prefix.len() + 1)
                .is_some_and(|head| head.eq_ignore_ascii_case(&format!("{prefix}.")))
    };
    if is("IPM.Contact") {
        Class::Contact
    } else if is("IPM.DistList") {
        Class::List
    } else if is("IPM.Appointment") {
        Class::Event
    } else if is("IPM.Task") {
        Class::Task
    } else {
        Class::Mail
    }
}

impl<'a> Walk<'a> {
    pub fn new(
        store: &'a Store,
        path: &'a Path,
        account: &'a str,
        pst: &'a OutlookFile,
        names: &'a NamedIds,
        parts: PstParts,
    ) -> Walk<'a> {
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().to_string(),
        );
        Walk {
            store,
            path,
            account,
            pst,
            names,
            done: PstImported {
                file,
                account: account.to_string(),
                ..PstImported::default()
            },
            with_mail: parts == PstParts::Everything,
            items: Vec::new(),
            uids: HashSet::new(),
            mail_folders: HashSet::new(),
        }
    }

    pub fn problem(
        &mut self,
        folder: &str,
        item: Option<String>,
        kind: ProblemKind,
        problem: String,
    ) {
        self.done.problems.push(PstProblem {
            file: self.done.file.clone(),
            folder: folder.to_string(),
            item,
            kind,
            problem,
        });
    }

    /// Imports `folder` (at `path` below the top) and the folders in it.
    pub fn folder(&mut self, folder: Rc<dyn Folder>, path: Vec<String>) -> Result<()> {
        let props = folder.properties();
        let fp = Props::of(props, self.names);
        // Mail at the very top (rare) goes to INBOX, as in a Maildir's root.
        let name = if path.is_empty() {
            "INBOX".to_string()
        } else {
            path.join("/")
        };
        let place = if path.is_empty() { TOP } else { name.as_str() };
        let collection = path.last().cloned().unwrap_or_else(|| "Outlook".into());
        // PidTagContainerClass: folders of contacts, calendars, tasks, notes
        // and journals are no mail folders (unless mail is found in them).
        let mail_folder = !path.is_empty()
            && fp.text(Tag::Id(0x3613)).is_none_or(|c| {
                ![
                    "IPF.Appointment",
                    "IPF.Contact",
                    "IPF.Task",
                    "IPF.StickyNote",
                    "IPF.Journal",
                ]
                .iter()
                .any(|k| c.starts_with(k))
            });
        let mut chunk: Vec<Found> = Vec::new();
        let mut chunk_bytes = 0;
        let mut mail_seen = false;
        for row in rows(folder.contents_table()) {
            // The contents table names an item even when it cannot be opened.
            let listed = mail::subject(&Props::of(&row, self.names))
                .filter(|s| !s.trim().is_empty())
                .map(|s| format!("{s:?}"));
            if let Some(found) = self.item(row.id, place, &collection, listed) {
                mail_seen = true;
                chunk_bytes += found.bytes.len();
                chunk.push(found);
                if chunk_bytes > CHUNK_BYTES {
                    self.store_mail(&name, &mut chunk)?;
                    chunk_bytes = 0;
                }
            }
        }
        if self.with_mail && (mail_folder || mail_seen) {
            self.store_mail(&name, &mut chunk)?;
        }
        for node in row_ids(folder.hierarchy_table()) {
            let sub = match guarded(|| self.pst.folder(node)) {
                Ok(sub) => sub,
                Err(e) => {
                    self.problem(
                        place,
                        Some(format!("folder node {node:#x}")),
                        ProblemKind::NotReadable,
                        format!("a folder that cannot be read ({e}); skipped with what is in it"),
                    );
                    continue;
                }
            };
            let sub_name = Props::of(sub.properties(), self.names)
                .text(Tag::Id(0x3001))
                .unwrap_or_else(|| format!("Folder {node:#x}"));
            let mut sub_path = path.clone();
            // The store's folder names use / between levels.
            sub_path.push(sub_name.replace('/', "_"));
            self.folder(sub, sub_path)?;
        }
        Ok(())
    }

    /// Reads the item at `node`: mail is returned, anything else kept
    /// among the items; what cannot be read becomes a problem.
    fn item(
        &mut self,
        node: u32,
        folder: &str,
        collection: &str,
        listed: Option<String>,
    ) -> Option<Found> {
        let opened = match guarded(|| self.pst.message(node)) {
            Ok(m) => m,
            Err(e) => {
                self.problem(
                    folder,
                    Some(listed.map_or_else(
                        || format!("item node {node:#x}"),
                        |s| format!("{s} (node {node:#x})"),
                    )),
                    ProblemKind::NotReadable,
                    format!("an item that cannot be read ({e}); skipped"),
                );
                return None;
            }
        };
        let names = self.names;
        let p = Props::of(opened.message().properties(), names);
        let class = p.text(Tag::Id(0x001A)).unwrap_or_default();
        let label = mail::subject(&p)
            .filter(|s| !s.trim().is_empty())
            .map_or_else(|| format!("item node {node:#x}"), |s| format!("{s:?}"));
        let search_key = p.bytes(Tag::Id(0x300B)).map(hex::encode_upper);
        let uid = search_key.unwrap_or_else(|| format!("pst-node-{node:x}"));
        let (kind, built) = match class_of(&class) {
            Class::Mail if !self.with_mail => {
                self.done.messages_left += 1;
                return None;
            }
            Class::Mail => {
                let mut losses = Vec::new();
                let built = guarded(|| Ok(mail::mail(&opened, names, &mut losses)));
                for loss in losses {
                    self.problem(
                        folder,
                        Some(label.clone()),
                        ProblemKind::NotReadable,
                        format!("{loss}; the message was imported without it"),
                    );
                }
                return match built {
                    Ok(m) => {
                        self.done.messages += 1;
                        Some(Found {
                            bytes: m.bytes,
                            flags: m.flags,
                            date: m.date,
                        })
                    }
                    Err(e) => {
                        self.problem(
                            folder,
                            Some(label),
                            ProblemKind::NotReadable,
                            format!("a message that cannot be read ({e}); skipped"),
                        );
                        None
                    }
                };
            }
            Class::Contact => (
                ItemKind::Contact,
                guarded(|| Ok((contact::contact(&p, &opened, &uid), None))),
            ),
            Class::List => (
                ItemKind::Contact,
                guarded(|| {
                    let (text, members) = contact::distribution_list(&p, &uid);
                    self.done.lists += 1;
                    Ok((
                        text,
                        (members == 0).then(|| {
                            "a distribution list whose members could not be read".to_string()
                        }),
                    ))
                }),
            ),
            Class::Event => {
                // PidLidCleanGlobalObjectId, else PidLidGlobalObjectId: the
                // meeting's own UID, which Outlook exports as iCalendar UID.
                let uid = [0x0023, 0x0003]
                    .into_iter()
                    .find_map(|lid| p.bytes(Tag::Named(PSETID_MEETING, lid)))
                    .map_or(uid.clone(), hex::encode_upper);
                let msg = opened.message();
                let built =
                    guarded(|| calendar::appointment(&p, msg, &uid).map_err(std::io::Error::other));
                (ItemKind::Event, built)
            }
            Class::Task => (ItemKind::Task, guarded(|| Ok(calendar::task(&p, &uid)))),
        };
        match built {
            Ok((text, loss)) => {
                if let Some(loss) = loss {
                    let kind = if kind == ItemKind::Contact {
                        ProblemKind::NotReadable
                    } else {
                        ProblemKind::UnreadableRule
                    };
                    self.problem(folder, Some(label.clone()), kind, loss);
                }
                self.keep(kind, collection, folder, &label, node, &text);
            }
            Err(e) => self.problem(
                folder,
                Some(label),
                ProblemKind::NotReadable,
                format!("an item that cannot be read ({e}); skipped"),
            ),
        }
        None
    }

    /// Keeps a contact, event or task as the .vcf and .ics readers read it.
    fn keep(
        &mut self,
        kind: ItemKind,
        collection: &str,
        folder: &str,
        label: &str,
        node: u32,
        text: &str,
    ) {
        let file = self.done.file.clone();
        let (read, problems): (Vec<(String, String, String)>, _) = match kind {
            ItemKind::Contact => {
                let (cards, problems) = read_vcards(text.as_bytes(), &file);
                (
                    cards.into_iter().map(|c| (c.uid, c.name, c.text)).collect(),
                    problems,
                )
            }
            ItemKind::Event | ItemKind::Task => {
                let (items, problems) = read_ics(text.as_bytes(), &file);
                let read = items
                    .into_iter()
                    .filter(|i| i.kind == kind)
                    .map(|i| (i.uid, i.summary, i.text))
                    .collect();
                (read, problems)
            }
        };
        for p in problems {
            self.problem(folder, Some(label.to_string()), p.kind, p.problem);
        }
        if read.is_empty() {
            self.problem(
                folder,
                Some(label.to_string()),
                ProblemKind::NotReadable,
                format!(
                    "its {} could not be written as text; skipped",
                    kind.as_str()
                ),
            );
        }
        for (uid, name, text) in read {
            // A copy of an item in the same folder shares its search key.
            let uid = if self
                .uids
                .insert((kind, collection.to_string(), uid.clone()))
            {
                uid
            } else {
                format!("{uid}-{node:x}")
            };
            match kind {
                ItemKind::Contact => self.done.contacts += 1,
                ItemKind::Event => self.done.events += 1,
                ItemKind::Task => self.done.tasks += 1,
            }
            self.items
                .push((kind, collection.to_string(), uid, name, text));
        }
    }

    /// Hands the mail read so far in folder `name` to the store (which
    /// makes the folder, even when there is none).
    fn store_mail(&mut self, name: &str, chunk: &mut Vec<Found>) -> Result<()> {
        let folders = BTreeMap::from([(name.to_string(), std::mem::take(chunk))]);
        let stored = import(self.store, self.path, self.account, folders)?;
        self.done.added += stored.added;
        self.done.already += stored.already;
        self.done.new_blobs += stored.new_blobs;
        if self.mail_folders.insert(name.to_string()) {
            self.done.folders += 1;
        }
        Ok(())
    }

    /// Records the items and problems, as an imported file of items.
    pub fn finish(mut self) -> Result<PstImported> {
        if self.items.is_empty() && self.done.problems.is_empty() {
            return Ok(self.done);
        }
        // The file is not kept whole (its mail and items are): its record
        // names it by size and content hash, so the same file is the same
        // record and its problems replace those of an earlier import.
        let (size, hash) = file_hash(self.path)?;
        let record = format!(
            "Outlook data file (.pst) read into messages and items; the file itself is not \
             kept.\r\nsize: {size}\r\nsha256: {hash}\r\n"
        );
        let store = self.store;
        let record_blob = store.write_blob(record.as_bytes())?;
        let blobs = self
            .items
            .iter()
            .map(|(_, _, _, _, text)| store.write_blob(text.as_bytes()))
            .collect::<Result<Vec<_>>>()?;
        let items: Vec<NewItem> = self
            .items
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
        let where_: Vec<String> = self
            .done
            .problems
            .iter()
            .map(|p| match &p.item {
                Some(item) => format!("{}: {item}", p.folder),
                None => p.folder.clone(),
            })
            .collect();
        let problems: Vec<NewProblem> = self
            .done
            .problems
            .iter()
            .zip(&where_)
            .map(|(p, item)| NewProblem {
                // A .pst has no lines; the item names where it is.
                line: 0,
                item: Some(item),
                kind: p.kind,
                detail: &p.problem,
            })
            .collect();
        let index = store.index();
        let account_id = index.item_account_id(self.account)?;
        let changes = index.record_item_file(
            account_id,
            &self.done.file,
            &record_blob,
            record.len() as u64,
            &items,
            &problems,
        )?;
        drop(index);
        let count = |c: ItemChange| changes.iter().filter(|x| **x == c).count() as u64;
        self.done.items_added = count(ItemChange::Added);
        self.done.items_updated = count(ItemChange::Updated);
        self.done.items_unchanged = count(ItemChange::Unchanged);
        Ok(self.done)
    }
}

/// The size and sha256 of the file at `path`, read as a stream.
fn file_hash(path: &Path) -> Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}
