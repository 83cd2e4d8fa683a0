//! The ledger: what each target folder holds of each blob.
//!
//! Exactly once across crashes: an entry is `pending` (with the target
//! folder's UIDVALIDITY and UIDNEXT) before its APPEND is sent and `done`
//! (with the UID) after the server's OK; a `pending` entry found on a later
//! run is reconciled by reading the target back before anything is appended
//! again (see upload/folder.rs). No row means never tried.

use std::collections::HashMap;

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::index::now;
use super::{BlobHash, Index};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Done,
    /// Found at the target without an APPEND of ours (reconciled).
    Present,
    Skipped,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Done => "done",
            State::Present => "present",
            State::Skipped => "skipped",
            State::Failed => "failed",
        }
    }

    /// A state as stored; anything else is a damaged or foreign ledger,
    /// never taken for "failed".
    pub fn parse(s: &str) -> Result<State> {
        Ok(match s {
            "pending" => State::Pending,
            "done" => State::Done,
            "present" => State::Present,
            "skipped" => State::Skipped,
            "failed" => State::Failed,
            _ => anyhow::bail!("the ledger holds an unknown state {s:?}"),
        })
    }
}

impl rusqlite::types::FromSql for State {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        State::parse(text).map_err(|e| rusqlite::types::FromSqlError::Other(e.into()))
    }
}

/// Why a message is not at the target, as a kind a program can tell
/// apart (the ledger's `reason_kind`; the words are kept beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonKind {
    /// Skipped: larger than the target takes.
    TooLarge,
    /// Skipped: a line longer than the target takes.
    LineTooLong,
    /// Skipped: NUL bytes, and the target has no BINARY.
    NulBytes,
    /// Skipped: bare LF or CR the target refuses even as CRLF.
    BareLineEnds,
    /// Skipped: refused for good, in the server's words.
    Rejected,
    /// Failed: the stored blob is damaged (the next mirror fetches it again).
    Damaged,
    /// Failed: refused for now (busy, throttled, the folder gone).
    Refused,
    /// Failed: a read-back did not find it at the target.
    MissingAtTarget,
}

impl ReasonKind {
    const ALL: [ReasonKind; 8] = [
        ReasonKind::TooLarge,
        ReasonKind::LineTooLong,
        ReasonKind::NulBytes,
        ReasonKind::BareLineEnds,
        ReasonKind::Rejected,
        ReasonKind::Damaged,
        ReasonKind::Refused,
        ReasonKind::MissingAtTarget,
    ];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::TooLarge => "too-large",
            ReasonKind::LineTooLong => "line-too-long",
            ReasonKind::NulBytes => "nul-bytes",
            ReasonKind::BareLineEnds => "bare-line-ends",
            ReasonKind::Rejected => "rejected",
            ReasonKind::Damaged => "damaged",
            ReasonKind::Refused => "refused",
            ReasonKind::MissingAtTarget => "missing-at-target",
        }
    }

    /// As summaries say it.
    pub fn label(self) -> &'static str {
        match self {
            ReasonKind::TooLarge => "too large",
            ReasonKind::LineTooLong => "line too long",
            ReasonKind::NulBytes => "NUL bytes",
            ReasonKind::BareLineEnds => "bare line ends",
            ReasonKind::Rejected => "rejected by the server",
            ReasonKind::Damaged => "damaged in the store",
            ReasonKind::Refused => "refused for now",
            ReasonKind::MissingAtTarget => "missing at the target",
        }
    }
}

impl rusqlite::types::FromSql for ReasonKind {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        ReasonKind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| {
                rusqlite::types::FromSqlError::Other(
                    format!("the ledger holds an unknown reason kind {text:?}").into(),
                )
            })
    }
}

/// Why a message is skipped for good (until the user changes something).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Over the target's size limit: known before sending (`limit`), or
    /// said by the server (`said`).
    TooLarge {
        size: u64,
        limit: Option<u64>,
        said: Option<String>,
    },
    /// The server's words.
    LineTooLong(String),
    NulWithoutBinary,
    /// The server's words.
    BareLineEnds(String),
    /// The server's words.
    Rejected(String),
}

/// What a skip for NUL bytes says.
pub const NUL_SKIP_REASON: &str = "the message holds NUL bytes, which this target cannot take \
     (no BINARY); --send-nul-bytes sends it anyway in a plain literal";

