//! Stage 1: mirror every folder of every source account into the store.
//!
//! Per account, one connection lists the folders (with LIST-STATUS, the
//! whole account's check is one round trip) and compares each folder's
//! UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and message count with the index.
//! Folders that did not move cost nothing more. The rest become jobs in a
//! queue shared by up to `connections` sessions:
//!
//! - an *examine* job opens the folder and works out what changed (new UIDs,
//!   flag changes, expunges; after a new UIDVALIDITY, which messages are
//!   already stored), see [`folder`];
//! - a *fetch* job brings one batch of bodies, sized by bytes, into the
//!   store, see [`fetch`].
//!
//! Bytes in flight are bounded across all accounts by one semaphore.

mod fetch;
mod folder;
mod pieces;
mod summary;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Result, bail};
use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use crate::config::{Account, Config, ServerSettings};
use crate::imap::{ImapSession, ListedFolder, is_connection_error, mutf7};
use crate::outcome::error_chain;
pub use crate::progress::{Progress, Silent};
use crate::store::Store;

/// Knobs of a mirror run.
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    pub server: ServerSettings,
    /// Accounts mirrored at the same time.
    pub accounts_at_once: usize,
    /// Target size of one FETCH batch.
    pub batch_bytes: u64,
    /// Most message bytes held in memory at once, across all connections.
    pub max_bytes_in_flight: u64,
    /// New mail only: skip folders whose STATUS figures are unchanged,
    /// without reading their flags.
    pub quick: bool,
}

impl MirrorOptions {
    pub fn new(server: ServerSettings) -> MirrorOptions {
        MirrorOptions {
            server,
            accounts_at_once: 4,
            batch_bytes: 4 << 20,
            max_bytes_in_flight: 64 << 20,
            quick: false,
        }
    }
}

crate::counts::counters! {
    /// Counts of one account's (or the whole run's) work.
    pub struct MirrorCounts, shared SharedCounts {
        /// Folders whose state was compared with the server.
        folders_checked,
        /// Folders that had changed and were opened.
        folders_synced,
        folders_new,
        /// Folders that vanished at the source (kept in the store).
        folders_deleted,
        uidvalidity_changes,
        /// Message bodies downloaded.
        bodies_fetched,
        /// Bytes of message bodies downloaded.
        bytes_fetched,
        /// Bodies downloaded whose blob was already in the store.
        bodies_already_stored,
        /// Messages matched to a stored blob without downloading the body.
        bodies_skipped_as_stored,
        /// Blobs written to the store.
        blobs_written,
        messages_expunged,
        flags_updated,
        /// Messages the server would not deliver (see the account's errors).
        messages_failed,
        /// Messages stored without a readable INTERNALDATE (kept unknown).
        dates_unknown,
        /// Messages fetched again because their stored copy was found damaged.
        blobs_repaired,
        /// IMAP commands sent, each one a round trip.
        round_trips,
        /// Bytes received and sent on the wire, after TLS and compression.
        wire_bytes_in,
        wire_bytes_out,
        connections,
    }
}

