//! Stage 2: replay the store into the target mailboxes, exactly once.
//!
//! Per account: the source folders are mapped to target folders
//! ([`mapping`]), and each target folder becomes a job for one of up to
//! `connections` sessions to the target mailbox. A job reads the ledger
//! ([`crate::store::ledger`]), reconciles entries left pending by a crash, pushes flag
//! changes, and appends what is missing ([`folder`]). All connections of a
//! mailbox share one [`throttle::Throttle`]. No source connection is needed.

mod ahead;
pub mod check;
mod folder;
pub mod mapping;
pub mod refusal;
mod summary;
pub mod throttle;

use crate::store::ledger;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt as _;
use serde::Serialize;

use crate::config::{Account, AuthMethod, Config, TargetKind, TargetSettings};
use crate::imap::{ImapSession, mutf7};
use crate::oauth::{AccessToken, TokenProvider};
use crate::outcome::error_chain;
use crate::progress::Progress;
use crate::store::Store;
use mapping::Namespace;
pub use mapping::{MapEntry, MapFile};

/// Knobs of an upload run.
pub struct UploadOptions {
    pub target: TargetSettings,
    pub accounts_at_once: usize,
    /// `--retry-failed`: only entries that failed before.
    pub only_failed: bool,
    /// `--dry-run`: say what would be appended where; touch nothing.
    pub dry_run: bool,
    /// Allow two source folders to go to one target folder.
    pub merge_folders: bool,
    /// Send NUL bytes in a plain literal to a target without BINARY.
    pub send_nul_bytes: bool,
    pub map_file: Option<MapFile>,
    /// Tokens for XOAUTH2 targets.
    pub tokens: Option<Arc<TokenProvider>>,
}

crate::counts::counters! {
    /// Counts of one account's (or the run's) upload.
    pub struct UploadCounts, shared Shared {
        /// Target folders looked at, and created.
        folders,
        folders_created,
        /// Messages appended in this run, and their bytes.
        appended,
        bytes_appended,
        /// Messages the ledger already had at the target before this run.
        already_present,
        /// Entries left pending by an earlier run, settled by reading the target.
        reconciled,
        /// Messages found already at the target though the ledger had no entry
        /// for them (a lost or replaced index, another store, an earlier tool),
        /// recorded as present instead of appended again.
        found_at_target,
        /// Extra copies of the same bytes in one target folder (uploaded once).
        duplicates,
        /// Messages not uploaded for good (too large, rejected), by reason.
        skipped,
        /// Messages that failed and will be tried again.
        failed,
        /// Flag changes pushed to messages already at the target.
        flags_pushed,
        /// Throttling replies obeyed, and milliseconds waited for them.
        throttled,
        throttle_wait_ms,
        round_trips,
        connections,
        /// With --dry-run: what would be appended.
        would_append,
        would_append_bytes,
    }
    maps {
        /// Skipped messages by the kind of reason.
        skipped_by_reason,
        /// Messages at the target whose bytes differ from the store's because
        /// the target needed them so (line ends made CRLF, NUL bytes sent
        /// without BINARY), by what was done.
        sent_otherwise,
    }
}

/// What --dry-run would do in one target folder.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedFolder {
    pub target_folder: String,
    pub sources: Vec<String>,
    pub append: u64,
    pub bytes: u64,
}

/// How one account's upload ended.
#[derive(Debug, Clone, Serialize)]
pub struct AccountUpload {
    pub account: String,
    pub target: String,
    pub complete: bool,
    pub error: Option<String>,
    /// What kind of failure that was, for scripts and exit codes.
    pub error_kind: Option<crate::outcome::FailureKind>,
    pub folder_errors: Vec<String>,
    pub counts: UploadCounts,
    /// With --dry-run: per target folder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<PlannedFolder>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UploadSummary {
    /// The run was stopped (Ctrl-C, SIGTERM) before it finished.
    pub interrupted: bool,
    pub accounts: Vec<AccountUpload>,
    pub totals: UploadCounts,
    pub dry_run: bool,
    pub seconds: f64,
}

