//! Outlook data files (.pst), read with Microsoft's outlook-pst crate
//! (vendored with two fixes, `vendor/outlook-pst/README.mailferry.md`).
//!
//! Mail goes into the store as an account's messages, the way
//! [`super::import`] stores Maildir and mbox files: each folder below the
//! top of the personal folders is a folder of its path (`Inbox/Projects`),
//! each message RFC 822 bytes rebuilt from its properties (`pst/mail.rs`).
//! Contacts, distribution lists, appointments and tasks become vCard and
//! iCalendar text and are then read and recorded as items exactly like an
//! imported .vcf or .ics file ([`super::items`]), in a collection named
//! after their folder.
//!
//! The file is opened for reading only. A password-protected file is
//! refused. An item that cannot be read is a problem naming the file, the
//! folder and the item; the rest of the file is imported. The same file
//! gives the same bytes and texts again, so importing it twice adds nothing.

mod calendar;
mod contact;
mod lines;
mod mail;
mod recurrence;
mod rtf;
mod source;
mod walk;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;

use super::import::import;
use crate::store::Store;
use crate::store::index::AccountOrigin;
use crate::store::items::ProblemKind;
use source::{NamedIds, OutlookFile};
use walk::Walk;

/// Does `path` name an Outlook data file (by its extension)?
pub fn is_pst_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pst"))
}

/// An Outlook data file, open and not password-protected.
pub struct PstFile {
    path: PathBuf,
    file: OutlookFile,
}

/// Opens `path`; fails, naming it, when it is no readable Outlook data
/// file or is password-protected. Nothing is written anywhere.
pub fn open(path: &Path) -> Result<PstFile> {
    let file = guarded(|| OutlookFile::open(path)).map_err(|e| {
        anyhow::anyhow!(
            "{} cannot be read as an Outlook data file (.pst): {e}",
            path.display()
        )
    })?;
    // Its folders are read before anything is written anywhere.
    if let Err(e) = guarded(|| file.top_folder()) {
        bail!("{} has no folders that can be read: {e}", path.display());
    }
    if file.has_password() {
        bail!(
            "{} is a password-protected Outlook data file; mailferry does not read protected \
             files. Remove the password in Outlook (File > Account Settings > Data Files > \
             Settings > Change Password) and import the file again",
            path.display()
        );
    }
    Ok(PstFile {
        path: path.to_path_buf(),
        file,
    })
}

/// What of a .pst to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PstParts {
    /// Mail, contacts, calendars and tasks.
    Everything,
    /// Contacts, calendars and tasks only: what an export folder brings
    /// for a mailbox whose mail comes from its mirror (the file's copies
    /// would be stored a second time, and an imported account cannot be
    /// mirrored).
    ItemsOnly,
}

/// Something of a .pst that could not be read or carried over.
#[derive(Debug, Clone, Serialize)]
pub struct PstProblem {
    pub file: String,
    /// The folder's path, as its mail folder would be named.
    pub folder: String,
    /// The item's subject or name, else its node id.
    pub item: Option<String>,
    pub kind: ProblemKind,
    pub problem: String,
}

impl std::fmt::Display for PstProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, folder {:?}", self.file, self.folder)?;
        if let Some(item) = &self.item {
            write!(f, ", {item}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// What importing one .pst did.
#[derive(Debug, Default, Serialize)]
pub struct PstImported {
    pub file: String,
    pub account: String,
    /// Mail messages read, and the mail folders they are in.
    pub messages: u64,
    pub folders: u64,
    /// Mail messages not imported ([`PstParts::ItemsOnly`]).
    pub messages_left: u64,
    /// Messages new to the account, and those an earlier import stored.
    pub added: u64,
    pub already: u64,
    pub new_blobs: u64,
    /// Contacts, distribution lists among them, events and tasks read.
    pub contacts: u64,
    pub lists: u64,
    pub events: u64,
    pub tasks: u64,
    pub items_added: u64,
    pub items_updated: u64,
    pub items_unchanged: u64,
    pub problems: Vec<PstProblem>,
}

impl std::fmt::Display for PstImported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        let n = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        if self.messages_left > 0 {
            writeln!(
                f,
                "{}: {} not imported: the mailbox's mail comes from its mirror (or an export \
                 folder), and the file brings its contacts, calendars and tasks; to keep the \
                 file's mail too, import it under an account of its own (`mailferry import \
                 --account import:NAME FILE`, uploaded with TargetAddress)",
                self.file,
                n(self.messages_left, "message", "messages")
            )?;
        }
        let lists = match self.lists {
            0 => String::new(),
            1 => " (a distribution list with its members in the notes)".to_string(),
            l => format!(" ({l} distribution lists with their members in the notes)"),
        };
        writeln!(
            f,
            "{}: {} in {} for account {} ({} added, {} already stored, {} new blobs); {}{lists}, \
             {}, {} ({} added, {} updated, {} unchanged); {}",
            self.file,
            n(self.messages, "message", "messages"),
            n(self.folders, "folder", "folders"),
            self.account,
            self.added,
            self.already,
            self.new_blobs,
            n(self.contacts, "contact", "contacts"),
            n(self.events, "event", "events"),
            n(self.tasks, "task", "tasks"),
            self.items_added,
            self.items_updated,
            self.items_unchanged,
            match self.problems.len() as u64 {
                0 => "no problems".to_string(),
                p => format!("{}, named above", n(p, "problem", "problems")),
            }
        )
    }
}

