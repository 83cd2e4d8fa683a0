//! What the store says of a batch, gathered once for `status`, `status
//! --json` and the HTML report, so that all three show the same numbers.

use crate::store::item_ledger::{ItemNotice, ItemUploadCounts};
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::store::Index;
use crate::store::index::{AccountRun, FolderStatus, NotUploaded, Stage, TargetFolderStatus};

/// Where an account of the batch stands, never more hopeful than the
/// store and the last runs.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// In the accounts file; nothing of it is in the store yet.
    #[default]
    NotMirrored,
    /// Its last mirror or upload failed (see `mirror` and `upload`), or a
    /// folder of it could not be checked.
    Failed,
    /// In the store; not (yet) all of it at the target.
    InProgress,
    /// Mirrored and uploaded by runs that ended well, nothing pending or
    /// failed.
    Complete,
}

impl AccountState {
    pub fn label(self) -> &'static str {
        match self {
            AccountState::NotMirrored => "not mirrored",
            AccountState::Failed => "FAILED",
            AccountState::InProgress => "in progress",
            AccountState::Complete => "complete",
        }
    }
}

/// One account's totals over its folders: the one-line progress summary.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AccountStatus {
    pub account: String,
    /// The target mailbox, once an upload mapped the account's folders.
    pub target: Option<String>,
    pub folders: u64,
    /// Messages the source reported at the last check.
    pub at_source: u64,
    pub stored: u64,
    pub stored_bytes: u64,
    pub expunged: u64,
    pub uploaded: u64,
    pub already_present: u64,
    pub skipped: u64,
    pub failed: u64,
    pub pending: u64,
    /// Stored messages in folders the folder map leaves out of the upload.
    pub left_out: u64,
    pub last_checked_at: Option<i64>,
    /// Folders whose last check did not finish.
    pub folders_failed: u64,
    pub state: AccountState,
    /// How the account's last mirror and last upload ended (None: never run).
    pub mirror: Option<AccountRun>,
    pub upload: Option<AccountRun>,
    /// Contacts, events and tasks imported for the mailbox.
    pub items: crate::store::items::ItemCounts,
    /// Where they stand at the target (through Microsoft Graph).
    pub items_uploaded: ItemUploadCounts,
    /// Items not uploaded (and why), or uploaded without some fields.
    pub item_notices: Vec<ItemNotice>,
}

impl AccountStatus {
    /// Share of the stored messages that are settled at the target
    /// (uploaded, already there, or skipped for good), in percent; below
    /// 100 unless the account is complete.
    pub fn percent_done(&self) -> f64 {
        let to_move = self.stored.saturating_sub(self.left_out);
        if to_move == 0 && self.state != AccountState::Complete {
            // Nothing stored yet, or nothing known: nothing done.
            return 0.0;
        }
        let share = if to_move == 0 {
            100.0
        } else {
            let settled = self.uploaded + self.already_present + self.skipped;
            (settled as f64 * 100.0 / to_move as f64).min(100.0)
        };
        if self.state == AccountState::Complete {
            share
        } else if self.state == AccountState::NotMirrored {
            0.0
        } else {
            share.min(99.0)
        }
    }

    /// The last error of the account, mirror first, in the server's words.
    pub fn last_error(&self) -> Option<(Stage, &AccountRun)> {
        [(Stage::Mirror, &self.mirror), (Stage::Upload, &self.upload)]
            .into_iter()
            .find_map(|(stage, run)| {
                run.as_ref()
                    .filter(|r| r.error.is_some())
                    .map(|r| (stage, r))
            })
    }

    fn settle_state(&mut self) {
        let mirrored =
            self.folders > 0 || self.mirror.as_ref().is_some_and(|m| m.last_ok_at.is_some());
        self.state = if self.last_error().is_some() || self.folders_failed > 0 {
            AccountState::Failed
        } else if !mirrored {
            AccountState::NotMirrored
        } else if self.upload.as_ref().is_some_and(|u| u.last_ok_at.is_some())
            && self.pending == 0
            && self.failed == 0
            && self.items_uploaded.settled()
        {
            AccountState::Complete
        } else {
            AccountState::InProgress
        };
    }
}

/// When each phase last finished (Unix seconds).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LastRuns {
    pub preflight: Option<i64>,
    pub mirror: Option<i64>,
    pub upload: Option<i64>,
    pub cutover: Option<i64>,
}

/// The last cutover of the batch.
#[derive(Debug, Clone, Serialize)]
pub struct CutoverRecord {
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub complete: bool,
    pub summary: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub store: String,
    /// Every account is complete (and there is at least one).
    pub complete: bool,
    /// The accounts file the batch was read from, if one was given.
    pub accounts_file: Option<String>,
    pub generated_at: i64,
    pub last_runs: LastRuns,
    pub accounts: Vec<AccountStatus>,
    pub folders: Vec<FolderStatus>,
    pub targets: Vec<TargetFolderStatus>,
    pub not_uploaded: Vec<NotUploaded>,
    pub cutover: Option<CutoverRecord>,
    /// With a store in object storage: each shard of the batch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardState>,
}

