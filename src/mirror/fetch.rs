//! Fetching one batch of bodies into the store.
//!
//! A batch is one `UID FETCH` of whole bodies, sized by bytes. Every
//! requested UID must come back: a missing one is asked for again on its
//! own, and one that is still on the server but never delivered is reported
//! as failed (the folder will be planned again next run). Bodies are hashed,
//! compressed and made durable on a blocking thread, then their rows are
//! committed in one transaction.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};

use super::folder::normalize_flags;
use super::{AccountContext, SharedCounts, permits};
use crate::imap::{FetchedMessage, FolderStatus, ImapSession, mutf7, uid_set};
use crate::store::index::{BlobMeta, NewBlob, NewMessage};

const BODY_ITEMS: &str = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]";

/// One folder's sync, shared by its fetch batches; the last batch to finish
/// saves the folder's state.
pub(crate) struct FolderSync {
    pub folder_id: i64,
    pub wire_name: String,
    pub uidvalidity: u32,
    status: FolderStatus,
    exists: u32,
    synced_before: u32,
    synced_goal: u32,
    remaining: AtomicUsize,
    failed: AtomicBool,
    finished: Mutex<bool>,
}

impl FolderSync {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        folder_id: i64,
        wire_name: String,
        uidvalidity: u32,
        status: FolderStatus,
        exists: u32,
        synced_before: u32,
        synced_goal: u32,
        batches: usize,
    ) -> FolderSync {
        FolderSync {
            folder_id,
            wire_name,
            uidvalidity,
            status,
            exists,
            synced_before,
            synced_goal,
            remaining: AtomicUsize::new(batches),
            failed: AtomicBool::new(false),
            finished: Mutex::new(false),
        }
    }

    /// Saves the folder's state. After a failure the UIDNEXT is left unset
    /// so the next run plans the folder again.
    pub fn finish(&self, ctx: &AccountContext) -> Result<()> {
        let mut finished = self.finished.lock().unwrap();
        if *finished {
            return Ok(());
        }
        *finished = true;
        let failed = self.failed.load(Ordering::SeqCst);
        let index = ctx.store.index();
        if failed {
            index.save_folder_state(
                self.folder_id,
                self.uidvalidity,
                None,
                None,
                self.exists,
                self.synced_before,
            )?;
        } else {
            index.save_folder_state(
                self.folder_id,
                self.uidvalidity,
                self.status.uidnext,
                self.status.highestmodseq,
                self.exists,
                self.synced_goal,
            )?;
        }
        drop(index);
        ctx.progress.folder_done(&ctx.account.name, &self.wire_name);
        Ok(())
    }

    /// The folder is not whole this run (a message that cannot be
    /// fetched): its state is not saved, so the next run plans it again.
    pub fn mark_incomplete(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    fn batch_done(&self, ctx: &AccountContext) -> Result<()> {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.finish(ctx)?;
        }
        Ok(())
    }

    /// A batch gave up: the folder is incomplete this run.
    pub fn batch_failed(&self, ctx: &AccountContext) {
        self.failed.store(true, Ordering::SeqCst);
        if let Err(e) = self.batch_done(ctx) {
            ctx.progress.warn(
                &ctx.account.name,
                &format!("cannot save folder state: {e:#}"),
            );
        }
    }
}

/// One batch of bodies to fetch. After a broken connection the batch is
/// fetched one message at a time, so that a message the server cannot send
/// (some servers drop the connection on it) is isolated and reported while
/// the rest are stored.
pub(crate) struct FetchJob {
    pub folder: Arc<FolderSync>,
    pub bytes: u64,
    /// UIDs still to fetch.
    uids: Mutex<Vec<u32>>,
    one_by_one: AtomicBool,
    /// Broken connections while fetching a UID alone, with the last error.
    strikes: Mutex<HashMap<u32, (u32, String)>>,
    /// Messages stored or given up on; the worker retries while it grows.
    progress: AtomicU64,
}

/// A message that broke the connection this many times is given up on.
const STRIKES: u32 = 2;

