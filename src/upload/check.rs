//! `verify --target`: read every target folder back and check that each
//! message the ledger says is there, is.
//!
//! Per target folder, the ledger's done and present entries are matched to
//! the folder's messages by evidence, not by what kind of server it is:
//! many servers rewrite a message on APPEND (Exchange converts it, Cyrus
//! re-encodes NUL and 8-bit headers, Courier turns bare LF into CRLF), so a
//! size that differs proves nothing by itself. A message is found by UID
//! (same UIDVALIDITY) with its size, Message-ID or INTERNALDATE agreeing;
//! else by Message-ID with its size or INTERNALDATE agreeing; else, without
//! a Message-ID, by content hash or INTERNALDATE. What the ledger has and
//! the target lacks is missing: its entry becomes `failed` so the next
//! upload appends it again. Target messages nobody claims are extras (mail
//! that arrived there, or copies made by hand); they are counted, never
//! touched.

use crate::format::message_line;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, anyhow};
use futures::StreamExt as _;
use serde::Serialize;

use super::{UploadContext, UploadOptions};
use crate::config::{Config, TargetKind};
use crate::imap::{FetchedMessage, ImapSession};
use crate::outcome::error_chain;
use crate::progress::Progress;
use crate::store::ledger::{self, LedgerEntry, State};
use crate::store::{BlobHash, Store};