/// Which accounts a snapshot shows.
#[derive(Debug, Clone, Default)]
pub struct Selection<'a> {
    /// The batch's accounts file and its accounts, in its order: every one
    /// is shown, and only those.
    pub batch: Option<(&'a Path, Vec<String>)>,
    /// Only this account (any case).
    pub account: Option<&'a str>,
}

impl Snapshot {
    pub fn gather(store: &Path, index: &Index, select: &Selection<'_>) -> Result<Snapshot> {
        Snapshot::read(index)?.select(&store.display().to_string(), select)
    }

    /// Everything one index says, of every account it knows.
    pub fn read(index: &Index) -> Result<Snapshot> {
        let folders = index.folder_status(None)?;
        let mut accounts = account_totals(&folders);
        let runs = index.account_runs()?;
        let items = index.item_counts()?;
        let items_uploaded = index.item_ledger().counts()?;
        // Accounts that never reached the store but have a run (a refused
        // login on the first mirror), or only contacts and calendars.
        for name in runs
            .iter()
            .map(|r| &r.account)
            .chain(items.iter().map(|(a, _)| a))
        {
            if !accounts.iter().any(|a| &a.account == name) {
                accounts.push(AccountStatus {
                    account: name.clone(),
                    ..AccountStatus::default()
                });
            }
        }
        for a in &mut accounts {
            if let Some((_, counts)) = items
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&a.account))
            {
                a.items = counts.clone();
            }
            if let Some((_, counts)) = items_uploaded
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&a.account))
            {
                a.items_uploaded = counts.clone();
                a.item_notices = index.item_ledger().notices(&a.account)?;
            }
            for r in runs
                .iter()
                .filter(|r| r.account.eq_ignore_ascii_case(&a.account))
            {
                match r.stage {
                    Some(Stage::Mirror) => a.mirror = Some(r.clone()),
                    Some(Stage::Upload) => a.upload = Some(r.clone()),
                    None => {}
                }
            }
            a.settle_state();
        }
        Ok(Snapshot {
            store: index.path().display().to_string(),
            complete: false,
            accounts_file: None,
            generated_at: crate::store::index::now(),
            last_runs: LastRuns {
                preflight: index.last_run("preflight")?,
                mirror: index.last_run("mirror")?,
                upload: index.last_run("upload")?,
                cutover: index.last_run("cutover")?,
            },
            accounts,
            folders,
            targets: index.target_status()?,
            not_uploaded: index.not_uploaded()?,
            cutover: last_cutover(index)?,
            shards: Vec::new(),
        })
    }

    /// One view of several shards' snapshots, whose accounts are apart.
    pub fn merge(parts: Vec<Snapshot>) -> Snapshot {
        let mut all = Snapshot {
            store: String::new(),
            complete: false,
            accounts_file: None,
            generated_at: crate::store::index::now(),
            last_runs: LastRuns::default(),
            accounts: Vec::new(),
            folders: Vec::new(),
            targets: Vec::new(),
            not_uploaded: Vec::new(),
            cutover: None,
            shards: Vec::new(),
        };
        for part in parts {
            let (l, r) = (&mut all.last_runs, &part.last_runs);
            l.preflight = l.preflight.max(r.preflight);
            l.mirror = l.mirror.max(r.mirror);
            l.upload = l.upload.max(r.upload);
            l.cutover = l.cutover.max(r.cutover);
            all.accounts.extend(part.accounts);
            all.folders.extend(part.folders);
            all.targets.extend(part.targets);
            all.not_uploaded.extend(part.not_uploaded);
            if part.cutover.as_ref().map(|c| c.started_at)
                > all.cutover.as_ref().map(|c| c.started_at)
            {
                all.cutover = part.cutover;
            }
            all.shards.extend(part.shards);
        }
        // Each part is sorted by account; the whole is too.
        all.folders.sort_by(|a, b| a.account.cmp(&b.account));
        all.targets.sort_by(|a, b| a.target.cmp(&b.target));
        all
    }

    /// The view `select` asks for of the store named `store`: the batch's
    /// accounts in its order (one the store never saw is shown as never
    /// mirrored), or one account, or every account by name.
    pub fn select(mut self, store: &str, select: &Selection<'_>) -> Result<Snapshot> {
        let mut accounts = std::mem::take(&mut self.accounts);
        if let Some((_, batch)) = &select.batch {
            let mut ordered = Vec::with_capacity(batch.len());
            for name in batch {
                let found = accounts
                    .iter()
                    .position(|a| a.account.eq_ignore_ascii_case(name));
                ordered.push(match found {
                    Some(i) => accounts.swap_remove(i),
                    None => {
                        let mut a = AccountStatus {
                            account: name.clone(),
                            ..AccountStatus::default()
                        };
                        a.settle_state();
                        a
                    }
                });
            }
            accounts = ordered;
        } else {
            accounts.sort_by(|a, b| a.account.cmp(&b.account));
        }
        if let Some(one) = select.account {
            accounts.retain(|a| a.account.eq_ignore_ascii_case(one));
            if accounts.is_empty() {
                anyhow::bail!(
                    "no account {one} in the store {store}{}",
                    select
                        .batch
                        .as_ref()
                        .map(|(f, _)| format!(" or in {}", f.display()))
                        .unwrap_or_default()
                );
            }
        }
        let shown: std::collections::HashSet<String> =
            accounts.iter().map(|a| a.account.to_lowercase()).collect();
        self.folders
            .retain(|f| shown.contains(&f.account.to_lowercase()));
        if select.account.is_some() || select.batch.is_some() {
            let mine: Vec<&str> = accounts
                .iter()
                .filter_map(|a| a.target.as_deref())
                .collect();
            self.targets.retain(|t| mine.contains(&t.target.as_str()));
            self.not_uploaded
                .retain(|n| mine.contains(&n.target.as_str()));
        }
        // A shard whose index is missing or stale may hold anything: the
        // batch is not known to be complete.
        let shards_sound = self.shards.iter().all(|s| s.sound());
        self.complete = shards_sound
            && !accounts.is_empty()
            && accounts.iter().all(|a| a.state == AccountState::Complete);
        self.accounts = accounts;
        self.store = store.to_string();
        self.accounts_file = select.batch.as_ref().map(|(f, _)| f.display().to_string());
        Ok(self)
    }
}