impl SkipReason {
    pub fn kind(&self) -> ReasonKind {
        match self {
            SkipReason::TooLarge { .. } => ReasonKind::TooLarge,
            SkipReason::LineTooLong(_) => ReasonKind::LineTooLong,
            SkipReason::NulWithoutBinary => ReasonKind::NulBytes,
            SkipReason::BareLineEnds(_) => ReasonKind::BareLineEnds,
            SkipReason::Rejected(_) => ReasonKind::Rejected,
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::TooLarge {
                said: Some(words), ..
            } => f.write_str(words),
            SkipReason::TooLarge { size, limit, .. } => write!(
                f,
                "{} is over the target's limit of {}",
                crate::format::bytes(*size),
                limit.map_or_else(|| "?".to_string(), crate::format::bytes)
            ),
            SkipReason::NulWithoutBinary => f.write_str(NUL_SKIP_REASON),
            SkipReason::LineTooLong(words)
            | SkipReason::BareLineEnds(words)
            | SkipReason::Rejected(words) => f.write_str(words),
        }
    }
}

/// Why a message failed this time; the next upload tries it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The stored blob is damaged (its words).
    Damaged(String),
    /// The server refused it for now (its words).
    Refused(String),
    /// A read-back did not find it; when that was.
    MissingAtTarget { checked_at: String },
}

impl FailReason {
    pub fn kind(&self) -> ReasonKind {
        match self {
            FailReason::Damaged(_) => ReasonKind::Damaged,
            FailReason::Refused(_) => ReasonKind::Refused,
            FailReason::MissingAtTarget { .. } => ReasonKind::MissingAtTarget,
        }
    }
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailReason::Damaged(words) => {
                write!(
                    f,
                    "{words}; the next mirror fetches it again from the source"
                )
            }
            FailReason::Refused(words) => f.write_str(words),
            FailReason::MissingAtTarget { checked_at } => {
                write!(f, "missing at the target when checked on {checked_at}")
            }
        }
    }
}

/// How the bytes sent differ from the stored blob, when they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentAs {
    /// Bare LF and CR made CRLF: the target refuses bare line ends.
    Crlf,
    /// NUL bytes in a plain literal, on request, to a target without BINARY.
    NulLiteral,
}

impl SentAs {
    pub fn as_str(self) -> &'static str {
        match self {
            SentAs::Crlf => "crlf",
            SentAs::NulLiteral => "nul-literal",
        }
    }

    /// What a summary says of such messages.
    pub fn describe(name: &str) -> &'static str {
        match name {
            "crlf" => "line ends made CRLF (the target refuses bare LF)",
            "nul-literal" => {
                "NUL bytes in a plain literal (--send-nul-bytes; the target has no BINARY)"
            }
            _ => "sent otherwise than stored",
        }
    }
}

/// One ledger row.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub blob: BlobHash,
    pub state: State,
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub uid: Option<u32>,
    pub flags: Option<String>,
    pub reason: Option<String>,
    pub reason_kind: Option<ReasonKind>,
    /// The account whose upload placed it (None: before schema 3).
    pub account: Option<String>,
    /// The hash of the bytes sent, where they differ from the blob.
    pub sent_hash: Option<BlobHash>,
}

/// A message to place in a target folder: one blob, however many copies
/// the mapped source folders hold.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub blob: BlobHash,
    pub flags: String,
    /// INTERNALDATE (instant, offset in minutes); the Date header where the
    /// source gave none; `None` when neither is known (the target picks).
    pub internal_date: Option<(i64, i32)>,
    pub size: u64,
    /// Copies of these bytes in the source folders that map here.
    pub copies: u64,
}

/// The upload ledger of an index (`index.ledger()`).
pub struct Ledger<'a> {
    index: &'a Index,
}

impl Index {
    pub fn ledger(&self) -> Ledger<'_> {
        Ledger { index: self }
    }
}

/// A target folder's id if the ledger knows it.
/// A target folder the ledger knows.
pub struct KnownFolder {
    pub id: i64,
    /// The name on the wire (the one the server gave it, if it differs).
    pub wire: String,
    pub display: String,
}

/// The APPENDs about to be made into one target folder, said before them
/// where a store's index lives in object storage (see [`super::Intent`]):
/// a worker that takes the shard over marks them pending, and settles them
/// by reading the target back, as a restart on the same disk would.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Appends {
    pub mailbox: String,
    pub host: String,
    pub wire: String,
    pub display: String,
    pub account: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// Each message's blob (hex) and its copies.
    pub blobs: Vec<(String, u64)>,
}