/// A message the ledger has at the target that is not there.
#[derive(Debug, Clone, Serialize)]
pub struct MissingMessage {
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub size: u64,
    pub blob: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderCheck {
    pub folder: String,
    /// Ledger entries that say the message is there.
    pub expected: u64,
    pub found_by_uid: u64,
    pub found_by_message_id: u64,
    pub found_otherwise: u64,
    pub missing: Vec<MissingMessage>,
    /// Messages at the target that no ledger entry accounts for.
    pub extras: u64,
    /// Entries an interrupted upload left pending (the next upload settles them).
    pub pending: u64,
    /// Entries not at the target that the next upload appends: failed
    /// uploads, and what this check found missing.
    pub to_retry: u64,
    /// The whole folder is gone from the target.
    pub folder_missing: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountCheck {
    pub account: String,
    pub target: String,
    pub folders: Vec<FolderCheck>,
    pub expected: u64,
    pub found: u64,
    pub missing: u64,
    pub extras: u64,
    pub pending: u64,
    pub to_retry: u64,
    /// Why the account could not be checked (login refused, ...).
    pub error: Option<String>,
}

impl AccountCheck {
    /// Checked, and every message the ledger has is there.
    pub fn complete(&self) -> bool {
        self.error.is_none() && self.missing == 0 && self.pending == 0 && self.to_retry == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub accounts: Vec<AccountCheck>,
    /// Whether missing messages were marked for the next upload.
    pub requeued: bool,
    pub seconds: f64,
}

impl TargetCheck {
    pub fn all_present(&self) -> bool {
        self.accounts.iter().all(AccountCheck::complete)
    }
}

/// Checks every account's target mailbox, `accounts_at_once` at a time.
/// With `requeue`, what is missing is marked failed so that the next upload
/// appends it again; without, it is only reported (after go-live, users
/// delete mail, and that must not come back).
pub async fn check_targets(
    store: Arc<Store>,
    config: &Config,
    options: Arc<UploadOptions>,
    progress: Arc<dyn Progress>,
    requeue: bool,
) -> Result<TargetCheck> {
    let started = Instant::now();
    let tls = Arc::new(std::sync::OnceLock::new());
    let mut accounts: Vec<AccountCheck> = futures::stream::iter(config.accounts.iter().cloned())
        .map(|account| {
            let ctx = UploadContext::new(
                store.clone(),
                options.clone(),
                tls.clone(),
                account,
                progress.clone(),
            );
            async move {
                let mut out = AccountCheck {
                    account: ctx.account.name.clone(),
                    target: ctx.account.target.clone(),
                    ..AccountCheck::default()
                };
                ctx.progress.account_started(&ctx.account.name);
                if let Err(e) = check_account(&ctx, &mut out, requeue).await {
                    out.error = Some(format!(
                        "account {} ({}) at {}: {}",
                        ctx.account.name,
                        ctx.account.origin,
                        ctx.account.target,
                        error_chain(&e)
                    ));
                }
                ctx.progress
                    .account_finished(&ctx.account.name, out.error.as_deref());
                out
            }
        })
        .buffer_unordered(options.accounts_at_once.max(1))
        .collect()
        .await;
    config.sort_in_file_order(&mut accounts, |a| &a.account);
    Ok(TargetCheck {
        accounts,
        requeued: requeue,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn check_account(ctx: &UploadContext, out: &mut AccountCheck, requeue: bool) -> Result<()> {
    let host = &ctx.options.target.server.address();
    let folders: Vec<ledger::KnownFolder> = {
        let index = ctx.store.index();
        let Some(target) = index.ledger().find_target(&ctx.account.target, host)? else {
            // Nothing was ever uploaded there: nothing to find.
            return Ok(());
        };
        // The folders this account's source folders go to now; an old
        // target folder a changed map no longer uses is no job of ours.
        index.ledger().checked_folders(target, &ctx.account.name)?
    };
    if folders.is_empty() {
        return Ok(());
    }
    let mut session = ctx.connect().await?;
    let existing: Vec<String> = session
        .imap
        .list(None)
        .await?
        .into_iter()
        .map(|f| f.wire_name)
        .collect();
    for folder in &folders {
        if session.needs_new_login() {
            let fresh = ctx.connect().await?;
            std::mem::replace(&mut session, fresh).imap.logout().await;
        }
        let checked = check_folder(ctx, &mut session.imap, folder, &existing, requeue).await?;
        out.expected += checked.expected;
        out.found += checked.found_by_uid + checked.found_by_message_id + checked.found_otherwise;
        out.missing += checked.missing.len() as u64;
        out.extras += checked.extras;
        out.pending += checked.pending;
        out.to_retry += checked.to_retry;
        ctx.progress.folder_done(&ctx.account.name, &checked.folder);
        out.folders.push(checked);
    }
    session.imap.logout().await;
    Ok(())
}

/// What the store knows of a blob, to recognise it at the target.
struct BlobFacts {
    size: u64,
    message_id: Option<String>,
    internal_date: Option<i64>,
    missing: MissingMessage,
}

fn blob_facts(ctx: &UploadContext, blob: &BlobHash) -> Result<BlobFacts> {
    let facts =
        ctx.store.index().blob_facts(blob)?.ok_or_else(|| {
            anyhow!("the ledger names blob {blob}, which the index does not hold")
        })?;
    Ok(BlobFacts {
        size: facts.size,
        message_id: facts.message_id,
        internal_date: facts.internal_date,
        missing: MissingMessage {
            date: facts.date,
            from: facts.from,
            subject: facts.subject,
            size: facts.size,
            blob: blob.to_hex(),
        },
    })
}

async fn check_folder(
    ctx: &UploadContext,
    imap: &mut ImapSession,
    folder: &ledger::KnownFolder,
    existing: &[String],
    requeue: bool,
) -> Result<FolderCheck> {
    let me = ctx.account.name.as_str();
    let mut out = FolderCheck {
        folder: folder.display.clone(),
        ..FolderCheck::default()
    };
    let entries = ctx.store.index().ledger().entries(folder.id)?;
    // Another account uploading into the same mailbox answers for its own
    // entries; they still claim their messages here (so they are no extras).
    let mine = |e: &LedgerEntry| e.account.as_deref().is_none_or(|a| a == me);
    out.pending = entries
        .values()
        .filter(|e| e.state == State::Pending && mine(e))
        .count() as u64;
    let mut expected: Vec<(&LedgerEntry, BlobFacts)> = Vec::new();
    for e in entries.values() {
        if matches!(e.state, State::Done | State::Present) {
            expected.push((e, blob_facts(ctx, &e.blob)?));
        }
    }
    // Oldest first, so that a list of missing messages reads in order.
    expected.sort_by_key(|(_, f)| f.internal_date);
    out.expected = expected.iter().filter(|(e, _)| mine(e)).count() as u64;

    // Exchange's folder names ignore case.
    let wire = existing.iter().find(|w| **w == folder.wire).or_else(|| {
        existing.iter().find(|w| {
            ctx.options.target.kind == TargetKind::M365 && w.eq_ignore_ascii_case(&folder.wire)
        })
    });
    let mut at_target: Vec<FetchedMessage> = Vec::new();
    let mut uidvalidity = None;
    if let Some(wire) = wire {
        let selected = imap.examine(wire, None).await?;
        uidvalidity = selected.status.uidvalidity;
        if selected.status.messages != Some(0) {
            imap.uid_fetch(
                "1:*",
                "UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]",
                None,
                |m| {
                    at_target.push(m);
                    Ok(())
                },
            )
            .await?;
        }
    } else {
        out.folder_missing = true;
    }
    let by_uid: HashMap<u32, usize> = at_target
        .iter()
        .enumerate()
        .map(|(i, m)| (m.uid, i))
        .collect();
    let mut taken = vec![false; at_target.len()];
    // A second piece of evidence beside the UID or the Message-ID: the
    // same size (a server that keeps bytes), or the INTERNALDATE the
    // upload gave it (one that rewrites).
    let agrees = |m: &FetchedMessage, facts: &BlobFacts| {
        m.size.map(u64::from) == Some(facts.size)
            || (facts.internal_date.is_some()
                && m.internal_date.map(|d| d.timestamp()) == facts.internal_date)
    };
    let mut unmatched: Vec<usize> = Vec::new();
    for (n, (e, facts)) in expected.iter().enumerate() {
        let uid_hit = e
            .uid
            .filter(|_| e.uidvalidity.is_some() && e.uidvalidity == uidvalidity)
            .and_then(|u| by_uid.get(&u).copied())
            .filter(|&i| {
                !taken[i]
                    && (agrees(&at_target[i], facts)
                        || (facts.message_id.is_some()
                            && at_target[i].message_id() == facts.message_id))
            });
        if let Some(i) = uid_hit {
            taken[i] = true;
            out.found_by_uid += u64::from(mine(e));
        } else {
            unmatched.push(n);
        }
    }
    // Message-ID → target messages, built once (folders hold 100,000s).
    let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, m) in at_target.iter().enumerate() {
        if let Some(id) = m.message_id() {
            by_id.entry(id).or_default().push(i);
        }
    }
    let mut still: Vec<usize> = Vec::new();
    for n in unmatched {
        let facts = &expected[n].1;
        let hit = facts.message_id.as_deref().and_then(|id| {
            by_id
                .get(id)?
                .iter()
                .copied()
                .find(|&i| !taken[i] && agrees(&at_target[i], facts))
        });
        match hit {
            Some(i) => {
                taken[i] = true;
                out.found_by_message_id += u64::from(mine(expected[n].0));
            }
            None => still.push(n),
        }
    }
    // No UID or Message-ID to go by: the content where the sizes agree,
    // else the INTERNALDATE the upload gave it.
    let mut hashes: HashMap<u32, BlobHash> = HashMap::new();
    if !still.is_empty() {
        let sizes: HashSet<u64> = still.iter().map(|&n| expected[n].1.size).collect();
        let mut uids: Vec<u32> = at_target
            .iter()
            .enumerate()
            .filter(|(i, m)| !taken[*i] && m.size.is_some_and(|s| sizes.contains(&(s as u64))))
            .map(|(_, m)| m.uid)
            .collect();
        uids.sort_unstable();
        if !uids.is_empty() {
            imap.uid_fetch(&crate::imap::uid_set(&uids), "UID BODY.PEEK[]", None, |m| {
                if let Some(b) = &m.body {
                    hashes.insert(m.uid, BlobHash::of(b));
                }
                Ok(())
            })
            .await?;
        }
    }
    let mut missing: Vec<(BlobHash, MissingMessage)> = Vec::new();
    for n in still {
        let (e, facts) = &expected[n];
        let by_hash = (0..at_target.len())
            .find(|&i| !taken[i] && hashes.get(&at_target[i].uid) == Some(&e.blob));
        let by_date = || {
            (0..at_target.len()).find(|&i| {
                !taken[i]
                    && facts.message_id.is_none()
                    && at_target[i].message_id().is_none()
                    && facts.internal_date.is_some()
                    && at_target[i].internal_date.map(|d| d.timestamp()) == facts.internal_date
            })
        };
        let hit = by_hash.or_else(by_date);
        match hit {
            Some(i) => {
                taken[i] = true;
                out.found_otherwise += u64::from(mine(e));
            }
            None if mine(e) => missing.push((e.blob, facts.missing.clone())),
            None => {}
        }
    }
    out.extras = taken.iter().filter(|t| !**t).count() as u64;
    if requeue && !missing.is_empty() {
        let reason = ledger::FailReason::MissingAtTarget {
            checked_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        };
        let index = ctx.store.index();
        for (blob, _) in &missing {
            index.ledger().mark_failed(folder.id, blob, &reason, 1)?;
        }
    }
    let failed_before = entries
        .values()
        .filter(|e| e.state == State::Failed && mine(e))
        .count() as u64;
    out.to_retry = failed_before + if requeue { missing.len() as u64 } else { 0 };
    out.missing = missing.into_iter().map(|(_, m)| m).collect();
    Ok(out)
}

/// `verify --target`: per account and folder, what was found where.
impl std::fmt::Display for TargetCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        for a in &self.accounts {
            let _ = writeln!(
                out,
                "{} at {}: {} expected, {} found, {} missing, {} extra at the target{}",
                a.account,
                a.target,
                a.expected,
                a.found,
                a.missing,
                a.extras,
                if a.pending + a.to_retry > 0 {
                    format!(
                        "; {} to append again and {} pending: run upload",
                        a.to_retry, a.pending
                    )
                } else {
                    String::new()
                }
            );
            if let Some(e) = &a.error {
                let _ = writeln!(out, "  NOT CHECKED: {e}");
            }
            for f in &a.folders {
                let _ = writeln!(
                    out,
                    "  {:<36} {:>7} expected {:>7} by UID {:>6} by Message-ID {:>5} other {:>5} \
                     missing {:>5} extra{}",
                    f.folder,
                    f.expected,
                    f.found_by_uid,
                    f.found_by_message_id,
                    f.found_otherwise,
                    f.missing.len(),
                    f.extras,
                    if f.folder_missing {
                        "  (FOLDER GONE)"
                    } else {
                        ""
                    }
                );
                for m in &f.missing {
                    let _ = writeln!(
                        out,
                        "    missing: {}",
                        message_line(&m.date, &m.from, &m.subject, m.size)
                    );
                }
            }
        }
        let missing: u64 = self.accounts.iter().map(|a| a.missing).sum();
        let unsettled: u64 = self.accounts.iter().map(|a| a.to_retry + a.pending).sum();
        let failed = self.accounts.iter().filter(|a| a.error.is_some()).count();
        let _ = writeln!(
            out,
            "\n{} of {} accounts checked in {:.1}s: {}",
            self.accounts.len() - failed,
            self.accounts.len(),
            self.seconds,
            if failed > 0 {
                "some accounts could not be checked".to_string()
            } else if missing > 0 && self.requeued {
                format!("{missing} missing; the next upload appends them again")
            } else if missing > 0 {
                format!(
                    "{missing} missing (deleted at the target?); `verify --target \
                     --requeue-missing` marks them for the next upload"
                )
            } else if unsettled > 0 {
                format!("{unsettled} messages are not at the target yet; run upload")
            } else {
                "every message the ledger has is at the target".to_string()
            }
        );
        f.write_str(&out)
    }
}