impl FetchJob {
    pub fn new(folder: Arc<FolderSync>, uids: Vec<u32>, bytes: u64) -> FetchJob {
        FetchJob {
            folder,
            bytes,
            uids: Mutex::new(uids),
            one_by_one: AtomicBool::new(false),
            strikes: Mutex::new(HashMap::new()),
            progress: AtomicU64::new(0),
        }
    }

    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::SeqCst)
    }

    fn remaining(&self) -> Vec<u32> {
        self.uids.lock().unwrap().clone()
    }

    fn done_with(&self, uids: &[u32]) {
        let gone: HashSet<u32> = uids.iter().copied().collect();
        self.uids.lock().unwrap().retain(|u| !gone.contains(u));
        self.progress.fetch_add(uids.len() as u64, Ordering::SeqCst);
    }
}

/// Fetches one batch and stores it. Returns the folder id.
pub(crate) async fn run(
    ctx: &Arc<AccountContext>,
    session: &mut ImapSession,
    job: &FetchJob,
    shared: &SharedCounts,
) -> Result<i64> {
    let folder = &job.folder;
    if session.selected() != Some(folder.wire_name.as_str()) {
        let selected = session.examine(&folder.wire_name, None).await?;
        if selected.status.uidvalidity != Some(folder.uidvalidity) {
            bail!(
                "UIDVALIDITY changed during the run (was {}, now {:?}); the next run resyncs it",
                folder.uidvalidity,
                selected.status.uidvalidity
            );
        }
    }
    let budget = job.bytes.min(ctx.options.max_bytes_in_flight);
    let _permit = ctx
        .budget
        .clone()
        .acquire_many_owned(permits(budget) as u32)
        .await
        .context("memory budget closed")?;

    // Why a UID was not delivered, for the report.
    let mut undelivered: Vec<(u32, String)> = Vec::new();
    if !job.one_by_one.load(Ordering::SeqCst) {
        let uids = job.remaining();
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let mut got = HashMap::with_capacity(uids.len());
        let result = fetch_into(session, &uid_set(&uids), &wanted, &mut got).await;
        // What arrived before any failure is kept.
        deliver(ctx, session, job, shared, got).await?;
        match result {
            Ok(fetched) => {
                let text = fetched
                    .refused
                    .unwrap_or_else(|| "no error given".to_string());
                undelivered.extend(job.remaining().into_iter().map(|u| (u, text.clone())));
            }
            Err(e) => {
                job.one_by_one.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        // A silent short answer: ask again for each missing message on its own.
        job.one_by_one.store(true, Ordering::SeqCst);
    }
    if job.one_by_one.load(Ordering::SeqCst) {
        undelivered.clear();
        for uid in job.remaining() {
            if let Some((n, why)) = job.strikes.lock().unwrap().get(&uid)
                && *n >= STRIKES
            {
                undelivered.push((uid, why.clone()));
                continue;
            }
            let wanted = HashSet::from([uid]);
            let mut got = HashMap::new();
            // Alone, a message that came twice differently must come once
            // (or the same twice); otherwise it is reported, not guessed at.
            match fetch_into(session, &uid.to_string(), &wanted, &mut got).await {
                Ok(fetched) => {
                    if !fetched.conflicting.is_empty() {
                        undelivered.push((uid, CONFLICT.to_string()));
                    } else if got.is_empty() {
                        let why = fetched.refused.unwrap_or_else(|| "no error given".into());
                        undelivered.push((uid, why));
                    }
                    deliver(ctx, session, job, shared, got).await?;
                }
                Err(e) => {
                    let mut strikes = job.strikes.lock().unwrap();
                    let entry = strikes.entry(uid).or_insert((0, String::new()));
                    entry.0 += 1;
                    entry.1 = super::error_chain(&e);
                    if entry.0 >= STRIKES {
                        // Count giving up as progress so the worker goes on.
                        job.progress.fetch_add(1, Ordering::SeqCst);
                    }
                    return Err(e);
                }
            }
        }
    }

    let mut failed = Vec::new();
    if !undelivered.is_empty() {
        // Expunged meanwhile is fine; still there but undelivered is not.
        let still_there: HashSet<u32> = session.uid_search_all().await?.into_iter().collect();
        failed = undelivered
            .into_iter()
            .filter(|(u, _)| still_there.contains(u))
            .collect::<Vec<_>>();
    }
    if !failed.is_empty() {
        shared
            .messages_failed
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
        // The worker records the error and marks the batch failed.
        let uids: Vec<u32> = failed.iter().map(|(u, _)| *u).collect();
        let why = &failed[0].1;
        bail!(
            "the server did not deliver UID {} in folder {} ({why}); the next run tries again",
            uid_set(&uids),
            mutf7::display(&folder.wire_name),
        );
    }
    folder.batch_done(ctx)?;
    Ok(folder.folder_id)
}

/// Stores delivered messages (after restoring NUL bytes) and counts them.
async fn deliver(
    ctx: &Arc<AccountContext>,
    session: &mut ImapSession,
    job: &FetchJob,
    shared: &SharedCounts,
    mut got: HashMap<u32, FetchedMessage>,
) -> Result<()> {
    if got.is_empty() {
        return Ok(());
    }
    restore_nul_bytes(session, &mut got).await?;
    let uids: Vec<u32> = got.keys().copied().collect();
    let messages: Vec<FetchedMessage> = got.into_values().collect();
    let fetched_bytes: u64 = messages
        .iter()
        .map(|m| m.body.as_ref().map_or(0, |b| b.len() as u64))
        .sum();
    let count = messages.len() as u64;
    let store_ctx = ctx.clone();
    let (folder_id, uidvalidity) = (job.folder.folder_id, job.folder.uidvalidity);
    let stored = tokio::task::spawn_blocking(move || {
        store_messages(&store_ctx, folder_id, uidvalidity, messages)
    })
    .await
    .map_err(|e| anyhow!("storing a batch crashed: {e}"))??;
    let (written, already) = (stored.written, stored.already);
    shared
        .blobs_repaired
        .fetch_add(stored.repaired, Ordering::Relaxed);
    if !stored.undated.is_empty() {
        let mut undated = stored.undated;
        undated.sort_unstable();
        shared
            .dates_unknown
            .fetch_add(undated.len() as u64, Ordering::Relaxed);
        ctx.progress.warn(
            &ctx.account.name,
            &format!(
                "folder {}: the server gave no readable INTERNALDATE for UID {}; kept as \
                 unknown, the upload uses the Date header",
                mutf7::display(&job.folder.wire_name),
                uid_set(&undated)
            ),
        );
    }
    job.done_with(&uids);
    shared.bodies_fetched.fetch_add(count, Ordering::Relaxed);
    shared
        .bytes_fetched
        .fetch_add(fetched_bytes, Ordering::Relaxed);
    shared.blobs_written.fetch_add(written, Ordering::Relaxed);
    shared
        .bodies_already_stored
        .fetch_add(already, Ordering::Relaxed);
    ctx.progress.moved(&ctx.account.name, count, fetched_bytes);
    Ok(())
}

/// What one body FETCH brought besides the messages.
#[derive(Default)]
struct Fetched {
    /// A tagged NO, as text (what was delivered before it still counts).
    refused: Option<String>,
    /// UIDs the server sent twice with different bodies: neither is kept.
    conflicting: HashSet<u32>,
}

/// Why a message that came twice with different bodies was not stored.
const CONFLICT: &str = "the server sent two different bodies for this UID";

/// Runs one body FETCH, keeping the messages asked for.
async fn fetch_into(
    session: &mut ImapSession,
    set: &str,
    wanted: &HashSet<u32>,
    got: &mut HashMap<u32, FetchedMessage>,
) -> Result<Fetched> {
    let mut out = Fetched::default();
    let result = session
        .uid_fetch(set, BODY_ITEMS, None, |m| {
            if wanted.contains(&m.uid) && m.body.is_some() {
                match got.get(&m.uid) {
                    Some(first) if first.body != m.body => {
                        out.conflicting.insert(m.uid);
                    }
                    Some(_) => {}
                    None => {
                        got.insert(m.uid, m);
                    }
                }
            }
            Ok(())
        })
        .await;
    for uid in &out.conflicting {
        got.remove(uid);
    }
    match result {
        Ok(_) => Ok(out),
        Err(e) => match e.downcast_ref::<crate::imap::ImapError>() {
            Some(crate::imap::ImapError::No { .. }) => {
                out.refused = Some(e.to_string());
                Ok(out)
            }
            _ => Err(e),
        },
    }
}

/// Servers must not send NUL in a plain literal, so Dovecot and others
/// replace it (Dovecot with 0x80). When a body holds 0x80 and the server
/// has BINARY, fetch `BINARY.PEEK[]` and take it when it differs only by
/// NULs where 0x80 stood; otherwise (BINARY decoded a transfer encoding)
/// keep the body as it was.
async fn restore_nul_bytes(
    session: &mut ImapSession,
    got: &mut HashMap<u32, FetchedMessage>,
) -> Result<()> {
    if !session.capabilities().has("BINARY") {
        return Ok(());
    }
    let mut suspects: Vec<u32> = got
        .values()
        .filter(|m| m.body.as_ref().is_some_and(|b| b.contains(&0x80)))
        .map(|m| m.uid)
        .collect();
    if suspects.is_empty() {
        return Ok(());
    }
    suspects.sort_unstable();
    let mut binaries: HashMap<u32, Vec<u8>> = HashMap::new();
    let result = session
        .uid_fetch(&uid_set(&suspects), "UID BINARY.PEEK[]", None, |m| {
            if let Some(b) = m.body {
                binaries.insert(m.uid, b);
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        // Not fatal: the bodies as fetched are what the server shows.
        if !matches!(
            e.downcast_ref::<crate::imap::ImapError>(),
            Some(crate::imap::ImapError::No { .. } | crate::imap::ImapError::Bad { .. })
        ) {
            return Err(e);
        }
    }
    for (uid, binary) in binaries {
        if let Some(m) = got.get_mut(&uid)
            && let Some(body) = &m.body
            && binary.len() == body.len()
            && binary != *body
            && body
                .iter()
                .zip(&binary)
                .all(|(a, b)| a == b || (*a == 0x80 && *b == 0))
        {
            m.body = Some(binary);
        }
    }
    Ok(())
}

/// What one batch did to the store.
struct Stored {
    /// Blobs written, and bodies whose blob was already stored.
    written: u64,
    already: u64,
    /// Damaged blobs written anew.
    repaired: u64,
    /// UIDs that came without a readable INTERNALDATE.
    undated: Vec<u32>,
}

/// Writes blobs durably, then commits their rows. Blocking.
fn store_messages(
    ctx: &AccountContext,
    folder_id: i64,
    uidvalidity: u32,
    messages: Vec<FetchedMessage>,
) -> Result<Stored> {
    let mut blobs = Vec::new();
    let mut rows = Vec::with_capacity(messages.len());
    let (mut already, mut written, mut repaired) = (0, 0, 0);
    let mut undated = Vec::new();
    for m in messages {
        let body = m.body.expect("fetched with a body");
        // The worker names the folder and account around this.
        let write = ctx
            .store
            .write_blob(&body)
            .with_context(|| format!("cannot store UID {}", m.uid))?;
        if write.repaired {
            repaired += 1;
        } else if write.created {
            written += 1;
        } else {
            already += 1;
        }
        if let Some(stored_size) = write.stored_size {
            blobs.push(NewBlob {
                hash: write.hash,
                size: body.len() as u64,
                stored_size,
                meta: BlobMeta::parse(&body),
            });
        }
        // Unknown stays unknown (never 1970); upload falls back to the
        // Date header.
        if m.internal_date.is_none() {
            undated.push(m.uid);
        }
        rows.push(NewMessage {
            uid: m.uid,
            blob: write.hash,
            flags: normalize_flags(m.flags.as_deref().unwrap_or_default()),
            modseq: m.modseq,
            internal_date: m
                .internal_date
                .map(|d| (d.timestamp(), d.offset().local_minus_utc() / 60)),
            size: m.size.map(u64::from).unwrap_or(body.len() as u64),
        });
    }
    ctx.store
        .index()
        .insert_messages(folder_id, uidvalidity, &blobs, &rows)?;
    Ok(Stored {
        written,
        already,
        repaired,
        undated,
    })
}