/// Imports the mail of `pst` into the store as `account` (an imported
/// account, never a mirrored one), and its contacts, calendars and tasks
/// as that mailbox's items.
pub fn import_pst(
    store: &Store,
    account: &str,
    pst: PstFile,
    parts: PstParts,
) -> Result<PstImported> {
    // A mailbox the store mirrors gets its mail from the mirror: the
    // file's copies would be stored twice (with other bytes), so only its
    // contacts, calendars and tasks go in. Otherwise the account is
    // claimed for imported mail before anything is written.
    let parts = match (parts, store.index().account_origin(account)?) {
        (PstParts::Everything, Some(AccountOrigin::Mirrored { .. })) => PstParts::ItemsOnly,
        (parts, _) => parts,
    };
    if parts == PstParts::Everything {
        import(store, &pst.path, account, BTreeMap::new())?;
    }
    let names = guarded(|| pst.file.named_ids());
    let none = NamedIds::default();
    let names_read = names.as_ref().unwrap_or(&none);
    let mut walk = Walk::new(store, &pst.path, account, &pst.file, names_read, parts);
    if let Err(e) = &names {
        walk.problem(
            walk::TOP,
            None,
            ProblemKind::NotReadable,
            format!(
                "the file's map of named properties cannot be read ({e}): contacts' addresses \
                 and appointments' times are missing"
            ),
        );
    }
    let top = guarded(|| pst.file.top_folder())
        .map_err(|e| anyhow::anyhow!("cannot read the folders of {}: {e}", pst.path.display()))?;
    walk.folder(top, Vec::new())?;
    walk.finish()
}

/// Runs a read of the file, turning a panic of the reader (on damaged
/// data) into an error like any other.
fn guarded<T>(read: impl FnOnce() -> std::io::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(read)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err("the file ends before the data it points to: it is cut short".into())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!(
            "the reader failed on damaged data: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or(panic.downcast_ref::<&str>().copied())
                .unwrap_or("no detail")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::source::{Props, Tag, row_ids};
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/pst")
            .join(name)
    }

    #[test]
    fn a_message_without_internet_headers_gets_them_from_its_properties() {
        // The appointment of dist-list.pst, read as mail: no transport
        // headers, a sender of unknown address type, two attachments
        // (its instances) that cannot be read as attachments.
        let pst = open(&fixture("dist-list.pst")).unwrap();
        let names = pst.file.named_ids().unwrap();
        let top = pst.file.top_folder().unwrap();
        let calendar = row_ids(top.hierarchy_table())
            .into_iter()
            .map(|node| pst.file.folder(node).unwrap())
            .find(|f| {
                Props::of(f.properties(), &names)
                    .text(Tag::Id(0x3001))
                    .as_deref()
                    == Some("Calendar")
            })
            .unwrap();
        let node = row_ids(calendar.contents_table())[0];
        let opened = pst.file.message(node).unwrap();
        let mut losses = Vec::new();
        let m = mail::mail(&opened, &names, &mut losses);
        let text = String::from_utf8_lossy(&m.bytes).to_string();
        assert!(
            text.starts_with("Date: Tue, 2 Aug 2016 00:27:12 +0000\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nSubject: Test appointment\r\nMIME-Version: 1.0\r\n"),
            "{text}"
        );
        assert!(text.contains("From: \"Unknown\" <>\r\n"), "{text}");
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.bytes)
            .unwrap();
        assert_eq!(parsed.subject(), Some("Test appointment"));
        assert_eq!(
            parsed.body_text(0).unwrap().trim_end(),
            "This is a complete test"
        );
        assert_eq!(m.flags, "\\Seen");
        assert_eq!(losses.len(), 2, "{losses:?}");
        assert!(
            losses[0].starts_with("attachment 1 cannot be read"),
            "{losses:?}"
        );
    }
}