impl UploadSummary {
    pub fn all_complete(&self) -> bool {
        self.accounts.iter().all(|a| a.complete)
    }
}

/// Uploads every account of `config` from `store`.
pub async fn upload(
    store: Arc<Store>,
    config: &Config,
    options: Arc<UploadOptions>,
    progress: Arc<dyn Progress>,
) -> Result<UploadSummary> {
    let started = Instant::now();
    // Built on first use: loading the system's roots costs more than a
    // whole run that has nothing to do.
    let tls = Arc::new(std::sync::OnceLock::new());
    if let Some(ca) = &options.target.server.ca_file
        && !ca.exists()
    {
        bail!("the target CA file {} does not exist", ca.display());
    }
    if options.target.server.auth == AuthMethod::Xoauth2
        && options.tokens.is_none()
        && !options.dry_run
    {
        bail!(
            "the target uses XOAUTH2 but no OAuth settings were given ([target.oauth] in the \
             config file: tenant, client_id, and a client secret or certificate)"
        );
    }
    let run_id = (!options.dry_run)
        .then(|| store.index().start_run("upload"))
        .transpose()?;
    let mut accounts: Vec<AccountUpload> = futures::stream::iter(config.accounts.iter().cloned())
        .map(|account| {
            let ctx = Arc::new(UploadContext::new(
                store.clone(),
                options.clone(),
                tls.clone(),
                account,
                progress.clone(),
            ));
            async move { upload_account(ctx).await }
        })
        .buffer_unordered(options.accounts_at_once.max(1))
        .collect()
        .await;
    config.sort_in_file_order(&mut accounts, |a| &a.account);
    let mut totals = UploadCounts::default();
    for a in &accounts {
        totals.add(&a.counts);
    }
    let summary = UploadSummary {
        interrupted: crate::stop::requested().is_some(),
        accounts,
        totals,
        dry_run: options.dry_run,
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(id) = run_id {
        store
            .index()
            .finish_run(id, &serde_json::to_string(&summary)?)?;
    }
    Ok(summary)
}

pub(crate) struct UploadContext {
    pub store: Arc<Store>,
    pub options: Arc<UploadOptions>,
    pub tls: Arc<std::sync::OnceLock<Arc<rustls::ClientConfig>>>,
    pub account: Account,
    pub progress: Arc<dyn Progress>,
    pub throttle: throttle::Throttle,
    pub shared: Shared,
}

/// A session and the token it logged in with.
pub struct TargetSession {
    pub imap: ImapSession,
    pub token: Option<AccessToken>,
}

impl TargetSession {
    /// True when its token is about to expire: log in again first.
    pub fn needs_new_login(&self) -> bool {
        self.token.as_ref().is_some_and(|t| t.is_stale())
    }
}

impl UploadContext {
    pub fn new(
        store: Arc<Store>,
        options: Arc<UploadOptions>,
        tls: Arc<std::sync::OnceLock<Arc<rustls::ClientConfig>>>,
        account: Account,
        progress: Arc<dyn Progress>,
    ) -> UploadContext {
        UploadContext {
            store,
            options,
            tls,
            account,
            progress,
            throttle: Default::default(),
            shared: Default::default(),
        }
    }

    pub async fn connect(&self) -> Result<TargetSession> {
        let tls = match self.tls.get() {
            Some(t) => t.clone(),
            None => {
                let server = &self.options.target.server;
                let t = crate::imap::tls::client_config(
                    server.ca_file.as_deref(),
                    server.danger_accept_invalid_certs,
                )?;
                self.tls.get_or_init(|| t).clone()
            }
        };
        let session = crate::imap::connect_retrying(|| {
            target_login(
                &self.options.target.server,
                self.options.tokens.as_deref(),
                tls.clone(),
                &self.account,
            )
        })
        .await?;
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
        Ok(session)
    }

    pub fn absorb(&self, session: &TargetSession) {
        self.shared
            .round_trips
            .fetch_add(session.imap.round_trips(), Ordering::Relaxed);
    }
}

/// Logs in to the account's target mailbox: with a token from `tokens` for
/// XOAUTH2, else with the account's target password.
pub async fn target_login(
    server: &crate::config::ServerSettings,
    tokens: Option<&TokenProvider>,
    tls: Arc<rustls::ClientConfig>,
    account: &Account,
) -> Result<TargetSession> {
    let (secret, token) = match server.auth {
        AuthMethod::Xoauth2 => {
            let provider =
                tokens.ok_or_else(|| anyhow!("no OAuth settings for an XOAUTH2 target"))?;
            let t = provider.access_token().await?;
            (t.token.clone(), Some(t))
        }
        _ => (
            account.target_password.clone().ok_or_else(|| {
                anyhow!(
                    "no target password for {} (TargetPassword in the CSV, or \
                     target_password / target_password_env / target_password_file)",
                    account.target
                )
            })?,
            None,
        ),
    };
    let imap = ImapSession::connect(server, tls, &account.target, &secret)
        .await
        .with_context(|| format!("target mailbox {}", account.target))?;
    Ok(TargetSession { imap, token })
}

/// One target folder's work.
pub(crate) struct FolderJob {
    pub target_folder_id: i64,
    pub wire_name: String,
    pub display_name: String,
    pub outgoing: Vec<ledger::Outgoing>,
    /// Whether LIST showed it at the target.
    pub exists: bool,
}

async fn upload_account(ctx: Arc<UploadContext>) -> AccountUpload {
    let started = Instant::now();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut planned = Vec::new();
    if crate::stop::requested().is_some() {
        // Never started: its last run is still the one before.
        return AccountUpload {
            account: ctx.account.name.clone(),
            target: ctx.account.target.clone(),
            complete: false,
            error: Some(crate::outcome::Interrupted.to_string()),
            error_kind: Some(crate::outcome::FailureKind::Interrupted),
            folder_errors: Vec::new(),
            counts: UploadCounts::default(),
            planned,
            seconds: 0.0,
        };
    }
    // A stop lets an APPEND in flight finish (each folder stops before its
    // next message): one cut mid-literal could still reach the server from
    // the socket's buffer after this process is gone, later than the next
    // run's look at the target.
    let result = run_account(&ctx, &errors, &mut planned).await;
    let (mut counts, error, failure) = match result {
        Ok(c) => (c, None, None),
        Err(e) => (
            UploadCounts::default(),
            Some(format!(
                "account {} ({}) to {}: {}",
                ctx.account.name,
                ctx.account.origin,
                ctx.account.target,
                error_chain(&e)
            )),
            Some((crate::imap::failure_kind(&e), error_chain(&e))),
        ),
    };
    counts.add(&ctx.shared.snapshot());
    let (throttled, waited) = ctx.throttle.totals();
    counts.throttled = throttled;
    counts.throttle_wait_ms = waited.as_millis() as u64;
    if error.is_none() && !ctx.options.dry_run {
        // Skipped and failed as the ledger has them now, for these folders.
        if let Err(e) = count_outcomes(&ctx, &mut counts) {
            errors
                .lock()
                .unwrap()
                .push(format!("cannot read the ledger: {e:#}"));
        }
    }
    let folder_errors = std::mem::take(&mut *errors.lock().unwrap());
    let stopped =
        crate::stop::requested().is_some() && (failure.is_some() || !folder_errors.is_empty());
    let (error, failure) = if stopped {
        let text = crate::outcome::Interrupted.to_string();
        (
            Some(format!("account {}: {text}", ctx.account.name)),
            Some((crate::outcome::FailureKind::Interrupted, text)),
        )
    } else {
        (error, failure)
    };
    if !ctx.options.dry_run {
        // What status shows: a failure in the server's words, or a good run.
        let folder_failure = folder_errors
            .first()
            .map(|first| format!("{} folder(s) not uploaded: {first}", folder_errors.len()));
        let failure = failure
            .as_ref()
            .map(|(k, t)| (*k, t.as_str()))
            .or(folder_failure
                .as_deref()
                .map(|t| (crate::outcome::FailureKind::Other, t)));
        if let Err(e) = ctx.store.index().record_account_run(
            &ctx.account.name,
            crate::store::index::Stage::Upload,
            failure,
        ) {
            ctx.progress.warn(
                &ctx.account.name,
                &format!("cannot record the run in the index: {e:#}"),
            );
        }
    }
    ctx.progress
        .account_finished(&ctx.account.name, error.as_deref());
    AccountUpload {
        account: ctx.account.name.clone(),
        target: ctx.account.target.clone(),
        complete: error.is_none() && folder_errors.is_empty() && counts.failed == 0,
        error,
        error_kind: failure.as_ref().map(|(k, _)| *k),
        folder_errors,
        counts,
        planned,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Skipped (by reason) and failed entries in the ledger for this target.
fn count_outcomes(ctx: &UploadContext, counts: &mut UploadCounts) -> Result<()> {
    let index = ctx.store.index();
    let Some(target) = index
        .ledger()
        .find_target(&ctx.account.target, &ctx.options.target.server.address())?
    else {
        return Ok(());
    };
    for (state, kind, n) in index.ledger().not_uploaded_by_reason(target)? {
        if state == ledger::State::Skipped {
            counts.skipped += n;
            let label = kind.unwrap_or(ledger::ReasonKind::Rejected).label();
            *counts
                .skipped_by_reason
                .entry(label.to_string())
                .or_default() += n;
        } else {
            counts.failed += n;
        }
    }
    for (how, n) in index.ledger().sent_otherwise(target)? {
        *counts
            .sent_otherwise
            .entry(ledger::SentAs::describe(&how).to_string())
            .or_default() += n;
    }
    Ok(())
}

async fn run_account(
    ctx: &Arc<UploadContext>,
    errors: &Arc<Mutex<Vec<String>>>,
    planned: &mut Vec<PlannedFolder>,
) -> Result<UploadCounts> {
    let options = &ctx.options;
    let folders = {
        let index = ctx.store.index();
        let id = index.find_account(&ctx.account.name)?;
        let id = id.ok_or_else(|| {
            anyhow!("the store holds nothing for this account; run `mailferry mirror` first")
        })?;
        let folders: Vec<_> = index
            .folders(id)?
            .into_iter()
            .filter(|f| f.deleted_at.is_none() && !f.attributes.contains("\\Noselect"))
            .collect();
        let prefix = index.personal_prefix(id)?.map(|p| mutf7::display(&p));
        let prefix = mapping::source_prefix(&folders, prefix.as_deref());
        (folders, prefix)
    };
    let (folders, source_prefix) = folders;

    // Plan from the ledger alone first: when nothing is to be done, no
    // connection is opened at all.
    let host = &options.target.server.address();
    let (known_delimiter, known_prefix) = ctx
        .store
        .index()
        .ledger()
        .target_namespace(&ctx.account.target, host)?;
    let assumed = Namespace {
        prefix: known_prefix
            .as_deref()
            .map(mutf7::display)
            .unwrap_or_default(),
        delimiter: known_delimiter
            .clone()
            .unwrap_or_else(|| default_delimiter(options.target.kind).to_string()),
    };
    let offline = folder_jobs(ctx, &folders, &source_prefix, &assumed, None, false)?;
    ctx.progress.account_started(&ctx.account.name);
    if options.dry_run {
        *planned = offline.planned;
        return Ok(offline.counts);
    }
    if offline.jobs.is_empty() && known_delimiter.is_some() {
        let mut counts = offline.counts;
        counts.would_append = 0;
        counts.would_append_bytes = 0;
        return Ok(counts);
    }

    // The first session tells the target's namespace and folders.
    let mut s = ctx.connect().await?;
    let (listed, ns) = s.imap.list_and_namespace(None).await?;
    let ns = ns?;
    let namespace = Namespace {
        prefix: mutf7::display(&ns.prefix),
        delimiter: ns
            .delimiter
            .unwrap_or_else(|| default_delimiter(options.target.kind).to_string()),
    };
    // Only folders that can hold mail: a parent that exists only because
    // a child was created (\Noselect, \NonExistent) must still be created.
    let existing: std::collections::HashSet<String> = listed
        .into_iter()
        .filter(|f| f.is_selectable())
        .map(|f| f.wire_name)
        .collect();
    let mut first = Some(s);
    let AccountWork {
        jobs, mut counts, ..
    } = folder_jobs(
        ctx,
        &folders,
        &source_prefix,
        &namespace,
        Some(&existing),
        true,
    )?;
    {
        let index = ctx.store.index();
        let target = index.ledger().target_id(&ctx.account.target, host)?;
        index
            .ledger()
            .set_target_namespace(target, &namespace.delimiter, &ns.prefix)?;
    }
    ctx.progress.planned(
        &ctx.account.name,
        counts.would_append,
        counts.would_append_bytes,
    );
    counts.would_append = 0;
    counts.would_append_bytes = 0;

    let queue = Arc::new(Mutex::new(jobs));
    let workers = options
        .target
        .server
        .connections
        .max(1)
        .min(queue.lock().unwrap().len().max(1));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let ctx = ctx.clone();
        let queue = queue.clone();
        let errors = errors.clone();
        let session = first.take();
        handles.push(tokio::spawn(async move {
            worker(ctx, queue, errors, session).await
        }));
    }
    let mut last_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => last_error = Some(e),
            Err(e) => last_error = Some(anyhow!("a worker crashed: {e}")),
        }
    }
    let left: Vec<String> = queue
        .lock()
        .unwrap()
        .drain(..)
        .map(|j| j.display_name)
        .collect();
    if !left.is_empty() {
        let why = last_error.map(|e| error_chain(&e)).unwrap_or_default();
        bail!(
            "{} folder(s) not uploaded ({}): {why}",
            left.len(),
            left.join(", ")
        );
    }
    Ok(counts)
}