/// Where a pending APPEND's message will be, and what is sent.
pub struct Attempt<'a> {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub copies: u64,
    pub account: &'a str,
    /// Bytes other than the blob's, and their hash.
    pub sent: Option<(SentAs, BlobHash)>,
}

impl Ledger<'_> {
    /// Nothing was ever recorded: no target, no target folder, no entry.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.index.connection().query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM targets) AND NOT EXISTS (SELECT 1 FROM target_folders)
                    AND NOT EXISTS (SELECT 1 FROM uploads)",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn target_id(&self, mailbox: &str, host: &str) -> Result<i64> {
        let c = self.index.connection();
        c.execute(
            "INSERT OR IGNORE INTO targets (mailbox, host, created_at) VALUES (?1, ?2, ?3)",
            params![mailbox, host, now()],
        )?;
        Ok(c.query_row(
            "SELECT id FROM targets WHERE mailbox = ?1 AND host = ?2",
            params![mailbox, host],
            |r| r.get(0),
        )?)
    }

    /// The target mailbox's id if it was ever uploaded to.
    pub fn find_target(&self, mailbox: &str, host: &str) -> Result<Option<i64>> {
        Ok(self
            .index
            .connection()
            .query_row(
                "SELECT id FROM targets WHERE mailbox = ?1 AND host = ?2",
                params![mailbox, host],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The target's separator and personal prefix (wire form) as seen on the
    /// last upload, each if known.
    pub fn target_namespace(
        &self,
        mailbox: &str,
        host: &str,
    ) -> Result<(Option<String>, Option<String>)> {
        Ok(self
            .index
            .connection()
            .query_row(
                "SELECT delimiter, personal_prefix FROM targets WHERE mailbox = ?1 AND host = ?2",
                params![mailbox, host],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or_default())
    }

    pub fn set_target_namespace(&self, target: i64, delimiter: &str, prefix: &str) -> Result<()> {
        self.index.connection().execute(
            "UPDATE targets SET delimiter = ?2, personal_prefix = ?3 WHERE id = ?1",
            params![target, delimiter, prefix],
        )?;
        Ok(())
    }

    /// Whether the ledger has anything in the target folder called `wire`.
    pub fn folder_has_uploads(&self, target: i64, wire: &str) -> Result<bool> {
        Ok(self
            .index
            .connection()
            .prepare_cached(
                "SELECT 1 FROM target_folders f JOIN uploads u ON u.target_folder_id = f.id
                 WHERE f.target_id = ?1 AND f.wire_name = ?2 LIMIT 1",
            )?
            .exists(params![target, wire])?)
    }

    /// The bytes the ledger has placed in a target mailbox (uploaded, or
    /// found there), so that a quota check does not count them twice.
    pub fn placed_bytes(&self, mailbox: &str, host: &str) -> Result<u64> {
        let bytes: i64 = self.index.connection().query_row(
            "SELECT COALESCE(SUM(b.size), 0) FROM uploads u
             JOIN target_folders f ON f.id = u.target_folder_id
             JOIN targets t ON t.id = f.target_id
             JOIN blobs b ON b.hash = u.blob_hash
             WHERE t.mailbox = ?1 AND t.host = ?2 AND u.state IN ('done', 'present')",
            [mailbox, host],
            |r| r.get(0),
        )?;
        Ok(bytes.max(0) as u64)
    }

    /// Entries of a target mailbox that did not go, by state (skipped or
    /// failed) and kind of reason, with how many share them.
    pub fn not_uploaded_by_reason(
        &self,
        target: i64,
    ) -> Result<Vec<(State, Option<ReasonKind>, u64)>> {
        let mut stmt = self.index.connection().prepare(
            "SELECT u.state, u.reason_kind, COUNT(*) FROM uploads u
             JOIN target_folders f ON f.id = u.target_folder_id
             WHERE f.target_id = ?1 AND u.state IN ('skipped', 'failed')
             GROUP BY u.state, u.reason_kind",
        )?;
        let rows = stmt.query_map([target], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Messages of a target mailbox sent otherwise than stored (see
    /// [`SentAs`]), by how, with how many.
    pub fn sent_otherwise(&self, target: i64) -> Result<Vec<(String, u64)>> {
        let mut stmt = self.index.connection().prepare(
            "SELECT u.sent_as, COUNT(*) FROM uploads u
             JOIN target_folders f ON f.id = u.target_folder_id
             WHERE f.target_id = ?1 AND u.state = 'done' AND u.sent_as IS NOT NULL
             GROUP BY u.sent_as",
        )?;
        let rows = stmt.query_map([target], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The target folders `account`'s source folders go to now and that hold
    /// entries a check reads back: an old target folder a changed map no
    /// longer uses is not listed.
    pub fn checked_folders(&self, target: i64, account: &str) -> Result<Vec<KnownFolder>> {
        let mut stmt = self.index.connection().prepare(
            "SELECT DISTINCT f.id, COALESCE(f.actual_name, f.wire_name), f.display_name
             FROM target_folders f
             JOIN folders sf ON sf.target_folder_id = f.id
             JOIN accounts a ON a.id = sf.account_id
             WHERE f.target_id = ?1 AND a.name = ?2 AND EXISTS (
                 SELECT 1 FROM uploads u WHERE u.target_folder_id = f.id
                 AND u.state IN ('done', 'present', 'pending', 'failed'))
             ORDER BY f.display_name",
        )?;
        let rows = stmt.query_map(params![target, account], |r| {
            Ok(KnownFolder {
                id: r.get(0)?,
                wire: r.get(1)?,
                display: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn find_target_folder(&self, target: i64, wire: &str) -> Result<Option<i64>> {
        Ok(self
            .index
            .connection()
            .query_row(
                "SELECT id FROM target_folders WHERE target_id = ?1 AND wire_name = ?2",
                params![target, wire],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn target_folder_id(&self, target: i64, wire: &str, display: &str) -> Result<i64> {
        let c = self.index.connection();
        c.execute(
            "INSERT OR IGNORE INTO target_folders (target_id, wire_name, display_name)
             VALUES (?1, ?2, ?3)",
            params![target, wire, display],
        )?;
        Ok(c.query_row(
            "SELECT id FROM target_folders WHERE target_id = ?1 AND wire_name = ?2",
            params![target, wire],
            |r| r.get(0),
        )?)
    }

    /// The name the target took instead of the mapped one, if it refused that.
    pub fn actual_name(&self, folder: i64) -> Result<Option<String>> {
        Ok(self
            .index
            .connection()
            .query_row(
                "SELECT actual_name FROM target_folders WHERE id = ?1",
                [folder],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Whether another target folder of the same mailbox already goes by
    /// `wire` (as its mapped name or the name the target took instead).
    pub fn name_taken(&self, folder: i64, wire: &str) -> Result<bool> {
        Ok(self
            .index
            .connection()
            .prepare_cached(
                "SELECT 1 FROM target_folders o JOIN target_folders f ON f.target_id = o.target_id
                 WHERE f.id = ?1 AND o.id != ?1 AND (o.wire_name = ?2 OR o.actual_name = ?2)",
            )?
            .exists(params![folder, wire])?)
    }

    pub fn set_actual_name(&self, folder: i64, wire: &str, display: &str) -> Result<()> {
        self.index.connection().execute(
            "UPDATE target_folders SET actual_name = ?2, display_name = ?3 WHERE id = ?1",
            params![folder, wire, display],
        )?;
        Ok(())
    }

    /// Whether an upload ever opened the target folder (it exists there).
    pub fn target_folder_seen(&self, folder: i64) -> Result<bool> {
        Ok(self
            .index
            .connection()
            .prepare_cached(
                "SELECT 1 FROM target_folders WHERE id = ?1 AND uidvalidity IS NOT NULL",
            )?
            .exists([folder])?)
    }

    pub fn set_folder_uidvalidity(&self, folder: i64, uidvalidity: u32) -> Result<()> {
        self.index.connection().execute(
            "UPDATE target_folders SET uidvalidity = ?2 WHERE id = ?1",
            params![folder, uidvalidity],
        )?;
        Ok(())
    }

    pub fn entries(&self, folder: i64) -> Result<HashMap<BlobHash, LedgerEntry>> {
        let mut stmt = self.index.connection().prepare_cached(
            "SELECT blob_hash, state, uidvalidity, uidnext, uid, flags, reason, account, sent_hash,
                    reason_kind
             FROM uploads WHERE target_folder_id = ?1",
        )?;
        let rows = stmt.query_map([folder], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, State>(1)?,
                (r.get(2)?, r.get(3)?, r.get(4)?),
                r.get(5)?,
                (r.get(6)?, r.get(9)?),
                r.get(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (
                hash,
                state,
                (uidvalidity, uidnext, uid),
                flags,
                (reason, reason_kind),
                account,
                sent,
            ) = row?;
            let blob = BlobHash::from_hex(&hash)?;
            out.insert(
                blob,
                LedgerEntry {
                    blob,
                    state,
                    uidvalidity,
                    uidnext,
                    uid,
                    flags,
                    reason,
                    reason_kind,
                    account,
                    sent_hash: sent.as_deref().map(BlobHash::from_hex).transpose()?,
                },
            );
        }
        Ok(out)
    }

    /// Before an APPEND: the entry is pending, with where its UID will be.
    pub fn mark_pending(&self, folder: i64, blob: &BlobHash, a: &Attempt) -> Result<()> {
        self.index.connection().execute(
            "INSERT INTO uploads (target_folder_id, blob_hash, state, uidvalidity, uidnext,
                                  duplicates, attempts, updated_at, account, sent_as, sent_hash)
             VALUES (?1, ?2, 'pending', ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9)
             ON CONFLICT (target_folder_id, blob_hash) DO UPDATE SET
                state = 'pending', uidvalidity = ?3, uidnext = ?4, uid = NULL, reason = NULL, reason_kind = NULL,
                duplicates = ?5, attempts = attempts + 1, updated_at = ?6, account = ?7,
                sent_as = ?8, sent_hash = ?9",
            params![
                folder,
                blob.to_hex(),
                a.uidvalidity,
                a.uidnext,
                a.copies.saturating_sub(1) as i64,
                now(),
                a.account,
                a.sent.map(|(s, _)| s.as_str()),
                a.sent.map(|(_, h)| h.to_hex()),
            ],
        )?;
        Ok(())
    }

    /// Marks pending what `intent` names, unless the ledger has it placed
    /// (done or present). A pending entry keeps the lower UIDNEXT, so the
    /// read-back starts early enough for both. Returns how many it marked.
    pub fn replay(&self, intent: &Appends) -> Result<u64> {
        let target = self.target_id(&intent.mailbox, &intent.host)?;
        let folder = self.target_folder_id(target, &intent.wire, &intent.display)?;
        let tx = self.index.connection().unchecked_transaction()?;
        let mut marked = 0;
        {
            let mut insert = tx.prepare(
                "INSERT INTO uploads (target_folder_id, blob_hash, state, uidvalidity, uidnext,
                                      duplicates, attempts, updated_at, account)
                 VALUES (?1, ?2, 'pending', ?3, ?4, ?5, 1, ?6, ?7)
                 ON CONFLICT (target_folder_id, blob_hash) DO UPDATE SET
                    uidnext = CASE WHEN state = 'pending' AND uidvalidity = ?3
                                        AND uidnext IS NOT NULL
                                   THEN MIN(uidnext, ?4) ELSE ?4 END,
                    state = 'pending', uidvalidity = ?3, uid = NULL, reason = NULL,
                    reason_kind = NULL, duplicates = ?5, updated_at = ?6, account = ?7
                 WHERE state NOT IN ('done', 'present')",
            )?;
            // A blob fetched after the snapshot (sync, cutover) is not in
            // this index: its mail is found at the target by the read-back.
            let mut known = tx.prepare("SELECT 1 FROM blobs WHERE hash = ?1")?;
            for (hex, copies) in &intent.blobs {
                let blob = BlobHash::from_hex(hex)?;
                if !known.exists([blob.to_hex()])? {
                    continue;
                }
                marked += insert.execute(params![
                    folder,
                    blob.to_hex(),
                    intent.uidvalidity,
                    intent.uidnext,
                    copies.saturating_sub(1) as i64,
                    now(),
                    intent.account,
                ])? as u64;
            }
        }
        tx.commit()?;
        Ok(marked)
    }

    /// After the server's OK (or a confirmed match at the target).
    pub fn mark_done(
        &self,
        folder: i64,
        blob: &BlobHash,
        state: State,
        uidvalidity: Option<u32>,
        uid: Option<u32>,
        flags: &str,
    ) -> Result<()> {
        self.index.connection().execute(
            "INSERT INTO uploads (target_folder_id, blob_hash, state, uidvalidity, uid, flags,
                                  updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (target_folder_id, blob_hash) DO UPDATE SET
                state = ?3, uidvalidity = COALESCE(?4, uidvalidity), uid = ?5, flags = ?6,
                reason = NULL, reason_kind = NULL, updated_at = ?7,
                sent_as = CASE WHEN ?3 = 'present' THEN NULL ELSE sent_as END,
                sent_hash = CASE WHEN ?3 = 'present' THEN NULL ELSE sent_hash END",
            params![
                folder,
                blob.to_hex(),
                state.as_str(),
                uidvalidity,
                uid,
                flags,
                now()
            ],
        )?;
        Ok(())
    }

    /// Skipped for good, for `reason`.
    pub fn mark_skipped(
        &self,
        folder: i64,
        blob: &BlobHash,
        reason: &SkipReason,
        copies: u64,
    ) -> Result<()> {
        self.not_uploaded(
            folder,
            blob,
            State::Skipped,
            reason.kind(),
            &reason.to_string(),
            copies,
        )
    }

    /// Failed this time, for `reason`: the next upload tries again.
    pub fn mark_failed(
        &self,
        folder: i64,
        blob: &BlobHash,
        reason: &FailReason,
        copies: u64,
    ) -> Result<()> {
        self.not_uploaded(
            folder,
            blob,
            State::Failed,
            reason.kind(),
            &reason.to_string(),
            copies,
        )
    }

    fn not_uploaded(
        &self,
        folder: i64,
        blob: &BlobHash,
        state: State,
        kind: ReasonKind,
        words: &str,
        copies: u64,
    ) -> Result<()> {
        self.index.connection().execute(
            "INSERT INTO uploads (target_folder_id, blob_hash, state, reason, reason_kind,
                                  duplicates, attempts, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)
             ON CONFLICT (target_folder_id, blob_hash) DO UPDATE SET
                state = ?3, reason = ?4, reason_kind = ?5, uidnext = NULL,
                attempts = attempts + 1, updated_at = ?7",
            params![
                folder,
                blob.to_hex(),
                state.as_str(),
                words,
                kind.as_str(),
                copies.saturating_sub(1) as i64,
                now()
            ],
        )?;
        Ok(())
    }

    /// A pending entry that reconciliation showed was never appended.
    pub fn forget(&self, folder: i64, blob: &BlobHash) -> Result<()> {
        self.index.connection().execute(
            "DELETE FROM uploads WHERE target_folder_id = ?1 AND blob_hash = ?2",
            params![folder, blob.to_hex()],
        )?;
        Ok(())
    }

    /// After a flag push by `account`, which from then on answers for the
    /// entry's flags if no account did (entries from before schema 3).
    pub fn set_flags(
        &self,
        folder: i64,
        blob: &BlobHash,
        flags: &str,
        account: &str,
    ) -> Result<()> {
        self.index.connection().execute(
            "UPDATE uploads SET flags = ?3, updated_at = ?4, account = COALESCE(account, ?5)
             WHERE target_folder_id = ?1 AND blob_hash = ?2",
            params![folder, blob.to_hex(), flags, now(), account],
        )?;
        Ok(())
    }

    /// The Message-IDs of `blobs`, where they have one.
    pub fn message_ids<'a>(
        &self,
        blobs: impl Iterator<Item = &'a BlobHash>,
    ) -> Result<HashMap<BlobHash, String>> {
        let mut stmt = self
            .index
            .connection()
            .prepare_cached("SELECT message_id FROM blobs WHERE hash = ?1")?;
        let mut out = HashMap::new();
        for blob in blobs {
            let id: Option<String> = stmt
                .query_row([blob.to_hex()], |r| r.get(0))
                .optional()?
                .flatten();
            if let Some(id) = id {
                out.insert(*blob, id);
            }
        }
        Ok(out)
    }

    /// Records which target folder the source folders go to; `None` when the
    /// folder map leaves them out.
    pub fn link_source_folders(&self, source_folders: &[i64], target: Option<i64>) -> Result<()> {
        // left_out: the folder map sends the folder nowhere, on purpose.
        let mut stmt = self.index.connection().prepare_cached(
            "UPDATE folders SET target_folder_id = ?2, left_out = ?2 IS NULL WHERE id = ?1",
        )?;
        for f in source_folders {
            stmt.execute(rusqlite::params![f, target])?;
        }
        Ok(())
    }

    /// What the mapped source folders hold now, one entry per blob, oldest first.
    pub fn outgoing(&self, source_folders: &[i64]) -> Result<Vec<Outgoing>> {
        let mut out: Vec<Outgoing> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        let mut stmt = self.index.connection().prepare_cached(
            "SELECT m.blob_hash, m.flags, m.internal_date, m.internal_date_offset, m.size, b.date
             FROM messages m JOIN blobs b ON b.hash = m.blob_hash
             WHERE m.folder_id = ?1 AND m.expunged_at IS NULL
             ORDER BY m.internal_date, m.uid",
        )?;
        for folder in source_folders {
            let rows = stmt.query_map([folder], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i32>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
            for row in rows {
                let (hash, flags, date, offset, size, header_date) = row?;
                match at.get(&hash) {
                    Some(&i) => out[i].copies += 1,
                    None => {
                        at.insert(hash.clone(), out.len());
                        out.push(Outgoing {
                            blob: BlobHash::from_hex(&hash)?,
                            flags,
                            internal_date: match date {
                                Some(d) => Some((d, offset.unwrap_or(0))),
                                // Unknown at the source: the Date header, if any.
                                None => header_date.as_deref().and_then(date_header_instant),
                            },
                            size: size as u64,
                            copies: 1,
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The instant and offset (minutes) of a Date header as the index keeps it
/// (RFC 3339, from mail-parser).
fn date_header_instant(rfc3339: &str) -> Option<(i64, i32)> {
    let d = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    Some((d.timestamp(), d.offset().local_minus_utc() / 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use rusqlite_migration::{M, Migrations};

    /// An index as schema 6 left it, with the ledger's words of then.
    fn index_of_schema_6(path: &std::path::Path, entries: &[(&str, &str)]) {
        let mut conn = Connection::open(path).unwrap();
        let schema: Vec<M<'static>> = super::super::index::SCHEMA[..6]
            .iter()
            .map(|sql| M::up(sql))
            .collect();
        Migrations::new(schema).to_latest(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO targets (id, mailbox, host, created_at) VALUES (1, 'a', 'h', 0);
             INSERT INTO target_folders (id, target_id, wire_name, display_name)
             VALUES (1, 1, 'INBOX', 'INBOX');",
        )
        .unwrap();
        for (i, (state, reason)) in entries.iter().enumerate() {
            let hash = format!("{i:064x}");
            conn.execute(
                "INSERT INTO blobs (hash, size, stored_size, created_at) VALUES (?1, 1, 1, 0)",
                [&hash],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO uploads (target_folder_id, blob_hash, state, reason, updated_at)
                 VALUES (1, ?1, ?2, ?3, 0)",
                params![hash, state, reason],
            )
            .unwrap();
        }
    }

    #[test]
    fn reasons_written_as_words_get_their_kinds_when_the_index_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let old = [
            ("skipped", "40.0 MiB is over the target's limit of 35.0 MiB"),
            ("skipped", "NO [TOOBIG] APPEND failed: message too large."),
            ("skipped", "NO [LIMIT] APPEND failed: line too long."),
            ("skipped", NUL_SKIP_REASON),
            ("skipped", "NO [PARSE] invalid header"),
            (
                "failed",
                "stored message 00ab is damaged: the file is missing; the next mirror fetches \
                 it again from the source",
            ),
            (
                "failed",
                "missing at the target when checked on 2026-11-01 10:00 UTC",
            ),
            ("failed", "NO [OVERQUOTA] quota exceeded"),
        ];
        index_of_schema_6(&path, &old);
        let index = Index::open(&path).unwrap();
        let entries = index.ledger().entries(1).unwrap();
        let kind = |i: usize| {
            let hash = BlobHash::from_hex(&format!("{i:064x}")).unwrap();
            entries[&hash].reason_kind
        };
        let expected = [
            ReasonKind::TooLarge,
            ReasonKind::TooLarge,
            ReasonKind::LineTooLong,
            ReasonKind::NulBytes,
            ReasonKind::Rejected,
            ReasonKind::Damaged,
            ReasonKind::MissingAtTarget,
            ReasonKind::Refused,
        ];
        for (i, want) in expected.into_iter().enumerate() {
            assert_eq!(kind(i), Some(want), "{:?}", old[i]);
        }
        // The words stay as they were.
        let hash = BlobHash::from_hex(&format!("{:064x}", 4)).unwrap();
        assert_eq!(
            entries[&hash].reason.as_deref(),
            Some("NO [PARSE] invalid header")
        );
    }

    #[test]
    fn an_intent_marks_pending_what_the_ledger_has_not_placed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        // 0 done, 1 failed, 2 pending from UIDNEXT 5, 3 present; 4 unknown.
        index_of_schema_6(
            &path,
            &[
                ("done", ""),
                ("failed", "NO [OVERQUOTA] quota exceeded"),
                ("pending", ""),
                ("present", ""),
            ],
        );
        let index = Index::open(&path).unwrap();
        let blob = |i: usize| BlobHash::from_hex(&format!("{i:064x}")).unwrap();
        index
            .connection()
            .execute(
                "INSERT INTO blobs (hash, size, stored_size, created_at) VALUES (?1, 1, 1, 0)",
                [blob(4).to_hex()],
            )
            .unwrap();
        let a = Attempt {
            uidvalidity: 7,
            uidnext: 5,
            copies: 1,
            account: "a@x",
            sent: None,
        };
        index.ledger().mark_pending(1, &blob(2), &a).unwrap();
        let intent = Appends {
            mailbox: "a".into(),
            host: "h".into(),
            wire: "INBOX".into(),
            display: "INBOX".into(),
            account: "a@x".into(),
            uidvalidity: 7,
            uidnext: 9,
            // 5 is not in this index (fetched after its snapshot): passed over.
            blobs: (0..6).map(|i| (blob(i).to_hex(), 2)).collect(),
        };
        assert_eq!(index.ledger().replay(&intent).unwrap(), 3);
        let entries = index.ledger().entries(1).unwrap();
        let state = |i: usize| entries[&blob(i)].state;
        assert_eq!(state(0), State::Done);
        assert_eq!(state(3), State::Present);
        for i in [1, 2, 4] {
            assert_eq!(state(i), State::Pending, "{i}");
            assert_eq!(entries[&blob(i)].account.as_deref(), Some("a@x"));
        }
        // The read-back starts where the earlier attempt's message would be.
        assert_eq!(entries[&blob(2)].uidnext, Some(5));
        assert_eq!(entries[&blob(4)].uidnext, Some(9));
        assert_eq!(entries[&blob(1)].reason, None);
        // Another target folder, new to this index, is made for it.
        let elsewhere = Appends {
            wire: "Archive".into(),
            display: "Archive".into(),
            ..intent
        };
        assert_eq!(index.ledger().replay(&elsewhere).unwrap(), 5);
        let folder = index.ledger().find_target_folder(1, "Archive").unwrap();
        let archived = index.ledger().entries(folder.unwrap()).unwrap();
        assert_eq!(archived.len(), 5);
    }

    #[test]
    fn a_new_reason_is_stored_as_its_kind_and_its_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        index_of_schema_6(&path, &[("pending", "")]);
        let index = Index::open(&path).unwrap();
        let blob = BlobHash::from_hex(&format!("{:064x}", 0)).unwrap();
        let reason = SkipReason::TooLarge {
            size: 40 << 20,
            limit: Some(35 << 20),
            said: None,
        };
        index.ledger().mark_skipped(1, &blob, &reason, 1).unwrap();
        let entry = &index.ledger().entries(1).unwrap()[&blob];
        assert_eq!(entry.state, State::Skipped);
        assert_eq!(entry.reason_kind, Some(ReasonKind::TooLarge));
        assert_eq!(
            entry.reason.as_deref(),
            Some("40.0 MiB is over the target's limit of 35.0 MiB")
        );
        let by_reason = index.ledger().not_uploaded_by_reason(1).unwrap();
        assert_eq!(
            by_reason,
            vec![(State::Skipped, Some(ReasonKind::TooLarge), 1)]
        );
    }

    #[test]
    fn an_unknown_ledger_state_is_an_error_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        index_of_schema_6(&path, &[("done", "")]);
        let index = Index::open(&path).unwrap();
        // A foreign or damaged ledger: the CHECK constraint bypassed.
        index
            .connection()
            .execute_batch(
                "PRAGMA ignore_check_constraints = ON;
                 UPDATE uploads SET state = 'lost';",
            )
            .unwrap();
        let err = format!("{:#}", index.ledger().entries(1).unwrap_err());
        assert!(err.contains("unknown state \"lost\""), "{err}");
    }
}
