//! The SQLite index: accounts, folders, blobs, messages and runs.
//!
//! One writer connection per store (the store's lock guarantees it). The
//! schema comes from `schema/*.sql`, applied in order; SQLite's
//! `user_version` records how many have been applied.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

use super::BlobHash;
pub use crate::outcome::FailureKind;

/// The schema files, in order. A new file is appended here; old ones never change.
pub(super) const SCHEMA: &[&str] = &[
    include_str!("../../schema/0001_init.sql"),
    include_str!("../../schema/0002_uploads.sql"),
    include_str!("../../schema/0003_workflow.sql"),
    include_str!("../../schema/0004_integrity.sql"),
    include_str!("../../schema/0005_servers.sql"),
    include_str!("../../schema/0006_truth.sql"),
    include_str!("../../schema/0007_reasons.sql"),
    include_str!("../../schema/0008_items.sql"),
    include_str!("../../schema/0009_item_uploads.sql"),
];

/// A stored message with its folder and account, as `export` writes it.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub account: String,
    pub folder_id: i64,
    /// The folder's name as people read it.
    pub folder: String,
    /// The folder's name on the wire (modified UTF-7).
    pub wire_folder: String,
    pub delimiter: Option<String>,
    pub uidvalidity: u32,
    pub uid: u32,
    pub flags: String,
    pub internal_date: Option<i64>,
    pub hash: String,
    /// Gone from the source (kept in the store).
    pub expunged: bool,
}

/// What the index knows of one blob (see [`Index::blob_facts`]).
#[derive(Debug, Clone)]
pub struct BlobFacts {
    pub size: u64,
    pub message_id: Option<String>,
    /// The Date header, as stored.
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    /// The earliest INTERNALDATE of the messages that are this blob.
    pub internal_date: Option<i64>,
}

pub struct Index {
    conn: Connection,
    path: std::path::PathBuf,
}

/// At most 2 MiB of pages cached, and the file not mapped: a mapped index
/// counts in the process's memory page by page as it is read (50 MB of a
/// 130 MB peak at 70,000 messages), and a larger cache fills as the index
/// grows, so memory grew with the store. The kernel's page cache still keeps
/// the file's pages at hand; inserts keyed by hash hit pages at random, so a
/// cache smaller than the index misses either way.
fn tune(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "cache_size", -2_048)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    Ok(())
}

/// What is at stake when the index is lost, for the messages that say so.
pub const LOST_INDEX_ADVICE: &str = "the mail itself is safe in objects/. Restore index.sqlite \
     from a backup if there is one. Otherwise move it aside and run `mailferry mirror`: it \
     builds a new index from the source (downloading the mail again, storing nothing twice); \
     what was uploaded is not in the new index, so the next upload reads each target folder \
     back and appends nothing twice";

/// Runs SQLite's `quick_check` (at every open) or `integrity_check`
/// (verify): a damaged index is an error that says what is at stake.
pub(crate) fn check_sound(conn: &Connection, path: &Path, pragma: &str) -> Result<()> {
    let problems: Vec<String> = match conn.prepare(&format!("PRAGMA {pragma}(20)")) {
        Ok(mut stmt) => stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .unwrap_or_else(|e| vec![e.to_string()]),
        Err(e) => vec![e.to_string()],
    };
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    bail!(
        "the index {} is damaged (SQLite {pragma}: {}); mailferry will not use it. {}",
        path.display(),
        problems.join("; "),
        LOST_INDEX_ADVICE
    )
}

/// A store written by a newer mailferry is an error, never a silent rewrite.
fn refuse_newer(conn: &Connection, path: &Path) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version.max(0) as usize > SCHEMA.len() {
        bail!(
            "the index {} has schema version {version}, newer than this mailferry \
             understands ({}); use a newer mailferry for this store",
            path.display(),
            SCHEMA.len()
        );
    }
    Ok(())
}

/// Adds a blob's row unless it is there (a blob is durable before this).
pub(super) fn insert_blob(conn: &Connection, b: &NewBlob, t: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO blobs
           (hash, size, stored_size, message_id, date, from_addr, subject, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        b.hash.to_hex(),
        b.size as i64,
        b.stored_size as i64,
        b.meta.message_id,
        b.meta.date,
        b.meta.from,
        b.meta.subject,
        t
    ])?;
    Ok(())
}

/// Seconds since the Unix epoch, the index's one time format.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// What the index knows of one source folder.
#[derive(Debug, Clone)]
pub struct FolderRow {
    pub id: i64,
    pub wire_name: String,
    pub display_name: String,
    pub delimiter: Option<String>,
    pub attributes: String,
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub highestmodseq: Option<u64>,
    pub source_count: Option<u32>,
    pub synced_uid: u32,
    pub deleted_at: Option<i64>,
}

