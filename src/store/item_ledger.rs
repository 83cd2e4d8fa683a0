//! The items' ledger: what each target mailbox holds of each contact,
//! event and task (schema 9), by the rules of schema/0009_item_uploads.sql.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use rusqlite::{OptionalExtension, params};

use super::index::now;
use super::items::ItemKind;
use super::{BlobHash, Index};

/// The creates and updates about to go to one target mailbox, said before
/// them where a store's index lives in object storage (see
/// [`super::Intent`]): a worker that takes the shard over marks them
/// pending, so each create is looked up by its tag before it is made again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ItemIntent {
    pub account: String,
    pub target: String,
    pub items: Vec<IntendedItem>,
}

/// One item of an [`ItemIntent`], named as the source names it (row ids
/// differ between a snapshot and the index that wrote the intent).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IntendedItem {
    pub kind: String,
    pub collection: String,
    pub uid: String,
    /// The blob being sent (hex), the tag it goes with, its container.
    pub blob: String,
    pub tag: String,
    pub container_id: String,
}

/// Where an item stands at one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Pending,
    Done,
    /// Refused for good, or not representable: kept in the store, reported.
    Skipped,
    /// Refused for now (throttled past patience, unavailable): tried again.
    Failed,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::Done => "done",
            ItemState::Skipped => "skipped",
            ItemState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<ItemState> {
        Ok(match s {
            "pending" => ItemState::Pending,
            "done" => ItemState::Done,
            "skipped" => ItemState::Skipped,
            "failed" => ItemState::Failed,
            _ => bail!("the items' ledger holds an unknown state {s:?}"),
        })
    }
}

/// Why an item is not at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemReason {
    /// Skipped: the target has no way to hold it (a rule it cannot express,
    /// an item with no start).
    CannotRepresent,
    /// Skipped: the target refused it for good (a 400), in its words.
    Refused,
    /// Failed: the app may not write this mailbox (403), or it has none (404).
    AccessDenied,
    /// Failed: busy, throttled or unavailable past the run's patience.
    Unavailable,
    /// Failed: a read-back (`verify --target --requeue-missing`) did not
    /// find it at the target; the next upload creates it again.
    MissingAtTarget,
}

impl ItemReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemReason::CannotRepresent => "cannot-represent",
            ItemReason::Refused => "refused",
            ItemReason::AccessDenied => "access-denied",
            ItemReason::Unavailable => "unavailable",
            ItemReason::MissingAtTarget => "missing-at-target",
        }
    }

    fn parse(s: &str) -> Result<ItemReason> {
        [
            ItemReason::CannotRepresent,
            ItemReason::Refused,
            ItemReason::AccessDenied,
            ItemReason::Unavailable,
            ItemReason::MissingAtTarget,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| anyhow!("the items' ledger holds an unknown reason {s:?}"))
    }

    /// Skipped reasons stay skipped until the item changes; failed ones
    /// are tried again on the next run.
    pub fn state(self) -> ItemState {
        match self {
            ItemReason::CannotRepresent | ItemReason::Refused => ItemState::Skipped,
            ItemReason::AccessDenied | ItemReason::Unavailable | ItemReason::MissingAtTarget => {
                ItemState::Failed
            }
        }
    }
}

/// An item's ledger row at one target.
#[derive(Debug, Clone)]
pub struct ItemSent {
    pub state: ItemState,
    pub blob: BlobHash,
    pub tag: String,
    pub container_id: Option<String>,
    pub graph_id: Option<String>,
    pub reason: Option<(ItemReason, String)>,
    pub attempts: u32,
}

/// An item of an account with what the target holds of it.
#[derive(Debug, Clone)]
pub struct ItemToSend {
    pub id: i64,
    pub kind: ItemKind,
    pub collection: String,
    pub uid: String,
    pub name: String,
    pub blob: BlobHash,
    pub sent: Option<ItemSent>,
}

/// An item that is not at the target, or is there without some of its
/// fields, for status and report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ItemNotice {
    pub kind: ItemKind,
    pub collection: String,
    pub name: String,
    pub state: ItemState,
    pub reason: Option<ItemReason>,
    /// The target's words, or what it could not hold.
    pub detail: String,
}