/// A folder an earlier version uploaded under the name it gave before
/// namespaces were read (`INBOX/Projects` where it now says `Projects`)
/// stays there: moving it would upload it all again.
fn keep_earlier_folders(
    ctx: &UploadContext,
    folders: &[crate::store::index::FolderRow],
    namespace: &Namespace,
    map: &mut [MapEntry],
) -> Result<()> {
    let index = ctx.store.index();
    let host = ctx.options.target.server.address();
    let Some(target) = index.ledger().find_target(&ctx.account.target, &host)? else {
        return Ok(());
    };
    for e in map.iter_mut() {
        let Some(now) = e.target.as_deref() else {
            continue;
        };
        if e.why == "map file" {
            continue;
        }
        let Some(row) = folders.iter().find(|f| f.id == e.source_folder_id) else {
            continue;
        };
        let before = mapping::legacy_target(row, ctx.options.target.kind, &namespace.delimiter);
        if before != now
            && index
                .ledger()
                .folder_has_uploads(target, &target_wire_name(&before))?
            && !index
                .ledger()
                .folder_has_uploads(target, &target_wire_name(now))?
        {
            e.target = Some(before);
            e.why = "where an earlier upload put it".to_string();
        }
    }
    Ok(())
}

/// The work of one account, from the store and the ledger.
struct AccountWork {
    jobs: VecDeque<FolderJob>,
    counts: UploadCounts,
    planned: Vec<PlannedFolder>,
}