/// Metadata kept with a blob; parsed from the message when possible.
#[derive(Debug, Clone, Default)]
pub struct BlobMeta {
    pub message_id: Option<String>,
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
}

impl BlobMeta {
    /// Message-ID, Date, From and Subject when mail-parser can read them;
    /// a message it cannot read simply has none.
    pub fn parse(raw: &[u8]) -> BlobMeta {
        let Some(msg) = mail_parser::MessageParser::new().parse_headers(raw) else {
            return BlobMeta::default();
        };
        BlobMeta {
            message_id: msg.message_id().map(str::to_string),
            date: msg.date().map(|d| d.to_rfc3339()),
            from: msg
                .from()
                .and_then(|a| a.first())
                .map(|a| match (a.name(), a.address()) {
                    (Some(n), Some(addr)) => format!("{n} <{addr}>"),
                    (None, Some(addr)) => addr.to_string(),
                    (Some(n), None) => n.to_string(),
                    (None, None) => String::new(),
                }),
            subject: msg.subject().map(str::to_string),
        }
    }
}

/// A blob that was just written and needs its row.
#[derive(Debug, Clone)]
pub struct NewBlob {
    pub hash: BlobHash,
    pub size: u64,
    pub stored_size: u64,
    pub meta: BlobMeta,
}

/// One message seen in a folder.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub uid: u32,
    pub blob: BlobHash,
    pub flags: String,
    pub modseq: Option<u64>,
    /// INTERNALDATE as an instant and the offset (minutes) the server gave;
    /// `None` when the server gave none that could be read.
    pub internal_date: Option<(i64, i32)>,
    pub size: u64,
}

/// A folder's live messages whose stored copy is damaged.
#[derive(Debug, Clone, Default)]
pub struct DamagedMessages {
    pub uidvalidity: u32,
    /// (UID, size)
    pub uids: Vec<(u32, u64)>,
}

/// A live message row, as the incremental plan needs it.
#[derive(Debug, Clone)]
pub struct LiveMessage {
    pub flags: String,
}

/// A cutover as recorded: its summary is JSON text.
#[derive(Debug, Clone)]
pub struct CutoverRow {
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub complete: bool,
    pub summary: Option<String>,
}

/// The host an imported account is recorded with: no server has it.
const IMPORTED_HOST: &str = "local";

/// Where an account's mail in the store came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountOrigin {
    /// Read from files by `import`.
    Imported,
    /// Mirrored from this IMAP host.
    Mirrored { host: String },
}

/// Per-folder counts for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FolderStatus {
    pub account: String,
    pub folder: String,
    pub wire_name: String,
    pub at_source: Option<u32>,
    pub stored: u64,
    pub expunged: u64,
    pub stored_bytes: u64,
    pub deleted_at_source: bool,
    pub last_checked_at: Option<i64>,
    /// Why the folder's last check did not finish; None when it did.
    pub last_error: Option<String>,
    /// The folder map leaves it out of the upload: nothing of it is pending.
    pub left_out: bool,
    /// Where the folder was last uploaded to (mailbox and folder), if anywhere.
    pub target: Option<String>,
    pub target_folder: Option<String>,
    /// The folder's live messages by what the ledger says of them. Pending
    /// counts every stored message not yet at the target: never tried, or
    /// left pending by an interrupted run.
    pub uploaded: u64,
    pub already_present: u64,
    pub skipped: u64,
    pub failed: u64,
    pub pending: u64,
}