/// Where an account's items stand at its target (each item counted once,
/// by its latest ledger row).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ItemUploadCounts {
    /// At the target as the store holds them.
    pub done: u64,
    /// At the target, but changed in the store since (the next upload updates them).
    pub outdated: u64,
    pub pending: u64,
    /// Not uploadable (refused for good, or nothing at the target can hold them).
    pub skipped: u64,
    pub failed: u64,
    /// Never sent.
    pub untried: u64,
    /// Done, but with something the target could not hold.
    pub with_losses: u64,
}

impl ItemUploadCounts {
    /// Nothing is left to send: every item is at the target as stored, or
    /// known not to be uploadable.
    pub fn settled(&self) -> bool {
        self.outdated + self.pending + self.failed + self.untried == 0
    }
}

pub struct ItemLedger<'a> {
    index: &'a Index,
}

impl Index {
    pub fn item_ledger(&self) -> ItemLedger<'_> {
        ItemLedger { index: self }
    }
}

fn kind_of(s: &str) -> Result<ItemKind> {
    [ItemKind::Contact, ItemKind::Event, ItemKind::Task]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| anyhow!("the index holds an item of unknown kind {s:?}"))
}

impl ItemLedger<'_> {
    /// Every item of `account` with its row for `target`, by kind and collection.
    pub fn items_to_send(&self, account: &str, target: &str) -> Result<Vec<ItemToSend>> {
        let conn = self.index.connection();
        let mut stmt = conn.prepare(
            "SELECT i.id, i.kind, i.collection, i.uid, i.name, i.blob_hash,
                    u.state, u.blob_hash, u.tag, u.container_id, u.graph_id,
                    u.reason_kind, u.reason, u.attempts
             FROM items i JOIN accounts a ON a.id = i.account_id
             LEFT JOIN item_uploads u ON u.item_id = i.id AND u.target = ?2 COLLATE NOCASE
             WHERE a.name = ?1 COLLATE NOCASE
             ORDER BY i.kind, i.collection, i.id",
        )?;
        let rows = stmt.query_map(params![account, target], |r| {
            let sent = match r.get::<_, Option<String>>(6)? {
                None => None,
                Some(state) => Some((
                    state,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, Option<String>>(11)?,
                    r.get::<_, Option<String>>(12)?,
                    r.get::<_, i64>(13)?,
                )),
            };
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                sent,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, collection, uid, name, blob, sent) = row?;
            let sent = match sent {
                None => None,
                Some((state, blob, tag, container_id, graph_id, kind, words, attempts)) => {
                    Some(ItemSent {
                        state: ItemState::parse(&state)?,
                        blob: BlobHash::from_hex(&blob)?,
                        tag,
                        container_id,
                        graph_id,
                        reason: match kind {
                            Some(k) => Some((ItemReason::parse(&k)?, words.unwrap_or_default())),
                            None => None,
                        },
                        attempts: attempts.max(0) as u32,
                    })
                }
            };
            out.push(ItemToSend {
                id,
                kind: kind_of(&kind)?,
                collection,
                uid,
                name,
                blob: BlobHash::from_hex(&blob)?,
                sent,
            });
        }
        Ok(out)
    }

    /// Marks pending what `intent` names, unless the ledger has the item
    /// done as that blob. An item the index does not know (imported after
    /// its snapshot) is passed over: it was not sent from this index.
    /// Returns how many it marked.
    pub fn replay(&self, intent: &ItemIntent) -> Result<u64> {
        let tx = self.index.connection().unchecked_transaction()?;
        let mut marked = 0;
        {
            let mut find = tx.prepare(
                "SELECT i.id, u.state, u.blob_hash
                 FROM items i JOIN accounts a ON a.id = i.account_id
                 LEFT JOIN item_uploads u ON u.item_id = i.id AND u.target = ?5
                 WHERE a.name = ?1 COLLATE NOCASE AND i.kind = ?2 AND i.collection = ?3
                       AND i.uid = ?4",
            )?;
            let mut known = tx.prepare("SELECT 1 FROM blobs WHERE hash = ?1")?;
            let target = intent.target.to_lowercase();
            for item in &intent.items {
                let found = find
                    .query_row(
                        params![intent.account, item.kind, item.collection, item.uid, target],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, Option<String>>(1)?,
                                r.get::<_, Option<String>>(2)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((id, state, blob)) = found else {
                    continue;
                };
                if state.as_deref() == Some("done") && blob.as_deref() == Some(&item.blob) {
                    continue;
                }
                let blob = BlobHash::from_hex(&item.blob)?;
                if !known.exists([blob.to_hex()])? {
                    continue;
                }
                self.mark_pending(id, &target, &blob, &item.tag, &item.container_id)?;
                marked += 1;
            }
        }
        tx.commit()?;
        Ok(marked)
    }

    /// Before a create or an update goes out: the blob being sent and its
    /// tag (a create's; an update keeps the row's Graph id).
    pub fn mark_pending(
        &self,
        item_id: i64,
        target: &str,
        blob: &BlobHash,
        tag: &str,
        container_id: &str,
    ) -> Result<()> {
        // One mailbox, whatever case the accounts file gives it in.
        let target = &target.to_lowercase();
        self.index.connection().execute(
            "INSERT INTO item_uploads (item_id, target, state, blob_hash, tag, container_id,
                                       attempts, updated_at)
             VALUES (?1, ?2, 'pending', ?3, ?4, ?5, 1, ?6)
             ON CONFLICT (item_id, target) DO UPDATE SET
                state = 'pending', blob_hash = excluded.blob_hash,
                tag = CASE WHEN item_uploads.graph_id IS NULL THEN excluded.tag
                      ELSE item_uploads.tag END,
                container_id = excluded.container_id,
                reason_kind = NULL, reason = NULL,
                attempts = item_uploads.attempts + 1, updated_at = excluded.updated_at",
            params![item_id, target, blob.to_hex(), tag, container_id, now()],
        )?;
        Ok(())
    }

    /// The target holds the item, as `blob`, under `graph_id`; `losses`
    /// names what it could not hold of it.
    pub fn mark_done(
        &self,
        item_id: i64,
        target: &str,
        blob: &BlobHash,
        graph_id: &str,
        losses: &[String],
    ) -> Result<()> {
        // One mailbox, whatever case the accounts file gives it in.
        let target = &target.to_lowercase();
        let changed = self.index.connection().execute(
            "UPDATE item_uploads SET state = 'done', blob_hash = ?3, graph_id = ?4,
                    losses = ?5, reason_kind = NULL, reason = NULL, updated_at = ?6
             WHERE item_id = ?1 AND target = ?2",
            params![
                item_id,
                target,
                blob.to_hex(),
                graph_id,
                (!losses.is_empty()).then(|| losses.join("\n")),
                now()
            ],
        )?;
        if changed != 1 {
            bail!("no pending ledger row for item {item_id} at {target}");
        }
        Ok(())
    }

    /// The item was not sent or not taken, for `reason`. The Graph id of an
    /// earlier version stays (the next change updates it).
    pub fn mark_refused(
        &self,
        item_id: i64,
        target: &str,
        blob: &BlobHash,
        tag: &str,
        reason: ItemReason,
        words: &str,
    ) -> Result<()> {
        // One mailbox, whatever case the accounts file gives it in.
        let target = &target.to_lowercase();
        self.index.connection().execute(
            "INSERT INTO item_uploads (item_id, target, state, blob_hash, tag, reason_kind,
                                       reason, attempts, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8)
             ON CONFLICT (item_id, target) DO UPDATE SET
                state = excluded.state, blob_hash = excluded.blob_hash,
                reason_kind = excluded.reason_kind, reason = excluded.reason,
                updated_at = excluded.updated_at",
            params![
                item_id,
                target,
                reason.state().as_str(),
                blob.to_hex(),
                tag,
                reason.as_str(),
                words,
                now()
            ],
        )?;
        Ok(())
    }

    /// The item is at the target under `graph_id`, but a step after its
    /// create or update (an exception of its series) failed for now: failed,
    /// with its Graph id, so the next run updates it (one write).
    pub fn mark_failed_at(
        &self,
        item_id: i64,
        target: &str,
        blob: &BlobHash,
        graph_id: &str,
        words: &str,
    ) -> Result<()> {
        // One mailbox, whatever case the accounts file gives it in.
        let target = &target.to_lowercase();
        let changed = self.index.connection().execute(
            "UPDATE item_uploads SET state = 'failed', blob_hash = ?3, graph_id = ?4,
                    reason_kind = 'unavailable', reason = ?5, updated_at = ?6
             WHERE item_id = ?1 AND target = ?2",
            params![item_id, target, blob.to_hex(), graph_id, words, now()],
        )?;
        if changed != 1 {
            bail!("no ledger row for item {item_id} at {target}");
        }
        Ok(())
    }

    /// A read-back did not find the item: it is created again by the next
    /// upload (the Graph id is dropped, so no update is tried).
    pub fn mark_missing(&self, item_id: i64, target: &str) -> Result<()> {
        // One mailbox, whatever case the accounts file gives it in.
        let target = &target.to_lowercase();
        self.index.connection().execute(
            "UPDATE item_uploads SET state = 'failed', graph_id = NULL,
                    reason_kind = 'missing-at-target',
                    reason = 'not found at the target by a read-back', updated_at = ?3
             WHERE item_id = ?1 AND target = ?2",
            params![item_id, target, now()],
        )?;
        Ok(())
    }

    /// A pending create the target turned out not to hold: forget the
    /// attempt's Graph id so the next create starts clean.
    pub fn forget_graph_id(&self, item_id: i64, target: &str) -> Result<()> {
        // One mailbox, whatever case the accounts file gives it in.
        let target = &target.to_lowercase();
        self.index.connection().execute(
            "UPDATE item_uploads SET graph_id = NULL WHERE item_id = ?1 AND target = ?2",
            params![item_id, target],
        )?;
        Ok(())
    }

    /// Per account that has items: where they stand at its target.
    pub fn counts(&self) -> Result<BTreeMap<String, ItemUploadCounts>> {
        let mut stmt = self.index.connection().prepare(
            "SELECT a.name, u.state, u.blob_hash = i.blob_hash, (u.losses IS NOT NULL), COUNT(*)
             FROM items i JOIN accounts a ON a.id = i.account_id
             LEFT JOIN item_uploads u ON u.id = (SELECT id FROM item_uploads
                                                 WHERE item_id = i.id
                                                 ORDER BY updated_at DESC, id DESC LIMIT 1)
             GROUP BY 1, 2, 3, 4",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<bool>>(2)?,
                r.get::<_, Option<bool>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out: BTreeMap<String, ItemUploadCounts> = BTreeMap::new();
        for row in rows {
            let (account, state, current, lossy, n) = row?;
            let n = n.max(0) as u64;
            let c = out.entry(account).or_default();
            let state = state.as_deref().map(ItemState::parse).transpose()?;
            match (state, current.unwrap_or(false)) {
                (None, _) => c.untried += n,
                (Some(ItemState::Done), true) => {
                    c.done += n;
                    if lossy.unwrap_or(false) {
                        c.with_losses += n;
                    }
                }
                (Some(ItemState::Done | ItemState::Skipped), false) => c.outdated += n,
                (Some(ItemState::Skipped), true) => c.skipped += n,
                (Some(ItemState::Pending), _) => c.pending += n,
                (Some(ItemState::Failed), _) => c.failed += n,
            }
        }
        Ok(out)
    }

    /// The items of `account` that are not at the target as they are in
    /// the store, or are there with losses.
    pub fn notices(&self, account: &str) -> Result<Vec<ItemNotice>> {
        let mut stmt = self.index.connection().prepare(
            "SELECT i.kind, i.collection, i.name, u.state, u.reason_kind,
                    COALESCE(u.reason, u.losses, '')
             FROM item_uploads u JOIN items i ON i.id = u.item_id
             JOIN accounts a ON a.id = i.account_id
             WHERE a.name = ?1 COLLATE NOCASE
               AND (u.state != 'done' OR u.losses IS NOT NULL)
             ORDER BY i.kind, i.collection, i.name",
        )?;
        let rows = stmt.query_map([account], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, collection, name, state, reason, detail) = row?;
            out.push(ItemNotice {
                kind: kind_of(&kind)?,
                collection,
                name,
                state: ItemState::parse(&state)?,
                reason: reason.as_deref().map(ItemReason::parse).transpose()?,
                detail,
            });
        }
        Ok(out)
    }
}