/// Maps the account's folders into the target's namespace and reads the
/// ledger for each target folder. With `write` false nothing is recorded
/// (dry runs, and the check whether anything is to be done at all).
fn folder_jobs(
    ctx: &UploadContext,
    folders: &[crate::store::index::FolderRow],
    source_prefix: &str,
    namespace: &Namespace,
    existing: Option<&std::collections::HashSet<String>>,
    write: bool,
) -> Result<AccountWork> {
    let options = &ctx.options;
    let mut map = mapping::map_account(
        &ctx.account.name,
        folders,
        source_prefix,
        options.target.kind,
        namespace,
        options.map_file.as_ref(),
        options.merge_folders,
    )?;
    keep_earlier_folders(ctx, folders, namespace, &mut map)?;
    // Group source folders by target folder, keeping the map's order.
    let mut groups: Vec<(String, Vec<&MapEntry>)> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    for e in &map {
        let Some(t) = &e.target else { continue };
        let key = if options.target.kind == TargetKind::M365 {
            t.to_lowercase()
        } else {
            t.clone()
        };
        match group_of.get(&key) {
            Some(&i) => groups[i].1.push(e),
            None => {
                group_of.insert(key.clone(), groups.len());
                groups.push((key, vec![e]));
            }
        }
    }
    // Exchange's names ignore case: the folders there, by lower-cased name.
    let existing_nocase: HashMap<String, &String> = existing
        .map(|ex| ex.iter().map(|w| (w.to_ascii_lowercase(), w)).collect())
        .unwrap_or_default();
    let mut plan = AccountWork {
        jobs: VecDeque::new(),
        counts: UploadCounts::default(),
        planned: Vec::new(),
    };
    let index = ctx.store.index();
    let host = &options.target.server.address();
    let target = if write {
        Some(index.ledger().target_id(&ctx.account.target, host)?)
    } else {
        index.ledger().find_target(&ctx.account.target, host)?
    };
    // Links are facts about the store, not the target: the offline plan
    // records them too (a store from before schema 3 gets them on the
    // first run, even one with nothing to upload); a dry run records nothing.
    let link = write || !options.dry_run;
    if link {
        let unmapped: Vec<i64> = map
            .iter()
            .filter(|e| e.target.is_none())
            .map(|e| e.source_folder_id)
            .collect();
        index.ledger().link_source_folders(&unmapped, None)?;
    }
    for (_, entries) in &groups {
        let display = entries[0].target.clone().expect("mapped");
        let mut wire = target_wire_name(&display);
        // Exchange's names ignore case: use the folder that is there.
        if options.target.kind == TargetKind::M365
            && let Some(found) = existing_nocase.get(&wire.to_ascii_lowercase())
        {
            wire = (*found).clone();
        }
        let ids: Vec<i64> = entries.iter().map(|e| e.source_folder_id).collect();
        let outgoing = index.ledger().outgoing(&ids)?;
        let tf = match (target, write) {
            (Some(t), true) => Some(index.ledger().target_folder_id(t, &wire, &display)?),
            (Some(t), false) => index.ledger().find_target_folder(t, &wire)?,
            (None, _) => None,
        };
        if link && tf.is_some() {
            index.ledger().link_source_folders(&ids, tf)?;
        }
        let known = match tf {
            Some(tf) => index.ledger().entries(tf)?,
            None => HashMap::new(),
        };
        let c = &mut plan.counts;
        c.folders += 1;
        c.duplicates += outgoing.iter().map(|o| o.copies - 1).sum::<u64>();
        c.already_present += outgoing
            .iter()
            .filter(|o| {
                known.get(&o.blob).is_some_and(|e| {
                    matches!(e.state, ledger::State::Done | ledger::State::Present)
                })
            })
            .count() as u64;
        let work = folder::work(
            &outgoing,
            &known,
            options.only_failed,
            options.send_nul_bytes,
            options.target.kind,
            &ctx.account.name,
        );
        let bytes: u64 = work.appends.iter().map(|o| o.size).sum();
        c.would_append += work.appends.len() as u64;
        c.would_append_bytes += bytes;
        plan.planned.push(PlannedFolder {
            target_folder: display.clone(),
            sources: entries.iter().map(|e| e.source.clone()).collect(),
            append: work.appends.len() as u64,
            bytes,
        });
        // An empty source folder is still made at the target, once: the
        // mailbox keeps its shape.
        let made = match existing {
            Some(ex) => ex.contains(&wire),
            None => tf
                .map(|tf| index.ledger().target_folder_seen(tf))
                .transpose()?
                .unwrap_or(false),
        };
        if work.is_empty() && made {
            continue;
        }
        if let Some(tf) = tf.filter(|_| write) {
            // A name the target refused before: use the one it took.
            if let Some(actual) = index.ledger().actual_name(tf)? {
                wire = actual;
            }
            plan.jobs.push_back(FolderJob {
                target_folder_id: tf,
                exists: existing.is_some_and(|ex| ex.contains(&wire)),
                wire_name: wire,
                display_name: display,
                outgoing,
            });
        } else {
            // Offline: a placeholder that says there is work.
            plan.jobs.push_back(FolderJob {
                target_folder_id: 0,
                exists: false,
                wire_name: wire,
                display_name: display,
                outgoing: Vec::new(),
            });
        }
    }
    Ok(plan)
}