/// How one account's mirror ended.
#[derive(Debug, Clone, Serialize)]
pub struct AccountOutcome {
    pub account: String,
    /// True when every folder was mirrored.
    pub complete: bool,
    /// Why the account stopped, if it did (wrong password, server gone).
    pub error: Option<String>,
    /// What kind of failure that was, for scripts and exit codes.
    pub error_kind: Option<crate::outcome::FailureKind>,
    /// Problems that did not stop the account, one line each.
    pub folder_errors: Vec<String>,
    pub counts: MirrorCounts,
    pub seconds: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorSummary {
    /// The run was stopped (Ctrl-C, SIGTERM) before it finished.
    pub interrupted: bool,
    pub accounts: Vec<AccountOutcome>,
    pub totals: MirrorCounts,
    pub seconds: f64,
}

impl MirrorSummary {
    pub fn all_complete(&self) -> bool {
        self.accounts.iter().all(|a| a.complete)
    }
}

/// Mirrors every account of `config` into `store`.
pub async fn mirror(
    store: Arc<Store>,
    config: &Config,
    options: &MirrorOptions,
    progress: Arc<dyn Progress>,
) -> Result<MirrorSummary> {
    let started = Instant::now();
    let tls = crate::imap::tls::client_config(
        options.server.ca_file.as_deref(),
        options.server.danger_accept_invalid_certs,
    )?;
    let budget = Arc::new(Semaphore::new(permits(options.max_bytes_in_flight)));
    let run_id = store.index().start_run("mirror")?;
    let outcomes: Vec<AccountOutcome> = futures::stream::iter(config.accounts.iter().cloned())
        .map(|account| {
            let ctx = MirrorContext {
                store: store.clone(),
                server: options.server.clone(),
                tls: tls.clone(),
                account,
                options: options.clone(),
                budget: budget.clone(),
                progress: progress.clone(),
            };
            async move { mirror_account(Arc::new(ctx)).await }
        })
        .buffer_unordered(options.accounts_at_once.max(1))
        .collect()
        .await;
    let mut accounts = outcomes;
    config.sort_in_file_order(&mut accounts, |o| &o.account);
    let mut totals = MirrorCounts::default();
    for a in &accounts {
        totals.add(&a.counts);
    }
    let summary = MirrorSummary {
        interrupted: crate::stop::requested().is_some(),
        accounts,
        totals,
        seconds: started.elapsed().as_secs_f64(),
    };
    store
        .index()
        .finish_run(run_id, &serde_json::to_string(&summary)?)?;
    Ok(summary)
}

/// Message bodies larger than this are written to a file in the store's
/// tmp/ as they arrive instead of being held in memory.
pub const SPILL_BYTES: u64 = 1 << 20;

/// Semaphore permits are counted in KiB so that any budget fits.
fn permits(bytes: u64) -> usize {
    ((bytes / 1024).max(1)).min(Semaphore::MAX_PERMITS as u64) as usize
}

pub(crate) struct MirrorContext {
    pub store: Arc<Store>,
    pub server: ServerSettings,
    pub tls: Arc<rustls::ClientConfig>,
    pub account: Account,
    pub options: MirrorOptions,
    pub budget: Arc<Semaphore>,
    pub progress: Arc<dyn Progress>,
}

impl MirrorContext {
    /// Opens a session, trying again a few times when the connection
    /// breaks or stalls (not when the login is refused).
    pub async fn connect(&self) -> Result<ImapSession> {
        let mut session = crate::imap::connect_retrying(|| {
            ImapSession::connect(
                &self.server,
                self.tls.clone(),
                &self.account.username,
                &self.account.password,
            )
        })
        .await?;
        // A large message goes to a file as it arrives, not to memory.
        session.spill_large_literals(self.store.spill_dir(), SPILL_BYTES);
        Ok(session)
    }
}

impl SharedCounts {
    /// Adds a finished session's round trips and wire bytes.
    fn absorb_session(&self, session: &ImapSession) {
        self.round_trips
            .fetch_add(session.round_trips(), Ordering::Relaxed);
        let (i, o) = session.wire_bytes();
        self.wire_bytes_in.fetch_add(i, Ordering::Relaxed);
        self.wire_bytes_out.fetch_add(o, Ordering::Relaxed);
    }
}

/// Work for an account's connections.
pub(crate) enum Job {
    Examine(folder::ExamineJob),
    Fetch(fetch::FetchJob),
}

/// The account's job queue. Workers stop when it is empty and no examine job
/// is still running (a running examine job may add fetch jobs). Fetches are
/// kept apart from examine jobs, and by folder, so that finding the next job costs
/// the same with 100,000 folders as with ten.
pub(crate) struct JobQueue {
    jobs: Mutex<Queued>,
    planning: AtomicUsize,
    changed: Notify,
}

#[derive(Default)]
struct Queued {
    examines: VecDeque<folder::ExamineJob>,
    /// Folders with fetches waiting, in the order they were queued.
    fetch_order: VecDeque<i64>,
    fetches: HashMap<i64, VecDeque<fetch::FetchJob>>,
}

impl Queued {
    fn push_fetch_front(&mut self, f: fetch::FetchJob) {
        let id = f.folder.folder_id;
        let q = self.fetches.entry(id).or_default();
        if q.is_empty() {
            self.fetch_order.push_front(id);
        }
        q.push_front(f);
    }

    fn push_fetch_back(&mut self, f: fetch::FetchJob) {
        let id = f.folder.folder_id;
        let q = self.fetches.entry(id).or_default();
        if q.is_empty() {
            self.fetch_order.push_back(id);
        }
        q.push_back(f);
    }

    fn pop_fetch(&mut self, folder: i64) -> Option<fetch::FetchJob> {
        let q = self.fetches.get_mut(&folder)?;
        let f = q.pop_front();
        if q.is_empty() {
            self.fetches.remove(&folder);
            self.fetch_order.retain(|id| *id != folder);
        }
        f
    }