impl Index {
    /// Opens the index, creating it or applying newer schema files as needed.
    /// A damaged index is refused, never written to.
    pub fn open(path: &Path) -> Result<Index> {
        let mut conn = Connection::open(path)
            .with_context(|| format!("cannot open index {}", path.display()))?;
        check_sound(&conn, path, "quick_check")?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .with_context(|| format!("cannot set WAL mode on {}", path.display()))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The WAL is copied back into the index every 64 MiB, not every
        // 4 MiB: the pages a mirror changes batch after batch (the messages
        // table's indexes) are written back once per checkpoint, and the
        // checkpoints were 8 % of a small-mail mirror's time.
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
        tune(&conn)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        refuse_newer(&conn, path)?;
        let migrations: Vec<M<'static>> = SCHEMA.iter().map(|sql| M::up(sql)).collect();
        Migrations::new(migrations)
            .to_latest(&mut conn)
            .with_context(|| format!("cannot apply the schema to {}", path.display()))?;
        Ok(Index {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Direct access for read-only reports and tests.
    /// Writes a consistent copy of the index at `index` to `path` through
    /// a connection of its own (SQLite's online backup of what a read
    /// transaction sees: the writer goes on meanwhile, in WAL mode).
    pub fn snapshot_file(index: &Path, path: &Path) -> Result<()> {
        let source = Connection::open_with_flags(
            index,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open index {}", index.display()))?;
        let mut copy = Connection::open(path)
            .with_context(|| format!("cannot create the index snapshot {}", path.display()))?;
        rusqlite::backup::Backup::new(&source, &mut copy)
            .and_then(|b| b.run_to_completion(4096, std::time::Duration::ZERO, None))
            .with_context(|| format!("cannot copy the index to {}", path.display()))?;
        // One file, no -wal beside it, whatever the source's journal.
        copy.pragma_update(None, "journal_mode", "DELETE")
            .with_context(|| format!("cannot finish the index snapshot {}", path.display()))?;
        Ok(())
    }

    pub(super) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SQLite's full `integrity_check`: an error says what is at stake.
    pub fn check_integrity(&self) -> Result<()> {
        check_sound(&self.conn, &self.path, "integrity_check")
    }

    /// Every blob the index lists, with its stored (compressed) size.
    pub fn blob_sizes(&self) -> Result<Vec<(BlobHash, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash, stored_size FROM blobs ORDER BY hash")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, size) = row?;
            let hash = BlobHash::from_hex(&hash).with_context(|| {
                format!(
                    "the index {} lists a blob by a name that is not a sha256",
                    self.path.display()
                )
            })?;
            out.push((hash, size.max(0) as u64));
        }
        Ok(out)
    }

    /// Blob names that message rows use but the blobs table lacks (the
    /// foreign key should make this impossible; a damaged index may not).
    pub fn blobs_named_but_not_listed(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT m.blob_hash FROM messages m LEFT JOIN blobs b ON b.hash = m.blob_hash
             WHERE b.hash IS NULL",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Stored messages folder by folder in UID order: of `account` (any
    /// case) and `folder` if given, expunged ones only when asked. One
    /// query, so an export is the store as it was at one moment.
    pub fn messages(
        &self,
        account: Option<&str>,
        folder: Option<&str>,
        include_expunged: bool,
    ) -> Result<Vec<MessageRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT a.name, f.id, f.display_name, f.delimiter, m.uid, m.flags, m.internal_date,
                    m.blob_hash, f.wire_name, m.uidvalidity, m.expunged_at IS NOT NULL
             FROM messages m JOIN folders f ON f.id = m.folder_id
             JOIN accounts a ON a.id = f.account_id
             WHERE (?1 IS NULL OR a.name = ?1 COLLATE NOCASE) AND (?2 IS NULL OR f.display_name = ?2)
               AND (?3 OR m.expunged_at IS NULL)
             ORDER BY a.name, f.display_name, m.uidvalidity, m.uid",
        )?;
        let rows = stmt.query_map(params![account, folder, include_expunged], |r| {
            Ok(MessageRow {
                account: r.get(0)?,
                folder_id: r.get(1)?,
                folder: r.get(2)?,
                delimiter: r.get(3)?,
                uid: r.get(4)?,
                flags: r.get(5)?,
                internal_date: r.get(6)?,
                hash: r.get(7)?,
                wire_folder: r.get(8)?,
                uidvalidity: r.get(9)?,
                expunged: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// What the index knows of a blob, to recognise its message at a
    /// target and to describe it if it is missing there.
    pub fn blob_facts(&self, hash: &BlobHash) -> Result<Option<BlobFacts>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT b.size, b.message_id, b.date, b.from_addr, b.subject,
                    (SELECT MIN(m.internal_date) FROM messages m WHERE m.blob_hash = b.hash)
             FROM blobs b WHERE b.hash = ?1",
        )?;
        Ok(stmt
            .query_row([hash.to_hex()], |r| {
                Ok(BlobFacts {
                    size: r.get::<_, i64>(0)?.max(0) as u64,
                    message_id: r.get(1)?,
                    date: r.get(2)?,
                    from: r.get(3)?,
                    subject: r.get(4)?,
                    internal_date: r.get(5)?,
                })
            })
            .optional()?)
    }

    /// Whether the index lists the blob, and if so whether it was found
    /// damaged: `None` (not listed), `Some(false)` (sound), `Some(true)`.
    pub fn blob_damaged(&self, hash: &BlobHash) -> Result<Option<bool>> {
        Ok(self
            .conn
            .prepare_cached("SELECT damaged_at IS NOT NULL FROM blobs WHERE hash = ?1")?
            .query_row([hash.to_hex()], |r| r.get(0))
            .optional()?)
    }

    /// Records that a blob could not be read back as its bytes. The next
    /// mirror fetches a message that names it again.
    pub fn mark_blob_damaged(&self, hash: &BlobHash, fault: &super::BlobFault) -> Result<()> {
        self.conn.execute(
            "UPDATE blobs SET damaged_at = COALESCE(damaged_at, ?2), damage = ?3 WHERE hash = ?1",
            params![hash.to_hex(), now(), fault.kind()],
        )?;
        Ok(())
    }

    /// The blob was written anew from the server's bytes.
    pub fn blob_repaired(&self, hash: &BlobHash, stored_size: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE blobs SET damaged_at = NULL, damage = NULL, stored_size = ?2 WHERE hash = ?1",
            params![hash.to_hex(), stored_size as i64],
        )?;
        Ok(())
    }

    /// Live messages of an account whose blob is marked damaged, by folder
    /// id: (UIDVALIDITY, [(UID, size)]). The mirror fetches these again.
    pub fn damaged_messages(&self, account_id: i64) -> Result<HashMap<i64, DamagedMessages>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT m.folder_id, m.uidvalidity, m.uid, m.size
             FROM blobs b JOIN messages m ON m.blob_hash = b.hash
             JOIN folders f ON f.id = m.folder_id
             WHERE b.damaged_at IS NOT NULL AND f.account_id = ?1 AND m.expunged_at IS NULL
               AND m.uidvalidity = f.uidvalidity
             ORDER BY m.folder_id, m.uid",
        )?;
        let mut out: HashMap<i64, DamagedMessages> = HashMap::new();
        for row in stmt.query_map([account_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })? {
            let (folder, uidvalidity, uid, size) = row?;
            out.entry(folder)
                .or_insert_with(|| DamagedMessages {
                    uidvalidity,
                    uids: Vec::new(),
                })
                .uids
                .push((uid, size as u64));
        }
        Ok(out)
    }

    /// The id of the account named `name`, created on first sight.
    pub fn account_id(&self, name: &str, host: &str, username: &str) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO accounts (name, host, username, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET host = excluded.host, username = excluded.username",
            params![name, host, username, now()],
        )?;
        Ok(self
            .conn
            .query_row("SELECT id FROM accounts WHERE name = ?1", [name], |r| {
                r.get(0)
            })?)
    }

    /// The source's personal namespace prefix, as the last mirror saw it
    /// (wire form); `None` when never read.
    /// Where an account's mail came from: `None` when the store does not
    /// know it, else [`AccountOrigin::Imported`] or the source host.
    pub fn account_origin(&self, name: &str) -> Result<Option<AccountOrigin>> {
        let host: Option<String> = self
            .conn
            .prepare_cached("SELECT host FROM accounts WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?;
        // An account known only by its contacts and calendars has no host.
        Ok(host.filter(|h| !h.is_empty()).map(|h| {
            if h == IMPORTED_HOST {
                AccountOrigin::Imported
            } else {
                AccountOrigin::Mirrored { host: h }
            }
        }))
    }

    /// A stored blob's size and Message-ID (parsed when it was stored).
    pub fn blob_size_and_message_id(&self, hash: &BlobHash) -> Result<(u64, Option<String>)> {
        let (size, id): (i64, Option<String>) = self
            .conn
            .prepare_cached("SELECT size, message_id FROM blobs WHERE hash = ?1")?
            .query_row([hash.to_hex()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((size as u64, id))
    }

    /// The id of the account named `name`, if the store has it.
    pub fn find_account(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM accounts WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    /// The id of an account imported from files at `dir`, made if new.
    pub fn imported_account_id(&self, name: &str, dir: &str) -> Result<i64> {
        self.account_id(name, IMPORTED_HOST, dir)
    }

    pub fn personal_prefix(&self, account_id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT personal_prefix FROM accounts WHERE id = ?1",
                [account_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    pub fn set_personal_prefix(&self, account_id: i64, prefix: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE accounts SET personal_prefix = ?2 WHERE id = ?1",
            params![account_id, prefix],
        )?;
        Ok(())
    }

    pub fn folders(&self, account_id: i64) -> Result<Vec<FolderRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, wire_name, display_name, delimiter, attributes, uidvalidity, uidnext,
                    highestmodseq, source_count, synced_uid, deleted_at
             FROM folders WHERE account_id = ?1 ORDER BY wire_name",
        )?;
        let rows = stmt.query_map([account_id], |r| {
            Ok(FolderRow {
                id: r.get(0)?,
                wire_name: r.get(1)?,
                display_name: r.get(2)?,
                delimiter: r.get(3)?,
                attributes: r.get(4)?,
                uidvalidity: r.get(5)?,
                uidnext: r.get(6)?,
                highestmodseq: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
                source_count: r.get(8)?,
                synced_uid: r.get(9)?,
                deleted_at: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a folder seen in LIST, reviving it if it had vanished.
    pub fn upsert_folder(
        &self,
        account_id: i64,
        wire_name: &str,
        display_name: &str,
        delimiter: Option<&str>,
        attributes: &str,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO folders (account_id, wire_name, display_name, delimiter, attributes, first_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(account_id, wire_name) DO UPDATE SET
                display_name = excluded.display_name, delimiter = excluded.delimiter,
                attributes = excluded.attributes, deleted_at = NULL",
            params![account_id, wire_name, display_name, delimiter, attributes, now()],
        )?;
        Ok(self.conn.query_row(
            "SELECT id FROM folders WHERE account_id = ?1 AND wire_name = ?2",
            params![account_id, wire_name],
            |r| r.get(0),
        )?)
    }

    /// The folder vanished at the source: remember when, keep every message.
    pub fn mark_folder_deleted(&self, folder_id: i64) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let t = now();
        tx.execute(
            "UPDATE folders SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
            params![folder_id, t],
        )?;
        tx.execute(
            "UPDATE messages SET expunged_at = ?2 WHERE folder_id = ?1 AND expunged_at IS NULL",
            params![folder_id, t],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The folder has a new UIDVALIDITY: every row of an older one is now
    /// expunged (kept), and the UID bookkeeping starts again.
    pub fn reset_uidvalidity(&self, folder_id: i64, uidvalidity: u32) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "UPDATE messages SET expunged_at = ?3
             WHERE folder_id = ?1 AND uidvalidity != ?2 AND expunged_at IS NULL",
            params![folder_id, uidvalidity, now()],
        )?;
        tx.execute(
            "UPDATE folders SET uidvalidity = ?2, uidnext = NULL, highestmodseq = NULL,
                                synced_uid = 0
             WHERE id = ?1",
            params![folder_id, uidvalidity],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Saves what the server said of the folder after a successful check.
    pub fn save_folder_state(
        &self,
        folder_id: i64,
        uidvalidity: u32,
        uidnext: Option<u32>,
        highestmodseq: Option<u64>,
        source_count: u32,
        synced_uid: u32,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE folders SET uidvalidity = ?2, uidnext = ?3, highestmodseq = ?4,
                                source_count = ?5, synced_uid = ?6, last_checked_at = ?7,
                                last_error = NULL
             WHERE id = ?1",
            params![
                folder_id,
                uidvalidity,
                uidnext,
                highestmodseq.map(|v| v as i64),
                source_count,
                synced_uid,
                now()
            ],
        )?;
        Ok(())
    }

    /// Saves what is known of a folder whose check did not finish: the next
    /// run plans it again (no UIDNEXT), and status shows `why`. Its last
    /// check stays the last complete one.
    pub fn save_folder_failed(
        &self,
        folder_id: i64,
        uidvalidity: u32,
        source_count: u32,
        synced_uid: u32,
        why: &str,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE folders SET uidvalidity = ?2, uidnext = NULL, highestmodseq = NULL,
                                source_count = ?3, synced_uid = ?4, last_error = ?5
             WHERE id = ?1",
            params![folder_id, uidvalidity, source_count, synced_uid, why],
        )?;
        Ok(())
    }

    /// A folder found unchanged: it was checked now.
    pub fn folder_checked(&self, folder_id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE folders SET last_checked_at = ?2, last_error = NULL WHERE id = ?1",
            params![folder_id, now()],
        )?;
        Ok(())
    }

    /// A folder that could not be checked this run, and why.
    pub fn folder_failed(&self, folder_id: i64, why: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE folders SET last_error = ?2 WHERE id = ?1",
            params![folder_id, why],
        )?;
        Ok(())
    }

    /// Records how an account's mirror or upload ended (`None`: well).
    pub fn record_account_run(
        &self,
        account: &str,
        stage: Stage,
        failure: Option<(FailureKind, &str)>,
    ) -> Result<()> {
        let at = now();
        let (kind, text) = match failure {
            Some((k, t)) => (Some(k.as_str()), Some(t)),
            None => (None, None),
        };
        self.conn.execute(
            "INSERT INTO account_runs (account, stage, last_attempt_at, last_ok_at, error_kind, error)
             VALUES (?1, ?2, ?3, CASE WHEN ?4 IS NULL THEN ?3 END, ?4, ?5)
             ON CONFLICT (account, stage) DO UPDATE SET
                 last_attempt_at = excluded.last_attempt_at,
                 last_ok_at = COALESCE(excluded.last_ok_at, account_runs.last_ok_at),
                 error_kind = excluded.error_kind, error = excluded.error",
            params![account, stage.as_str(), at, kind, text],
        )?;
        Ok(())
    }

    /// How each account's last mirror and upload ended.
    pub fn account_runs(&self) -> Result<Vec<AccountRun>> {
        let mut stmt = self.conn.prepare(
            "SELECT account, stage, last_attempt_at, last_ok_at, error_kind, error
             FROM account_runs ORDER BY account, stage",
        )?;
        let rows = stmt.query_map([], |r| {
            let stage: String = r.get(1)?;
            let kind: Option<String> = r.get(4)?;
            Ok(AccountRun {
                account: r.get(0)?,
                stage: Stage::parse(&stage),
                last_attempt_at: r.get(2)?,
                last_ok_at: r.get(3)?,
                error: kind
                    .map(|k| -> rusqlite::Result<RunError> {
                        Ok(RunError {
                            kind: FailureKind::parse(&k),
                            text: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                        })
                    })
                    .transpose()?,
            })
        })?;
        Ok(rows
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .filter(|r| r.stage.is_some())
            .collect())
    }

    /// Live (not expunged) messages of a folder under one UIDVALIDITY, by UID.
    pub fn live_messages(
        &self,
        folder_id: i64,
        uidvalidity: u32,
    ) -> Result<HashMap<u32, LiveMessage>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT uid, flags FROM messages
             WHERE folder_id = ?1 AND uidvalidity = ?2 AND expunged_at IS NULL",
        )?;
        let rows = stmt.query_map(params![folder_id, uidvalidity], |r| {
            Ok((r.get::<_, u32>(0)?, LiveMessage { flags: r.get(1)? }))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The blobs a folder holds under one UIDVALIDITY (expunged or not),
    /// and its highest UID: what an import adds to.
    pub fn folder_blobs(
        &self,
        folder_id: i64,
        uidvalidity: u32,
    ) -> Result<(std::collections::HashSet<String>, u32)> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT blob_hash, uid FROM messages WHERE folder_id = ?1 AND uidvalidity = ?2",
        )?;
        let mut blobs = std::collections::HashSet::new();
        let mut highest = 0;
        let rows = stmt.query_map(params![folder_id, uidvalidity], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })?;
        for row in rows {
            let (hash, uid) = row?;
            blobs.insert(hash);
            highest = highest.max(uid);
        }
        Ok((blobs, highest))
    }

    /// Inserts blob rows and message rows in one transaction.
    pub fn insert_messages(
        &self,
        folder_id: i64,
        uidvalidity: u32,
        blobs: &[NewBlob],
        messages: &[NewMessage],
    ) -> Result<usize> {
        let tx = self.conn.unchecked_transaction()?;
        let t = now();
        for b in blobs {
            insert_blob(&tx, b, t)?;
        }
        let mut inserted = 0;
        {
            let mut msg_stmt = tx.prepare_cached(
                // A row already there (a re-run after a crash, or a folder
                // re-created with the same UIDVALIDITY) is revived when it
                // names the same blob; anything else is left as it was.
                "INSERT INTO messages
                   (folder_id, uidvalidity, uid, blob_hash, flags, modseq, internal_date,
                    internal_date_offset, size, first_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (folder_id, uidvalidity, uid) DO UPDATE
                   SET expunged_at = NULL, flags = excluded.flags
                   WHERE blob_hash = excluded.blob_hash AND expunged_at IS NOT NULL",
            )?;
            for m in messages {
                inserted += msg_stmt.execute(params![
                    folder_id,
                    uidvalidity,
                    m.uid,
                    m.blob.to_hex(),
                    m.flags,
                    m.modseq.map(|v| v as i64),
                    m.internal_date.map(|d| d.0),
                    m.internal_date.map(|d| d.1),
                    m.size as i64,
                    t
                ])?;
            }
        }
        tx.commit()?;
        Ok(inserted)
    }

    /// Applies flag changes seen at the source.
    pub fn update_flags(
        &self,
        folder_id: i64,
        uidvalidity: u32,
        changes: &[(u32, String, Option<u64>)],
    ) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE messages SET flags = ?4, modseq = COALESCE(?5, modseq)
                 WHERE folder_id = ?1 AND uidvalidity = ?2 AND uid = ?3 AND expunged_at IS NULL",
            )?;
            for (uid, flags, modseq) in changes {
                stmt.execute(params![
                    folder_id,
                    uidvalidity,
                    uid,
                    flags,
                    modseq.map(|v| v as i64)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks messages expunged at the source. Rows and blobs stay.
    pub fn mark_expunged(&self, folder_id: i64, uidvalidity: u32, uids: &[u32]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let t = now();
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE messages SET expunged_at = ?4
                 WHERE folder_id = ?1 AND uidvalidity = ?2 AND uid = ?3 AND expunged_at IS NULL",
            )?;
            for uid in uids {
                stmt.execute(params![folder_id, uidvalidity, uid, t])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A stored blob that is confirmed to be this message: the same
    /// Message-ID, size and INTERNALDATE instant, and only one such blob.
    /// `None` when there is no match or more than one (then fetch).
    pub fn find_identical(
        &self,
        message_id: &str,
        size: u64,
        internal_date: i64,
    ) -> Result<Option<BlobHash>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT b.hash FROM blobs b JOIN messages m ON m.blob_hash = b.hash
             WHERE b.message_id = ?1 AND b.size = ?2 AND m.internal_date = ?3
             LIMIT 2",
        )?;
        let hashes: Vec<String> = stmt
            .query_map(params![message_id, size as i64, internal_date], |r| {
                r.get(0)
            })?
            .collect::<rusqlite::Result<_>>()?;
        match hashes.as_slice() {
            [one] => Ok(Some(BlobHash::from_hex(one)?)),
            _ => Ok(None),
        }
    }

    /// Whether any message is stored at all (a first mirror skips the
    /// re-pointing step).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(!self
            .conn
            .prepare_cached("SELECT 1 FROM blobs LIMIT 1")?
            .exists([])?)
    }

    pub fn start_run(&self, command: &str) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO runs (command, started_at) VALUES (?1, ?2)",
            params![command, now()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_run(&self, run_id: i64, summary: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET finished_at = ?2, summary = ?3 WHERE id = ?1",
            params![run_id, now(), summary],
        )?;
        Ok(())
    }

    /// When a command last finished, if ever.
    pub fn last_run(&self, command: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT MAX(finished_at) FROM runs WHERE command = ?1",
                [command],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Whether a cutover once found the batch complete (go-live).
    pub fn went_live(&self) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM cutovers WHERE complete)",
            [],
            |r| r.get(0),
        )?)
    }

    /// Records a cutover run.
    pub fn record_cutover(&self, c: &CutoverRow) -> Result<()> {
        self.conn.execute(
            "INSERT INTO cutovers (started_at, finished_at, complete, summary)
             VALUES (?1, ?2, ?3, ?4)",
            params![c.started_at, c.finished_at, c.complete, c.summary],
        )?;
        Ok(())
    }

    /// The batch's last cutover, if one ran.
    pub fn last_cutover(&self) -> Result<Option<CutoverRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT started_at, finished_at, complete, summary FROM cutovers
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(CutoverRow {
                        started_at: r.get(0)?,
                        finished_at: r.get(1)?,
                        complete: r.get(2)?,
                        summary: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Per account and folder counts, optionally for one account.
    pub fn folder_status(&self, account: Option<&str>) -> Result<Vec<FolderStatus>> {
        let mut stmt = self.conn.prepare(
            "SELECT a.name, f.display_name, f.wire_name, f.source_count,
                    COUNT(m.id) FILTER (WHERE m.expunged_at IS NULL),
                    COUNT(m.id) FILTER (WHERE m.expunged_at IS NOT NULL),
                    COALESCE(SUM(m.size) FILTER (WHERE m.expunged_at IS NULL), 0),
                    f.deleted_at IS NOT NULL, f.last_checked_at,
                    t.mailbox, tf.display_name,
                    COUNT(m.id) FILTER (WHERE u.state = 'done'),
                    COUNT(m.id) FILTER (WHERE u.state = 'present'),
                    COUNT(m.id) FILTER (WHERE u.state = 'skipped'),
                    COUNT(m.id) FILTER (WHERE u.state = 'failed'),
                    f.left_out, f.last_error
             FROM folders f JOIN accounts a ON a.id = f.account_id
             LEFT JOIN target_folders tf ON tf.id = f.target_folder_id
             LEFT JOIN targets t ON t.id = tf.target_id
             LEFT JOIN messages m ON m.folder_id = f.id
             LEFT JOIN uploads u ON m.expunged_at IS NULL
                  AND u.target_folder_id = f.target_folder_id AND u.blob_hash = m.blob_hash
             WHERE (?1 IS NULL OR a.name = ?1 COLLATE NOCASE)
             GROUP BY f.id ORDER BY a.name, f.display_name",
        )?;
        let rows = stmt.query_map([account], |r| {
            let count = |i: usize| r.get::<_, i64>(i).map(|n| n as u64);
            let stored = count(4)?;
            let (uploaded, already_present, skipped, failed) =
                (count(11)?, count(12)?, count(13)?, count(14)?);
            Ok(FolderStatus {
                account: r.get(0)?,
                folder: r.get(1)?,
                wire_name: r.get(2)?,
                at_source: r.get(3)?,
                stored,
                expunged: count(5)?,
                stored_bytes: count(6)?,
                deleted_at_source: r.get(7)?,
                last_checked_at: r.get(8)?,
                left_out: r.get(15)?,
                last_error: r.get(16)?,
                pending: if r.get(15)? {
                    0
                } else {
                    stored.saturating_sub(uploaded + already_present + skipped + failed)
                },
                target: r.get(9)?,
                target_folder: r.get(10)?,
                uploaded,
                already_present,
                skipped,
                failed,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// The two stages whose outcome is kept per account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Mirror,
    Upload,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Mirror => "mirror",
            Stage::Upload => "upload",
        }
    }

    fn parse(s: &str) -> Option<Stage> {
        match s {
            "mirror" => Some(Stage::Mirror),
            "upload" => Some(Stage::Upload),
            _ => None,
        }
    }
}

/// An account's last error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunError {
    pub kind: FailureKind,
    /// In the server's words.
    pub text: String,
}

/// How an account's last mirror or upload ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountRun {
    pub account: String,
    #[serde(skip)]
    pub stage: Option<Stage>,
    pub last_attempt_at: i64,
    /// The last run that ended well.
    pub last_ok_at: Option<i64>,
    /// Set when the last run failed.
    pub error: Option<RunError>,
}

/// Per target folder: what the ledger says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetFolderStatus {
    pub target: String,
    pub host: String,
    pub folder: String,
    pub uploaded: u64,
    pub already_present: u64,
    pub skipped: u64,
    pub failed: u64,
    pub pending: u64,
}

/// A message that did not reach its target folder, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotUploaded {
    pub target: String,
    pub folder: String,
    pub state: String,
    /// What kind of reason (None: a ledger entry older than the kinds).
    pub kind: Option<super::ledger::ReasonKind>,
    pub reason: String,
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub size: u64,
    pub blob: String,
}

impl Index {
    /// Ledger counts per target folder.
    pub fn target_status(&self) -> Result<Vec<TargetFolderStatus>> {
        let mut stmt = self.conn.prepare(
            "SELECT t.mailbox, t.host, f.display_name,
                    COUNT(u.id) FILTER (WHERE u.state = 'done'),
                    COUNT(u.id) FILTER (WHERE u.state = 'present'),
                    COUNT(u.id) FILTER (WHERE u.state = 'skipped'),
                    COUNT(u.id) FILTER (WHERE u.state = 'failed'),
                    COUNT(u.id) FILTER (WHERE u.state = 'pending')
             FROM target_folders f JOIN targets t ON t.id = f.target_id
             LEFT JOIN uploads u ON u.target_folder_id = f.id
             GROUP BY f.id ORDER BY t.mailbox, f.display_name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(TargetFolderStatus {
                target: r.get(0)?,
                host: r.get(1)?,
                folder: r.get(2)?,
                uploaded: r.get::<_, i64>(3)? as u64,
                already_present: r.get::<_, i64>(4)? as u64,
                skipped: r.get::<_, i64>(5)? as u64,
                failed: r.get::<_, i64>(6)? as u64,
                pending: r.get::<_, i64>(7)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every skipped or failed upload, with what the message is.
    pub fn not_uploaded(&self) -> Result<Vec<NotUploaded>> {
        let mut stmt = self.conn.prepare(
            "SELECT t.mailbox, f.display_name, u.state, COALESCE(u.reason, ''),
                    b.date, b.from_addr, b.subject, b.size, b.hash, u.reason_kind
             FROM uploads u JOIN target_folders f ON f.id = u.target_folder_id
             JOIN targets t ON t.id = f.target_id JOIN blobs b ON b.hash = u.blob_hash
             WHERE u.state IN ('skipped', 'failed')
             ORDER BY t.mailbox, f.display_name, b.date",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(NotUploaded {
                target: r.get(0)?,
                folder: r.get(1)?,
                state: r.get::<_, super::ledger::State>(2)?.as_str().to_string(),
                kind: r.get(9)?,
                reason: r.get(3)?,
                date: r.get(4)?,
                from: r.get(5)?,
                subject: r.get(6)?,
                size: r.get::<_, i64>(7)? as u64,
                blob: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Opens an existing index for reading only, without taking the
    /// store's lock (a mirror may be running).
    pub fn open_read_only(path: &Path) -> Result<Index> {
        if !path.exists() {
            bail!(
                "no store index at {} (run `mailferry mirror` first, or pass --store)",
                path.display()
            );
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open index {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        check_sound(&conn, path, "quick_check")?;
        tune(&conn)?;
        refuse_newer(&conn, path)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version <= 0 {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            bail!(
                "the index {} holds no mailferry index ({size} bytes): it was truncated, \
                 replaced or never written. {}",
                path.display(),
                LOST_INDEX_ADVICE
            );
        }
        if (version as usize) < SCHEMA.len() {
            bail!(
                "the index {} was written by an older mailferry (schema {version}); run \
                 `mailferry mirror` or `upload` once with this version to bring it up to date",
                path.display()
            );
        }
        Ok(Index {
            conn,
            path: path.to_path_buf(),
        })
    }
}