fn default_delimiter(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::M365 => "/",
        TargetKind::Imap => "/",
    }
}

/// A target folder's name on the wire: modified UTF-7.
fn target_wire_name(display: &str) -> String {
    if display.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        mutf7::encode(display)
    }
}

/// Retries of one folder job on fresh connections before giving up.
const RECONNECTS: usize = 4;

async fn worker(
    ctx: Arc<UploadContext>,
    queue: Arc<Mutex<VecDeque<FolderJob>>>,
    errors: Arc<Mutex<Vec<String>>>,
    mut session: Option<TargetSession>,
) -> Result<()> {
    loop {
        let Some(job) = queue.lock().unwrap().pop_front() else {
            break;
        };
        let mut attempt = 0;
        loop {
            if session.as_ref().is_some_and(|s| s.needs_new_login()) {
                // Log in again with a fresh token before this one runs out.
                let old = session.take().expect("session");
                ctx.absorb(&old);
                old.imap.logout().await;
            }
            if session.is_none() {
                match ctx.connect().await {
                    Ok(s) => session = Some(s),
                    Err(e) => {
                        ctx.progress.warn(
                            &ctx.account.name,
                            &format!(
                                "cannot open a connection to the target: {}",
                                error_chain(&e)
                            ),
                        );
                        queue.lock().unwrap().push_front(job);
                        return Err(e);
                    }
                }
            }
            let s = session.as_mut().expect("session");
            let progress_before = ctx.shared.appended.load(Ordering::Relaxed);
            match folder::run(&ctx, s, &job).await {
                Ok(()) => break,
                Err(e) if crate::imap::is_connection_error(&e) => {
                    if ctx.shared.appended.load(Ordering::Relaxed) > progress_before {
                        attempt = 0;
                    }
                    attempt += 1;
                    if let Some(old) = session.take() {
                        ctx.absorb(&old);
                    }
                    if attempt > RECONNECTS {
                        errors.lock().unwrap().push(format!(
                            "folder {}: {}",
                            job.display_name,
                            error_chain(&e)
                        ));
                        break;
                    }
                    ctx.progress.warn(
                        &ctx.account.name,
                        &format!("connection lost ({}); reconnecting", error_chain(&e)),
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64))
                        .await;
                }
                Err(e) => {
                    errors.lock().unwrap().push(format!(
                        "folder {}: {}",
                        job.display_name,
                        error_chain(&e)
                    ));
                    break;
                }
            }
        }
    }
    if let Some(s) = session {
        ctx.absorb(&s);
        s.imap.logout().await;
    }
    Ok(())
}

/// The flags a target may receive. Exchange keeps only system flags, and
/// `\Deleted` would hide (or lose) a message there; other servers get every
/// flag but `\Recent`.
pub(crate) fn flags_for_target(flags: &str, kind: TargetKind) -> String {
    flags
        .split_whitespace()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .filter(|f| match kind {
            TargetKind::M365 => f.starts_with('\\') && !f.eq_ignore_ascii_case("\\Deleted"),
            TargetKind::Imap => true,
        })
        .collect::<Vec<_>>()
        .join(" ")
}
