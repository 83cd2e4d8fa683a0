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
use super::{MirrorContext, SharedCounts, permits};
use crate::imap::{FetchedMessage, ImapSession, MailboxStatus, mutf7, uid_set};
use crate::store::index::{BlobMeta, NewBlob, NewMessage};
use crate::store::{BlobHash, Source};

const BODY_ITEMS: &str = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]";

/// One folder's sync, shared by its fetch batches; the last batch to finish
/// saves the folder's state.
pub(crate) struct FolderSync {
    pub folder_id: i64,
    pub wire_name: String,
    pub uidvalidity: u32,
    status: MailboxStatus,
    exists: u32,
    synced_before: u32,
    synced_goal: u32,
    remaining: AtomicUsize,
    failed: AtomicBool,
    /// Why it failed, when known.
    why: Mutex<Option<String>>,
    finished: Mutex<bool>,
}

impl FolderSync {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        folder_id: i64,
        wire_name: String,
        uidvalidity: u32,
        status: MailboxStatus,
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
            why: Mutex::new(None),
            finished: Mutex::new(false),
        }
    }

    /// Saves the folder's state. After a failure the UIDNEXT is left unset
    /// so the next run plans the folder again.
    pub fn finish(&self, ctx: &MirrorContext) -> Result<()> {
        let mut finished = self.finished.lock().unwrap();
        if *finished {
            return Ok(());
        }
        *finished = true;
        let failed = self.failed.load(Ordering::SeqCst);
        let index = ctx.store.index();
        if failed {
            let why = self.why.lock().unwrap().clone().unwrap_or_else(|| {
                "some messages could not be fetched this run (see the mirror's output)".into()
            });
            index.save_folder_failed(
                self.folder_id,
                self.uidvalidity,
                self.exists,
                self.synced_before,
                &why,
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

    /// Why the folder is not whole this run, for status (the first reason).
    pub fn note_failure(&self, why: &str) {
        self.why
            .lock()
            .unwrap()
            .get_or_insert_with(|| why.to_string());
    }

    /// The folder is not whole this run (a message that cannot be
    /// fetched): its state is not saved, so the next run plans it again.
    pub fn mark_incomplete(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    fn batch_done(&self, ctx: &MirrorContext) -> Result<()> {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.finish(ctx)?;
        }
        Ok(())
    }

    /// A batch gave up: the folder is incomplete this run.
    pub fn batch_failed(&self, ctx: &MirrorContext) {
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
    /// UIDs stored from a first body and then sent again with other bytes:
    /// fetched alone, they must match what was stored.
    recheck: Mutex<HashMap<u32, crate::store::BlobHash>>,
    /// A large message the link cut, continued in pieces.
    pub(super) resume: super::pieces::Resume,
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
            recheck: Mutex::new(HashMap::new()),
            resume: Default::default(),
        }
    }

    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::SeqCst)
    }

    /// A stored message came a second time with other bytes: fetch it
    /// alone, and compare with `stored`.
    fn check_again(&self, uid: u32, stored: crate::store::BlobHash) {
        self.recheck.lock().unwrap().insert(uid, stored);
        let mut uids = self.uids.lock().unwrap();
        if !uids.contains(&uid) {
            uids.push(uid);
        }
    }

    /// Part of a message arrived: the worker keeps retrying.
    pub(super) fn moved_on(&self) {
        self.progress.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn remaining(&self) -> Vec<u32> {
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
    ctx: &Arc<MirrorContext>,
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

    // A large message the last connection broke in the middle of (or an
    // earlier run) goes on from where it stopped, alone.
    if super::pieces::absorb_cut(ctx, job).await? || super::pieces::resume_earlier(ctx, job).await?
    {
        job.one_by_one.store(true, Ordering::SeqCst);
    }
    job.resume.watch(session);

    // Why a UID was not delivered, for the report.
    let mut undelivered: Vec<(u32, String)> = Vec::new();
    if !job.one_by_one.load(Ordering::SeqCst) {
        let uids = job.remaining();
        let result = fetch_batch(ctx, session, job, shared, &uids, budget).await;
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
            if job.resume.continuing() == Some(uid)
                && super::pieces::fetch_rest(ctx, session, job, shared, uid).await?
            {
                continue;
            }
            let wanted = HashSet::from([uid]);
            let mut got = HashMap::new();
            // Alone, a message that came twice differently must come once
            // (or the same twice); otherwise it is reported, not guessed at.
            match fetch_into(session, &uid.to_string(), &wanted, &mut got).await {
                Ok(mut fetched) => {
                    let stored_before = job.recheck.lock().unwrap().get(&uid).copied();
                    if let (Some(stored), Some(m)) = (stored_before, got.get(&uid))
                        && content_hash(m) != Some(stored)
                    {
                        fetched.conflicting.insert(uid);
                        got.drain().for_each(|(_, m)| discard(m));
                    }
                    if !fetched.conflicting.is_empty() {
                        undelivered.push((uid, CONFLICT.to_string()));
                        job.done_with(&[uid]);
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
                    entry.1 = crate::outcome::error_chain(&e);
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

/// One batch in one FETCH, read message by message. What arrives is held
/// in memory only up to `limit` bytes (what was declared, and reserved from
/// the budget); past that it is stored at once, so a server whose
/// RFC822.SIZE lies cannot take memory beyond the budget. What arrived
/// before a failure is kept.
async fn fetch_batch(
    ctx: &Arc<MirrorContext>,
    session: &mut ImapSession,
    job: &FetchJob,
    shared: &SharedCounts,
    uids: &[u32],
    limit: u64,
) -> Result<Fetched> {
    let wanted: HashSet<u32> = uids.iter().copied().collect();
    // Bodies that may need BINARY to restore NUL bytes wait for the end of
    // the FETCH (that needs the session); the rest can be stored mid-way.
    let binary = session.capabilities().has("BINARY");
    let mut got: HashMap<u32, FetchedMessage> = HashMap::new();
    let mut held = 0u64;
    // Since when the oldest message held has waited to be stored.
    let mut waiting_since: Option<std::time::Instant> = None;
    // What was stored mid-way, to catch a second, different body.
    let mut stored: HashMap<u32, crate::store::BlobHash> = HashMap::new();
    let mut out = Fetched::default();
    let result = {
        let mut stream = session.uid_fetch_stream(&uid_set(uids), BODY_ITEMS).await?;
        loop {
            let m = match stream.next().await {
                Ok(Some(m)) => m,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            if !wanted.contains(&m.uid) || m.body_len().is_none() {
                discard(m);
                continue;
            }
            if let Some(hash) = stored.get(&m.uid) {
                // The first copy is stored already: asked for alone, the
                // message must come back as those bytes.
                if content_hash(&m) != Some(*hash) {
                    job.check_again(m.uid, *hash);
                }
                discard(m);
                continue;
            }
            if got
                .get(&m.uid)
                .is_some_and(|first| !same_content(first, &m))
            {
                out.conflicting.insert(m.uid);
                discard(m);
                continue;
            }
            if got.contains_key(&m.uid) || stored.contains_key(&m.uid) {
                discard(m);
                continue;
            }
            held += in_memory(&m);
            got.insert(m.uid, m);
            let waiting = *waiting_since.get_or_insert_with(std::time::Instant::now);
            // Past the budget, or on a slow link every second: what came
            // is kept even if the run stops before the batch ends.
            if held > limit || waiting.elapsed() >= STORE_AT_LEAST_EVERY {
                waiting_since = None;
                // Two bodies for one UID: neither is stored; it is fetched alone.
                for uid in &out.conflicting {
                    if let Some(m) = got.remove(uid) {
                        discard(m);
                    }
                }
                let (later, now): (HashMap<_, _>, HashMap<_, _>) =
                    got.drain().partition(|(_, m)| binary && may_hide_nul(m));
                for (uid, hash) in store_delivered(ctx, job, shared, now).await? {
                    stored.insert(uid, hash);
                }
                // Too many that need BINARY: fetch those alone later.
                held = later.values().map(in_memory).sum();
                if held <= limit {
                    got = later;
                } else {
                    held = 0;
                    later.into_values().for_each(discard);
                }
            }
        }
    };
    for uid in &out.conflicting {
        if let Some(m) = got.remove(uid) {
            discard(m);
        }
    }
    let broken = result.as_ref().is_err_and(|e| {
        !matches!(
            e.downcast_ref::<crate::imap::ImapError>(),
            Some(crate::imap::ImapError::No { .. })
        )
    });
    if broken {
        // The session is gone: store what needs no BINARY look; the rest
        // stays to fetch (one at a time, on a new connection).
        let (later, now): (HashMap<_, _>, HashMap<_, _>) =
            got.drain().partition(|(_, m)| binary && may_hide_nul(m));
        later.into_values().for_each(discard);
        store_delivered(ctx, job, shared, now).await?;
    } else {
        restore_nul_bytes(session, &mut got).await?;
        store_delivered(ctx, job, shared, got).await?;
    }
    match result {
        Ok(()) => Ok(out),
        Err(e) => match e.downcast_ref::<crate::imap::ImapError>() {
            Some(crate::imap::ImapError::No { .. }) => {
                out.refused = Some(e.to_string());
                Ok(out)
            }
            _ => Err(e),
        },
    }
}

/// Stores delivered messages (after restoring NUL bytes) and counts them.
pub(super) async fn deliver(
    ctx: &Arc<MirrorContext>,
    session: &mut ImapSession,
    job: &FetchJob,
    shared: &SharedCounts,
    mut got: HashMap<u32, FetchedMessage>,
) -> Result<()> {
    if got.is_empty() {
        return Ok(());
    }
    restore_nul_bytes(session, &mut got).await?;
    store_delivered(ctx, job, shared, got).await?;
    Ok(())
}

/// Stores messages and counts them; returns each one's blob.
async fn store_delivered(
    ctx: &Arc<MirrorContext>,
    job: &FetchJob,
    shared: &SharedCounts,
    got: HashMap<u32, FetchedMessage>,
) -> Result<Vec<(u32, crate::store::BlobHash)>> {
    if got.is_empty() {
        return Ok(Vec::new());
    }
    let uids: Vec<u32> = got.keys().copied().collect();
    let messages: Vec<FetchedMessage> = got.into_values().collect();
    let fetched_bytes: u64 = messages.iter().map(|m| m.body_len().unwrap_or(0)).sum();
    let count = messages.len() as u64;
    let store_ctx = ctx.clone();
    let (folder_id, uidvalidity) = (job.folder.folder_id, job.folder.uidvalidity);
    let stored = tokio::task::spawn_blocking(move || {
        store_messages(&store_ctx, folder_id, uidvalidity, messages)
    })
    .await
    .map_err(|e| anyhow!("storing a batch crashed: {e}"))?
    // A full disk is this machine's trouble, not the connection's: it is
    // not retried as if the link had dropped.
    .map_err(|e| crate::imap::ImapError::LocalWrite(crate::outcome::error_chain(&e)))?;
    let (written, already) = (stored.written, stored.already);
    let hashes = stored.hashes;
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
    Ok(hashes)
}

/// On a slow link a batch takes long to arrive: what came is stored at
/// least this often, not only when the batch ends.
const STORE_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

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
            if wanted.contains(&m.uid) && m.body_len().is_some() {
                match got.get(&m.uid) {
                    Some(first) if !same_content(first, &m) => {
                        out.conflicting.insert(m.uid);
                        discard(m);
                    }
                    Some(_) => discard(m),
                    None => {
                        got.insert(m.uid, m);
                    }
                }
            } else {
                discard(m);
            }
            Ok(())
        })
        .await;
    for uid in &out.conflicting {
        if let Some(m) = got.remove(uid) {
            discard(m);
        }
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
/// keep the body as it was. Works alike for bodies spilled to files.
async fn restore_nul_bytes(
    session: &mut ImapSession,
    got: &mut HashMap<u32, FetchedMessage>,
) -> Result<()> {
    if !session.capabilities().has("BINARY") {
        return Ok(());
    }
    let mut suspects: Vec<u32> = got
        .values()
        .filter(|m| may_hide_nul(m))
        .map(|m| m.uid)
        .collect();
    if suspects.is_empty() {
        return Ok(());
    }
    suspects.sort_unstable();
    let mut binaries: HashMap<u32, FetchedMessage> = HashMap::new();
    let result = session
        .uid_fetch(&uid_set(&suspects), "UID BINARY.PEEK[]", None, |m| {
            if let Some(old) = binaries.insert(m.uid, m) {
                discard(old);
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        binaries.into_values().for_each(discard);
        // Not fatal: the bodies as fetched are what the server shows.
        if !matches!(
            e.downcast_ref::<crate::imap::ImapError>(),
            Some(crate::imap::ImapError::No { .. } | crate::imap::ImapError::Bad { .. })
        ) {
            return Err(e);
        }
        return Ok(());
    }
    for (uid, mut binary) in binaries {
        let Some(m) = got.get_mut(&uid) else {
            discard(binary);
            continue;
        };
        let nul_only = match (&m.body, &binary.body, &m.spilled, &binary.spilled) {
            (Some(body), Some(bin), _, _) => differ_only_by_nul(body, bin),
            (_, _, Some(a), Some(b)) => files_differ_only_by_nul(a.file.path(), b.file.path())?,
            _ => false,
        };
        if nul_only {
            m.body = binary.body.take();
            m.spilled = binary.spilled.take();
        } else {
            discard(binary);
        }
    }
    Ok(())
}

fn differ_only_by_nul(body: &[u8], binary: &[u8]) -> bool {
    binary.len() == body.len()
        && binary != body
        && body
            .iter()
            .zip(binary)
            .all(|(a, b)| a == b || (*a == 0x80 && *b == 0))
}

/// [`differ_only_by_nul`] for two spilled bodies, read as streams.
fn files_differ_only_by_nul(a: &std::path::Path, b: &std::path::Path) -> Result<bool> {
    use std::io::Read as _;
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut differs = false;
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(differs);
        }
        fb.read_exact(&mut bb[..n])?;
        for (x, y) in ba[..n].iter().zip(&bb[..n]) {
            if x != y {
                if *x == 0x80 && *y == 0 {
                    differs = true;
                } else {
                    return Ok(false);
                }
            }
        }
    }
}

/// A body that may hold 0x80 where the server stored NUL.
fn may_hide_nul(m: &FetchedMessage) -> bool {
    m.body.as_ref().is_some_and(|b| b.contains(&0x80))
        || m.spilled.as_ref().is_some_and(|s| s.has_0x80)
}

/// Bytes a message holds in memory (a spilled one holds a file instead).
fn in_memory(m: &FetchedMessage) -> u64 {
    m.body.as_ref().map_or(0, |b| b.len() as u64)
}

/// The sha256 of a message's body, wherever it is.
fn content_hash(m: &FetchedMessage) -> Option<crate::store::BlobHash> {
    match (&m.body, &m.spilled) {
        (Some(b), _) => Some(crate::store::BlobHash::of(b)),
        (None, Some(s)) => Some(crate::store::BlobHash::from_digest(s.sha256)),
        (None, None) => None,
    }
}

fn same_content(a: &FetchedMessage, b: &FetchedMessage) -> bool {
    match (&a.body, &b.body) {
        (Some(x), Some(y)) => x == y,
        _ => content_hash(a) == content_hash(b),
    }
}

/// Drops a message that will not be stored (its spill file, if any, goes
/// with it).
fn discard(m: FetchedMessage) {
    drop(m);
}

/// The start of a spilled message, enough for its header fields.
fn head_of(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read as _;
    let mut head = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(256 * 1024).read_to_end(&mut head);
    }
    head
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
    /// Each message's blob.
    hashes: Vec<(u32, crate::store::BlobHash)>,
}

/// Writes blobs durably, then commits their rows. Blocking.
fn store_messages(
    ctx: &MirrorContext,
    folder_id: i64,
    uidvalidity: u32,
    messages: Vec<FetchedMessage>,
) -> Result<Stored> {
    let mut blobs = Vec::new();
    let mut rows = Vec::with_capacity(messages.len());
    let (mut already, mut written, mut repaired) = (0, 0, 0);
    let mut undated = Vec::new();
    let mut hashes = Vec::with_capacity(messages.len());
    // In memory, or spilled to a file while it arrived (large ones).
    let mut srcs = Vec::with_capacity(messages.len());
    for m in &messages {
        srcs.push(match (&m.body, &m.spilled) {
            (Some(body), _) => (Source::Bytes(body), BlobHash::of(body)),
            (None, Some(s)) => {
                // The file must hold every byte its hash was computed over.
                let path = s.file.path();
                let on_disk = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                if on_disk != s.len {
                    bail!(
                        "cannot store UID {}: its spill file {} holds {on_disk} of {} bytes",
                        m.uid,
                        path.display(),
                        s.len
                    );
                }
                (Source::File(path), BlobHash::from_digest(s.sha256))
            }
            (None, None) => unreachable!("only messages with a body are stored"),
        });
    }
    // The worker names the folder and account around this.
    let writes = ctx.store.write_blobs(&srcs).with_context(|| {
        let uids: Vec<u32> = messages.iter().map(|m| m.uid).collect();
        format!("cannot store UID {}", uid_set(&uids))
    })?;
    for (m, write) in messages.iter().zip(writes) {
        let (size, meta) = match (&m.body, &m.spilled) {
            (Some(body), _) => (body.len() as u64, BlobMeta::parse(body)),
            (_, Some(s)) => (s.len, BlobMeta::parse(&head_of(s.file.path()))),
            (None, None) => unreachable!("only messages with a body are stored"),
        };
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
                size,
                stored_size,
                meta,
            });
        }
        // Unknown stays unknown (never 1970); upload falls back to the
        // Date header.
        if m.internal_date.is_none() {
            undated.push(m.uid);
        }
        hashes.push((m.uid, write.hash));
        rows.push(NewMessage {
            uid: m.uid,
            blob: write.hash,
            flags: normalize_flags(m.flags.as_deref().unwrap_or_default()),
            modseq: m.modseq,
            internal_date: m
                .internal_date
                .map(|d| (d.timestamp(), d.offset().local_minus_utc() / 60)),
            size: m.size.map(u64::from).unwrap_or(size),
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
        hashes,
    })
}
