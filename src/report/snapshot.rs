//! What the store says of a batch, gathered once for `status`, `status
//! --json` and the HTML report, so that all three show the same numbers.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use rusqlite::OptionalExtension as _;
use serde::Serialize;

use crate::store::Index;
use crate::store::index::{FolderStatus, NotUploaded, TargetFolderStatus};

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
}

impl AccountStatus {
    /// Share of the stored messages that are settled at the target
    /// (uploaded, already there, or skipped for good), in percent.
    pub fn percent_done(&self) -> f64 {
        let to_move = self.stored.saturating_sub(self.left_out);
        if to_move == 0 {
            return 100.0;
        }
        let settled = self.uploaded + self.already_present + self.skipped;
        (settled as f64 * 100.0 / to_move as f64).min(100.0)
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
    pub generated_at: i64,
    pub last_runs: LastRuns,
    pub accounts: Vec<AccountStatus>,
    pub folders: Vec<FolderStatus>,
    pub targets: Vec<TargetFolderStatus>,
    pub not_uploaded: Vec<NotUploaded>,
    pub cutover: Option<CutoverRecord>,
}

impl Snapshot {
    pub fn gather(store: &Path, index: &Index, account: Option<&str>) -> Result<Snapshot> {
        let folders = index.folder_status(account)?;
        let accounts = account_totals(&folders);
        let mut targets = index.target_status()?;
        let mut not_uploaded = index.not_uploaded()?;
        if account.is_some() {
            let mine: Vec<&str> = accounts
                .iter()
                .filter_map(|a| a.target.as_deref())
                .collect();
            targets.retain(|t| mine.contains(&t.target.as_str()));
            not_uploaded.retain(|n| mine.contains(&n.target.as_str()));
        }
        Ok(Snapshot {
            store: store.display().to_string(),
            generated_at: crate::store::index::now(),
            last_runs: LastRuns {
                preflight: index.last_run("preflight")?,
                mirror: index.last_run("mirror")?,
                upload: index.last_run("upload")?,
                cutover: index.last_run("cutover")?,
            },
            accounts,
            folders,
            targets,
            not_uploaded,
            cutover: last_cutover(index)?,
        })
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
    }
    out.into_values().collect()
}

fn last_cutover(index: &Index) -> Result<Option<CutoverRecord>> {
    Ok(index
        .connection()
        .query_row(
            "SELECT started_at, finished_at, complete, summary FROM cutovers
             ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                let summary: Option<String> = r.get(3)?;
                Ok(CutoverRecord {
                    started_at: r.get(0)?,
                    finished_at: r.get(1)?,
                    complete: r.get(2)?,
                    summary: summary
                        .and_then(|s| serde_json::from_str(&s).ok())
                        .unwrap_or(serde_json::Value::Null),
                })
            },
        )
        .optional()?)
}