    fn is_empty(&self) -> bool {
        self.examines.is_empty() && self.fetches.is_empty()
    }
}

impl JobQueue {
    fn new(jobs: Vec<Job>) -> JobQueue {
        let mut queued = Queued::default();
        for j in jobs {
            match j {
                Job::Examine(p) => queued.examines.push_back(p),
                Job::Fetch(f) => queued.push_fetch_back(f),
            }
        }
        JobQueue {
            jobs: Mutex::new(queued),
            planning: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    pub fn push_fetches(&self, fetches: Vec<fetch::FetchJob>) {
        let mut q = self.jobs.lock().unwrap();
        // Fetches go first: they free memory and finish folders.
        for f in fetches.into_iter().rev() {
            q.push_fetch_front(f);
        }
        drop(q);
        self.changed.notify_waiters();
    }

    /// The next job, preferring fetches for the folder `selected`, so a
    /// connection does not reopen folders needlessly.
    async fn next(&self, selected: Option<i64>) -> Option<Job> {
        loop {
            if crate::stop::requested().is_some() {
                return None;
            }
            let notified = self.changed.notified();
            {
                let mut q = self.jobs.lock().unwrap();
                let folder = selected
                    .filter(|id| q.fetches.contains_key(id))
                    .or_else(|| q.fetch_order.front().copied());
                if let Some(f) = folder.and_then(|id| q.pop_fetch(id)) {
                    return Some(Job::Fetch(f));
                }
                if let Some(p) = q.examines.pop_front() {
                    self.planning.fetch_add(1, Ordering::SeqCst);
                    return Some(Job::Examine(p));
                }
                if self.planning.load(Ordering::SeqCst) == 0 {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Puts back a job that a worker could not run.
    fn give_back(&self, job: Job) {
        let mut q = self.jobs.lock().unwrap();
        match job {
            Job::Examine(p) => q.examines.push_back(p),
            Job::Fetch(f) => q.push_fetch_back(f),
        }
        drop(q);
        self.changed.notify_waiters();
    }

    /// Jobs no worker ran (every connection failed).
    fn leftovers(&self) -> Vec<Job> {
        let mut q = self.jobs.lock().unwrap();
        let mut out: Vec<Job> = q.examines.drain(..).map(Job::Examine).collect();
        let order: Vec<i64> = q.fetch_order.drain(..).collect();
        for id in order {
            if let Some(fs) = q.fetches.remove(&id) {
                out.extend(fs.into_iter().map(Job::Fetch));
            }
        }
        debug_assert!(q.is_empty());
        out
    }

    fn plan_finished(&self) {
        self.planning.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// No job waits and none can come (no folder is being examined).
    fn nothing_left(&self) -> bool {
        let q = self.jobs.lock().unwrap();
        q.is_empty() && self.planning.load(Ordering::SeqCst) == 0
    }
}

async fn mirror_account(ctx: Arc<MirrorContext>) -> AccountOutcome {
    let started = Instant::now();
    let name = ctx.account.name.clone();
    if crate::stop::requested().is_some() {
        // Never started: its last run is still the one before.
        return AccountOutcome {
            account: name,
            complete: false,
            error: Some(crate::outcome::Interrupted.to_string()),
            error_kind: Some(crate::outcome::FailureKind::Interrupted),
            folder_errors: Vec::new(),
            counts: MirrorCounts::default(),
            seconds: 0.0,
        };
    }
    let shared = Arc::new(SharedCounts::default());
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    // A stop abandons what is in flight: a blob is durable before its row,
    // so the next run finds the store consistent and goes on from there.
    let result = tokio::select! {
        r = run_account(&ctx, &shared, &errors) => r,
        () = crate::stop::wait() => Err(crate::outcome::Interrupted.into()),
    };
    let (base, error, failure) = match result {
        Ok(base) => (base, None, None),
        Err(e) => (
            MirrorCounts::default(),
            Some(format!(
                "account {} ({}): {}",
                name,
                ctx.account.origin,
                error_chain(&e)
            )),
            Some((crate::imap::failure_kind(&e), error_chain(&e))),
        ),
    };
    let folder_errors = std::mem::take(&mut *errors.lock().unwrap());
    // What status shows: a failure in the server's words, or a good run.
    let recorded = match &failure {
        Some((kind, text)) => ctx.store.index().record_account_run(
            &name,
            crate::store::index::Stage::Mirror,
            Some((*kind, text)),
        ),
        None if !folder_errors.is_empty() => ctx.store.index().record_account_run(
            &name,
            crate::store::index::Stage::Mirror,
            Some((
                crate::outcome::FailureKind::Other,
                &format!(
                    "{} folder(s) not mirrored: {}",
                    folder_errors.len(),
                    folder_errors[0]
                ),
            )),
        ),
        None => {
            ctx.store
                .index()
                .record_account_run(&name, crate::store::index::Stage::Mirror, None)
        }
    };
    if let Err(e) = recorded {
        ctx.progress
            .warn(&name, &format!("cannot record the run in the index: {e:#}"));
    }
    let mut counts = base;
    counts.add(&shared.snapshot());
    ctx.progress.account_finished(&name, error.as_deref());
    AccountOutcome {
        account: name,
        complete: error.is_none() && folder_errors.is_empty(),
        error,
        error_kind: failure.as_ref().map(|(k, _)| *k),
        folder_errors,
        counts,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Lists the folders, queues the ones that changed and runs the workers.
/// Returns the counts that only this step knows.
async fn run_account(
    ctx: &Arc<MirrorContext>,
    shared: &Arc<SharedCounts>,
    errors: &Arc<Mutex<Vec<String>>>,
) -> Result<MirrorCounts> {
    let mut counts = MirrorCounts::default();
    let mut session = ctx.connect().await?;
    shared.connections.fetch_add(1, Ordering::Relaxed);
    // The namespace goes with the listing: one round trip for both.
    let (listed, namespace) = match session
        .list_and_namespace(ctx.account.user_root.as_deref())
        .await
    {
        Ok(l) => l,
        Err(e) => {
            shared.absorb_session(&session);
            return Err(e.context("cannot list folders"));
        }
    };
    ctx.progress.account_started(&ctx.account.name);
    let imported = ctx.store.index().account_origin(&ctx.account.name)?
        == Some(crate::store::index::AccountOrigin::Imported);
    if imported {
        shared.absorb_session(&session);
        bail!(
            "the store holds {} as mail imported from files; a mirror would take those \
             messages for expunged ones. Mirror it under its own name, or use another store",
            ctx.account.name
        );
    }
    let account_id =
        ctx.store
            .index()
            .account_id(&ctx.account.name, &ctx.server.host, &ctx.account.username)?;
    // Where the mailbox keeps its folders, so that upload can move them
    // from this server's namespace to the target's.
    if let Ok(ns) = namespace {
        ctx.store
            .index()
            .set_personal_prefix(account_id, &ns.prefix)?;
    }
    let (candidates, repairing) = candidates(ctx, &listed, account_id, errors, &mut counts)?;
    let to_examine = changed(ctx, &mut session, shared, candidates, errors).await?;
    let jobs: Vec<Job> = to_examine
        .into_iter()
        .map(|c| {
            Job::Examine(folder::ExamineJob {
                folder_id: c.folder_id,
                wire_name: c.wire_name,
                known: c.known,
                skip_ids: Default::default(),
                repair: c.repair,
                status_hint: c.status,
            })
        })
        .collect();
    if jobs.is_empty() {
        shared.absorb_session(&session);
        session.logout().await;
        return Ok(counts);
    }
    let result = work_through(ctx, session, jobs, shared, errors).await;
    if !repairing.is_empty() {
        report_unrepaired(ctx, account_id, &repairing, errors)?;
    }
    result?;
    Ok(counts)
}

/// The folders to look at: listed, selectable, under the UserRoot and
/// with a name that can be sent back; each with its index row (made or
/// updated) and what the index knows is damaged in it. Folders gone from
/// the listing are marked deleted. Also returns the folders with damaged
/// messages being repaired.
#[allow(clippy::type_complexity)]
fn candidates(
    ctx: &MirrorContext,
    listed: &[ListedFolder],
    account_id: i64,
    errors: &Mutex<Vec<String>>,
    counts: &mut MirrorCounts,
) -> Result<(Vec<Candidate>, Vec<(i64, String)>)> {
    let known: HashMap<String, crate::store::index::FolderRow> = ctx
        .store
        .index()
        .folders(account_id)?
        .into_iter()
        .map(|f| (f.wire_name.clone(), f))
        .collect();
    let mut damaged = ctx.store.index().damaged_messages(account_id)?;
    let mut repairing: Vec<(i64, String)> = Vec::new();
    // With a UserRoot, only that folder and what lies below it.
    let in_root = |f: &ListedFolder| match ctx.account.user_root.as_deref() {
        None => true,
        Some(root) => {
            f.wire_name == root
                || f.delimiter
                    .as_deref()
                    .is_some_and(|d| f.wire_name.starts_with(&format!("{root}{d}")))
        }
    };
    let mut selectable: Vec<&ListedFolder> = listed
        .iter()
        .filter(|f| f.is_selectable() && in_root(f))
        .collect();
    // A name with a line break cannot be sent back in a command line.
    selectable.retain(|f| {
        let unsafe_name = f.wire_name.contains(['\r', '\n', '\0']);
        if unsafe_name {
            errors.lock().unwrap().push(format!(
                "folder {:?}: its name holds a line break or NUL, which cannot be sent back to \
                 the server safely; not mirrored (rename it at the source)",
                f.wire_name
            ));
        }
        !unsafe_name
    });
    let listed_names: std::collections::HashSet<&str> =
        selectable.iter().map(|f| f.wire_name.as_str()).collect();
    for (wire, row) in &known {
        if row.deleted_at.is_none() && !listed_names.contains(wire.as_str()) {
            ctx.store.index().mark_folder_deleted(row.id)?;
            counts.folders_deleted += 1;
        }
    }
    // Each listed folder, its index row and what LIST-STATUS said of it.
    let mut candidates: Vec<Candidate> = Vec::with_capacity(selectable.len());
    for listed_folder in selectable {
        counts.folders_checked += 1;
        let attributes = listed_folder.attributes.join(" ");
        let row = known.get(&listed_folder.wire_name);
        let needs_upsert = match row {
            None => true,
            Some(r) => {
                r.deleted_at.is_some()
                    || r.attributes != attributes
                    || r.delimiter.as_deref() != listed_folder.delimiter.as_deref()
            }
        };
        if row.is_none() {
            counts.folders_new += 1;
        }
        let folder_id = if needs_upsert {
            ctx.store.index().upsert_folder(
                account_id,
                &listed_folder.wire_name,
                &mutf7::display(&listed_folder.wire_name),
                listed_folder.delimiter.as_deref(),
                &attributes,
            )?
        } else {
            row.expect("known folder").id
        };
        let repair = damaged.remove(&folder_id);
        if repair.is_some() {
            repairing.push((folder_id, listed_folder.wire_name.clone()));
        }
        candidates.push(Candidate {
            folder_id,
            wire_name: listed_folder.wire_name.clone(),
            known: row.filter(|r| r.deleted_at.is_none()).cloned(),
            status: listed_folder.status,
            repair,
        });
    }

    Ok((candidates, repairing))
}

/// The candidates that must be examined: those whose STATUS changed
/// (CONDSTORE, or `--quick`), or, without CONDSTORE, those whose flag
/// listing (one pipelined round for all) does not settle them.
async fn changed(
    ctx: &Arc<MirrorContext>,
    session: &mut ImapSession,
    shared: &SharedCounts,
    candidates: Vec<Candidate>,
    errors: &Mutex<Vec<String>>,
) -> Result<Vec<Candidate>> {
    let mut to_plan: Vec<Candidate> = Vec::new();
    if session.has_condstore() || ctx.options.quick {
        // STATUS tells which folders changed (with CONDSTORE, flag changes
        // too): asked for all folders at once where LIST-STATUS did not.
        let ask: Vec<String> = candidates
            .iter()
            .filter(|c| c.status.is_none())
            .map(|c| c.wire_name.clone())
            .collect();
        let mut answers = session.statuses(&ask).await?.into_iter();
        for mut c in candidates {
            if c.status.is_none() {
                match answers.next() {
                    Some(Ok(s)) => c.status = Some(s),
                    Some(Err(e)) => {
                        ctx.store
                            .index()
                            .folder_failed(c.folder_id, &format!("STATUS failed: {e}"))?;
                        errors.lock().unwrap().push(format!(
                            "folder {}: STATUS failed: {e}",
                            mutf7::display(&c.wire_name)
                        ));
                        continue;
                    }
                    None => {}
                }
            }
            if c.repair.is_none() && c.unchanged(ctx.options.quick) {
                ctx.store.index().folder_checked(c.folder_id)?;
                ctx.progress.folder_done(&ctx.account.name, &c.wire_name);
                continue;
            }
            to_plan.push(c);
        }
    } else {
        // No CONDSTORE: only every folder's flags tell what changed. Read
        // them for all known folders at once; folders with new mail (or
        // anything the listing cannot settle) are planned in full.
        let (listable, others): (Vec<Candidate>, Vec<Candidate>) =
            candidates.into_iter().partition(|c| {
                c.repair.is_none() && c.known.as_ref().is_some_and(|k| k.uidvalidity.is_some())
            });
        to_plan.extend(others);
        let names: Vec<String> = listable.iter().map(|c| c.wire_name.clone()).collect();
        let mut listings = session.flag_listings(&names).await?;
        // UIDNEXT where neither EXAMINE (Courier gives none) nor the index
        // knows it: one more pipelined round, once per folder.
        let unknown: Vec<usize> = listings
            .iter()
            .enumerate()
            .filter(|(i, l)| {
                l.as_ref().is_ok_and(|l| l.status.uidnext.is_none())
                    && listable[*i]
                        .known
                        .as_ref()
                        .is_some_and(|k| k.uidnext.is_none())
            })
            .map(|(i, _)| i)
            .collect();
        if !unknown.is_empty() {
            let names: Vec<String> = unknown.iter().map(|&i| names[i].clone()).collect();
            let statuses = session.statuses(&names).await?;
            for (i, s) in unknown.into_iter().zip(statuses) {
                if let (Ok(listing), Ok(s)) = (&mut listings[i], s) {
                    listing.status.uidnext = s.uidnext;
                }
            }
        }
        for (mut c, listing) in listable.into_iter().zip(listings) {
            let settled = match listing {
                Ok(listing) => {
                    c.status = Some(listing.status);
                    settle_from_listing(ctx, shared, &c, &listing)?
                }
                Err(_) => false,
            };
            if !settled {
                to_plan.push(c);
            }
        }
    }
    Ok(to_plan)
}

/// Runs the account's jobs on up to `connections` sessions (the first is
/// `session`); folders left undone when the sessions failed are recorded
/// as failed, and the account's error says which.
async fn work_through(
    ctx: &Arc<MirrorContext>,
    session: ImapSession,
    jobs: Vec<Job>,
    shared: &Arc<SharedCounts>,
    errors: &Arc<Mutex<Vec<String>>>,
) -> Result<()> {
    let workers = ctx.server.connections.max(1).min(jobs.len().max(1) * 4);
    let queue = Arc::new(JobQueue::new(jobs));
    let mut handles = Vec::new();
    let mut first = Some(session);
    for i in 0..workers {
        let worker = Worker {
            ctx: ctx.clone(),
            queue: queue.clone(),
            shared: shared.clone(),
            errors: errors.clone(),
        };
        let session = first.take();
        handles.push(tokio::spawn(async move {
            // Each further connection waits its turn: a mailbox the first
            // one finishes by then (few new messages, a fast server) costs
            // one login, not four; a slow one soon has them all.
            let turn = Instant::now() + EXTRA_CONNECTION_AFTER * i as u32;
            while Instant::now() < turn {
                if worker.queue.nothing_left() {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            worker.run(session).await
        }));
    }
    let mut last_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => last_error = Some(e),
            Err(join) => last_error = Some(anyhow::anyhow!("a worker crashed: {join}")),
        }
    }
    let leftovers = queue.leftovers();
    if !leftovers.is_empty() {
        let mut folders: Vec<String> = Vec::new();
        let why = last_error
            .as_ref()
            .map(error_chain)
            .unwrap_or_else(|| "no connection".to_string());
        for job in leftovers {
            let name = match job {
                Job::Examine(p) => {
                    ctx.store
                        .index()
                        .folder_failed(p.folder_id, &format!("not checked: {why}"))?;
                    mutf7::display(&p.wire_name)
                }
                Job::Fetch(f) => {
                    f.folder.note_failure(&why);
                    f.folder.batch_failed(ctx);
                    mutf7::display(&f.folder.wire_name)
                }
            };
            if !folders.contains(&name) {
                folders.push(name);
            }
        }
        if let Some(e) = last_error {
            // The account failed as its last error did (a login refused
            // on reconnect is still a refused login).
            return Err(e.context(format!(
                "{} folder(s) not mirrored ({})",
                folders.len(),
                folders.join(", ")
            )));
        }
        anyhow::bail!(
            "{} folder(s) not mirrored ({}): {why}",
            folders.len(),
            folders.join(", ")
        );
    }
    Ok(())
}

/// How long each further connection of an account waits before it
/// takes work (the second this long, the third twice as long, ...).
const EXTRA_CONNECTION_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// Says so when a damaged copy could not be replaced (the server sends
/// other bytes now, or did not send the message).
fn report_unrepaired(
    ctx: &MirrorContext,
    account_id: i64,
    repairing: &[(i64, String)],
    errors: &Mutex<Vec<String>>,
) -> Result<()> {
    // Say so when a damaged copy could not be replaced (the server
    // sends other bytes now, or did not send the message).
    let still = ctx.store.index().damaged_messages(account_id)?;
    for (id, wire) in repairing {
        if let Some(d) = still.get(id) {
            let uids: Vec<u32> = d.uids.iter().map(|(u, _)| *u).collect();
            errors.lock().unwrap().push(format!(
                "folder {}: the stored copy of UID {} is damaged and the server did not \
                 send the same bytes again; it stays damaged in the store",
                mutf7::display(wire),
                crate::imap::uid_set(&uids)
            ));
        }
    }
    Ok(())
}

/// A listed folder, before deciding whether it must be opened.
struct Candidate {
    folder_id: i64,
    wire_name: String,
    /// The index's row, unless the folder is new (or was deleted).
    known: Option<crate::store::index::FolderRow>,
    status: Option<crate::imap::MailboxStatus>,
    repair: Option<crate::store::index::DamagedMessages>,
}

impl Candidate {
    /// Whether STATUS shows nothing changed since the last run: no new
    /// mail, nothing gone, the same UIDVALIDITY, and (unless only new mail
    /// matters) no flag change by HIGHESTMODSEQ.
    fn unchanged(&self, new_mail_only: bool) -> bool {
        let (Some(r), Some(s)) = (&self.known, &self.status) else {
            return false;
        };
        s.uidvalidity.is_some()
            && r.uidvalidity == s.uidvalidity
            && s.uidnext.is_some()
            && r.uidnext == s.uidnext
            && r.source_count == s.messages
            && (new_mail_only || (s.highestmodseq.is_some() && r.highestmodseq == s.highestmodseq))
    }
}

/// Settles a known folder from its flag listing alone, where no new mail
/// arrived: flag changes and expunges go to the index and the folder's
/// state is saved. False when the folder must be planned in full (new
/// mail, a new UIDVALIDITY, or counts that do not add up).
fn settle_from_listing(
    ctx: &MirrorContext,
    shared: &SharedCounts,
    c: &Candidate,
    listing: &crate::imap::FlagListing,
) -> Result<bool> {
    let Some(known) = &c.known else {
        return Ok(false);
    };
    let s = listing.status;
    let Some(uidvalidity) = s.uidvalidity else {
        return Ok(false);
    };
    if Some(uidvalidity) != known.uidvalidity {
        // Courier gives an empty folder a new UIDVALIDITY in every session
        // until it holds mail: nothing to fetch, only the new number.
        let empty = s.messages == Some(0) && listing.messages.is_empty();
        let index = ctx.store.index();
        let nothing_live = known
            .uidvalidity
            .map(|old| index.live_messages(c.folder_id, old).map(|l| l.is_empty()))
            .transpose()?
            .unwrap_or(true);
        if !(empty && nothing_live) {
            return Ok(false);
        }
        index.reset_uidvalidity(c.folder_id, uidvalidity)?;
        index.save_folder_state(c.folder_id, uidvalidity, s.uidnext, None, 0, 0)?;
        drop(index);
        shared.uidvalidity_changes.fetch_add(1, Ordering::Relaxed);
        shared.folders_synced.fetch_add(1, Ordering::Relaxed);
        ctx.progress.folder_done(&ctx.account.name, &c.wire_name);
        return Ok(true);
    }
    if s.messages != Some(listing.messages.len() as u32) {
        return Ok(false);
    }
    let index = ctx.store.index();
    let live = index.live_messages(c.folder_id, uidvalidity)?;
    if listing
        .messages
        .iter()
        .any(|(uid, _)| !live.contains_key(uid))
    {
        return Ok(false);
    }
    let on_server: std::collections::HashSet<u32> =
        listing.messages.iter().map(|(uid, _)| *uid).collect();
    let changes: Vec<(u32, String, Option<u64>)> = listing
        .messages
        .iter()
        .filter_map(|(uid, flags)| {
            let flags = folder::normalize_flags(flags);
            (live[uid].flags != flags).then_some((*uid, flags, None))
        })
        .collect();
    let expunged: Vec<u32> = live
        .keys()
        .filter(|uid| !on_server.contains(uid))
        .copied()
        .collect();
    if !changes.is_empty() {
        index.update_flags(c.folder_id, uidvalidity, &changes)?;
        shared
            .flags_updated
            .fetch_add(changes.len() as u64, Ordering::Relaxed);
    }
    if !expunged.is_empty() {
        index.mark_expunged(c.folder_id, uidvalidity, &expunged)?;
        shared
            .messages_expunged
            .fetch_add(expunged.len() as u64, Ordering::Relaxed);
    }
    let highest = on_server.iter().max().copied().unwrap_or(0);
    index.save_folder_state(
        c.folder_id,
        uidvalidity,
        s.uidnext.or(known.uidnext),
        None,
        s.messages.unwrap_or(0),
        known.synced_uid.max(highest),
    )?;
    drop(index);
    shared.folders_synced.fetch_add(1, Ordering::Relaxed);
    ctx.progress.folder_done(&ctx.account.name, &c.wire_name);
    Ok(true)
}

/// One connection working through the account's queue.
struct Worker {
    ctx: Arc<MirrorContext>,
    queue: Arc<JobQueue>,
    shared: Arc<SharedCounts>,
    errors: Arc<Mutex<Vec<String>>>,
}

/// How many times a job is retried on a fresh connection after the old one broke.
const RECONNECTS: usize = 3;

impl Worker {
    async fn run(self, mut session: Option<ImapSession>) -> Result<()> {
        let mut selected: Option<i64> = None;
        let mut broken_in_a_row = 0;
        while let Some(job) = self.queue.next(selected).await {
            let is_examine = matches!(job, Job::Examine(_));
            let mut job = Some(job);
            let mut attempt = 0;
            loop {
                if session.is_none() {
                    match self.ctx.connect().await {
                        Ok(s) => {
                            self.shared.connections.fetch_add(1, Ordering::Relaxed);
                            session = Some(s);
                        }
                        Err(e) => {
                            // Give the job back: other connections may still
                            // work (a server may cap connections per user).
                            self.ctx.progress.warn(
                                &self.ctx.account.name,
                                &format!("a connection could not be opened: {}", error_chain(&e)),
                            );
                            self.queue.give_back(job.take().expect("job"));
                            if is_examine {
                                self.queue.plan_finished();
                            }
                            return Err(e);
                        }
                    }
                }
                let s = session.as_mut().expect("session");
                let progress_before = job_progress(job.as_ref().expect("job"));
                let result = match job.as_ref().expect("job") {
                    Job::Examine(p) => {
                        folder::examine(&self.ctx, s, p, &self.queue, &self.shared).await
                    }
                    Job::Fetch(f) => fetch::run(&self.ctx, s, f, &self.shared).await,
                };
                // A fetch that stored something before the link broke
                // earns a fresh set of retries.
                if job_progress(job.as_ref().expect("job")) > progress_before {
                    attempt = 0;
                }
                match result {
                    Ok(folder_id) => {
                        selected = Some(folder_id);
                        broken_in_a_row = 0;
                        break;
                    }
                    Err(e) if is_connection_error(&e) && attempt < RECONNECTS => {
                        attempt += 1;
                        broken_in_a_row += 1;
                        self.ctx.progress.warn(
                            &self.ctx.account.name,
                            &format!("connection lost ({}); reconnecting", error_chain(&e)),
                        );
                        if let Some(old) = session.take() {
                            self.shared.absorb_session(&old);
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(
                            250 * broken_in_a_row.min(8) as u64,
                        ))
                        .await;
                    }
                    Err(e) => {
                        let what = match job.as_ref().expect("job") {
                            Job::Examine(p) => mutf7::display(&p.wire_name),
                            Job::Fetch(f) => mutf7::display(&f.folder.wire_name),
                        };
                        if let Job::Fetch(f) = job.take().expect("job") {
                            f.folder.note_failure(&error_chain(&e));
                            f.folder.batch_failed(&self.ctx);
                        }
                        self.errors
                            .lock()
                            .unwrap()
                            .push(format!("folder {what}: {}", error_chain(&e)));
                        selected = None;
                        let unusable = is_connection_error(&e)
                            || e.chain().any(|c| {
                                matches!(
                                    c.downcast_ref::<crate::imap::ImapError>(),
                                    Some(crate::imap::ImapError::LocalWrite(_))
                                )
                            });
                        if unusable && let Some(old) = session.take() {
                            self.shared.absorb_session(&old);
                        }
                        break;
                    }
                }
            }
            if is_examine {
                self.queue.plan_finished();
            }
        }
        if let Some(s) = session {
            self.shared.absorb_session(&s);
            s.logout().await;
        }
        Ok(())
    }
}

fn job_progress(job: &Job) -> u64 {
    match job {
        Job::Examine(_) => 0,
        Job::Fetch(f) => f.progress(),
    }
}