impl Snapshot {
    /// The whole batch of a store in object storage: every shard's latest
    /// index snapshot, read into `place`'s working directory and merged;
    /// each shard's state beside it.
    pub fn gather_objects(
        place: &crate::store::ObjectPlace,
        select: &Selection<'_>,
    ) -> Result<Snapshot> {
        let view = crate::store::shards::View::read(place, "status")?;
        let mut parts = Vec::new();
        for (_, index) in view.indexes() {
            parts.push(Snapshot::read(index)?);
        }
        let mut all = Snapshot::merge(parts);
        all.shards = view
            .shards
            .iter()
            .map(|c| ShardState {
                shard: c.shard.to_string(),
                state: c.state.as_str().into(),
                snapshot_at: c.lease.as_ref().and_then(|l| l.snapshot_at),
                holder: c
                    .lease
                    .as_ref()
                    .filter(|_| c.state == crate::store::shards::ShardState::Running)
                    .map(|l| l.holder.clone()),
            })
            .collect();
        all.select(place.url.as_str(), select)
    }
}

/// One shard of a batch in object storage, as its lease and snapshot say.
#[derive(Debug, Clone, Serialize)]
pub struct ShardState {
    /// "I/N".
    pub shard: String,
    /// `running` (a worker holds it), `finished` (its last run ended),
    /// `stale` (its worker stopped without ending its run: killed, its node
    /// lost; the snapshot may lag what it did), or `missing` (no snapshot).
    pub state: String,
    /// When its snapshot was written (Unix seconds).
    pub snapshot_at: Option<i64>,
    /// The worker holding it, while `running`.
    pub holder: Option<String>,
}

impl ShardState {
    fn sound(&self) -> bool {
        self.state == "finished" || self.state == "running"
    }
}

/// Sums the folder rows (sorted by account) into one row per account.
pub fn account_totals(folders: &[FolderStatus]) -> Vec<AccountStatus> {
    let mut out: BTreeMap<&str, AccountStatus> = BTreeMap::new();
    for f in folders {
        let a = out.entry(&f.account).or_insert_with(|| AccountStatus {
            account: f.account.clone(),
            ..AccountStatus::default()
        });
        if a.target.is_none() {
            a.target = f.target.clone();
        }
        a.folders += 1;
        a.at_source += f.at_source.map(u64::from).unwrap_or(0);
        a.stored += f.stored;
        a.stored_bytes += f.stored_bytes;
        a.expunged += f.expunged;
        a.uploaded += f.uploaded;
        a.already_present += f.already_present;
        a.skipped += f.skipped;
        a.failed += f.failed;
        a.pending += f.pending;
        if f.left_out {
            a.left_out += f.stored;
        }
        a.last_checked_at = a.last_checked_at.max(f.last_checked_at);
        if f.last_error.is_some() {
            a.folders_failed += 1;
        }
    }
    out.into_values().collect()
}

fn last_cutover(index: &Index) -> Result<Option<CutoverRecord>> {
    Ok(index.last_cutover()?.map(|c| CutoverRecord {
        started_at: c.started_at,
        finished_at: c.finished_at,
        complete: c.complete,
        summary: c
            .summary
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null),
    }))
}
