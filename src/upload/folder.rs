//! One target folder: reconcile, push flag changes, append what is missing.
//!
//! Every step reads the ledger first, so a job that starts again on a new
//! connection (or a run that starts again after a crash) repeats nothing:
//! a pending entry is settled by reading the target back from the UIDNEXT
//! it recorded, by content hash where the server keeps bytes, else by
//! Message-ID and INTERNALDATE, before anything is appended again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, FixedOffset};

use super::refusal::{self, Refusal};
use super::{FolderJob, TargetSession, UploadContext, flags_for_target};
use crate::imap::{FetchedMessage, ImapError, ImapSession};
use crate::store::BlobHash;
use crate::store::ledger::{self, FailReason, LedgerEntry, Outgoing, SentAs, SkipReason, State};

/// How often one message is tried while the server keeps throttling.
const THROTTLE_RETRIES: u32 = 30;
/// How often a message refused for a passing fault is tried again in the
/// same run (after 250 ms, then 500 ms).
const PASSING_RETRIES: u32 = 2;
/// How often messages written ahead and refused for a passing reason are
/// written ahead again before they go one by one.
const AHEAD_ROUNDS: u32 = 3;

/// Whether an entry (or its absence) calls for an APPEND.
pub(crate) fn wants_append(
    entry: Option<&LedgerEntry>,
    only_failed: bool,
    send_nul_bytes: bool,
) -> bool {
    match entry.map(|e| e.state) {
        None => !only_failed,
        Some(State::Failed) => true,
        // Settled first by reconciliation; may still need an APPEND.
        Some(State::Pending) => true,
        // Skipped for its NUL bytes, and now the user asks to send them.
        Some(State::Skipped) => {
            send_nul_bytes
                && entry.and_then(|e| e.reason_kind) == Some(ledger::ReasonKind::NulBytes)
        }
        Some(State::Done | State::Present) => false,
    }
}

/// What a target folder needs, from the ledger.
pub(crate) struct Work<'a> {
    pub pending: Vec<&'a LedgerEntry>,
    pub flag_pushes: Vec<(&'a Outgoing, &'a LedgerEntry)>,
    pub appends: Vec<&'a Outgoing>,
}

impl Work<'_> {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.flag_pushes.is_empty() && self.appends.is_empty()
    }
}

pub(crate) fn work<'a>(
    outgoing: &'a [Outgoing],
    entries: &'a HashMap<BlobHash, LedgerEntry>,
    only_failed: bool,
    send_nul_bytes: bool,
    kind: crate::config::TargetKind,
    account: &str,
) -> Work<'a> {
    Work {
        // Only this account's: another account uploading into the same
        // mailbox at the same time may have its APPEND in flight.
        pending: entries
            .values()
            .filter(|e| {
                e.state == State::Pending && e.account.as_deref().is_none_or(|a| a == account)
            })
            .collect(),
        flag_pushes: outgoing
            .iter()
            .filter_map(|o| {
                let e = entries.get(&o.blob)?;
                // Flags are set by the account that placed the message only.
                (matches!(e.state, State::Done | State::Present)
                    && e.uid.is_some()
                    && e.account.as_deref().is_none_or(|a| a == account)
                    && e.flags.as_deref() != Some(&flags_for_target(&o.flags, kind)))
                .then_some((o, e))
            })
            .collect(),
        appends: outgoing
            .iter()
            .filter(|o| wants_append(entries.get(&o.blob), only_failed, send_nul_bytes))
            .collect(),
    }
}

pub(crate) async fn run(
    ctx: &UploadContext,
    session: &mut TargetSession,
    job: &FolderJob,
) -> Result<()> {
    let kind = ctx.options.target.kind;
    let tf = job.target_folder_id;
    let entries = ctx.store.index().ledger().entries(tf)?;
    let Work {
        pending,
        flag_pushes,
        mut appends,
    } = work(
        &job.outgoing,
        &entries,
        ctx.options.only_failed,
        ctx.options.send_nul_bytes,
        kind,
        &ctx.account.name,
    );
    if pending.is_empty() && flag_pushes.is_empty() && appends.is_empty() && job.exists {
        return Ok(());
    }

    // Exchange ends a session when its token expires: log in again first.
    let token = session.token.clone();
    let imap = &mut session.imap;
    let mut wire = job.wire_name.clone();
    if !job.exists {
        wire = create(ctx, imap, job).await?;
    }
    let status = match imap.status(&wire).await {
        Ok(s) => s,
        // Gone since the LIST (or never more than a parent): create it.
        Err(e) if matches!(e.downcast_ref::<ImapError>(), Some(ImapError::No { .. })) => {
            wire = create(ctx, imap, job).await?;
            imap.status(&wire).await?
        }
        Err(e) => return Err(e),
    };
    let uidvalidity = status
        .uidvalidity
        .ok_or_else(|| anyhow!("the target gave no UIDVALIDITY for {}", job.display_name))?;
    let uidnext = status.uidnext.unwrap_or(1);
    ctx.store
        .index()
        .ledger()
        .set_folder_uidvalidity(tf, uidvalidity)?;

    // 1. Settle what a crash left pending.
    if !pending.is_empty() {
        let settled = reconcile(ctx, imap, job, &wire, uidvalidity, &pending, &entries).await?;
        ctx.shared.reconciled.fetch_add(settled, Ordering::Relaxed);
        appends = still_to_append(ctx, job)?;
    }

    // 2. Mail the ledger does not account for (its index was lost or
    // replaced, another store uploaded here, or an earlier tool did): read
    // it back and record what is already there instead of appending it twice.
    if !appends.is_empty() && status.messages.is_some_and(|n| n > 0) {
        let found = read_back(ctx, imap, job, uidvalidity, &wire, &appends).await?;
        if found > 0 {
            ctx.shared
                .found_at_target
                .fetch_add(found, Ordering::Relaxed);
            appends = still_to_append(ctx, job)?;
        }
    }

    // 3. Flag changes made at the source since the upload.
    if !flag_pushes.is_empty() {
        push_flags(ctx, imap, job, &wire, &flag_pushes).await?;
    }

    // 4. Append what is missing.
    let limit = match (
        ctx.options.target.max_message_bytes,
        appendlimit(imap.capabilities()),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut dest = Destination {
        wire,
        uidvalidity,
        uidnext,
        limit,
    };
    if !appends.is_empty() {
        ctx.store
            .intend(&crate::store::Intent::Appends(ledger::Appends {
                mailbox: ctx.account.target.clone(),
                host: ctx.options.target.server.address(),
                wire: job.wire_name.clone(),
                display: job.display_name.clone(),
                account: ctx.account.name.clone(),
                uidvalidity,
                uidnext,
                blobs: appends
                    .iter()
                    .map(|o| (o.blob.to_hex(), o.copies))
                    .collect(),
            }))?;
    }
    let token_stale = || token.as_ref().is_some_and(|t| t.is_stale());
    if imap.appends_ahead() {
        // Written ahead. A message refused for a passing fault goes one
        // by one with the tries it has left; of those throttled or sent
        // before their folder existed, the first goes alone (waiting out
        // the backoff, creating the folder) and the rest ahead again, a
        // few times at most.
        let mut rounds = 0;
        loop {
            let again =
                super::ahead::append(ctx, imap, job, &mut dest, &token_stale, appends).await?;
            let (mut ahead, one_by_one): (Vec<_>, Vec<_>) =
                again.into_iter().partition(|a| a.passing == 0);
            for a in one_by_one {
                append_one(ctx, imap, job, &mut dest, a.o, a.passing).await?;
            }
            if ahead.is_empty() {
                return Ok(());
            }
            let first = ahead.remove(0);
            append_one(ctx, imap, job, &mut dest, first.o, 0).await?;
            appends = ahead.into_iter().map(|a| a.o).collect();
            rounds += 1;
            if rounds == AHEAD_ROUNDS {
                break;
            }
        }
    }
    for o in appends {
        if crate::stop::requested().is_some() {
            return Err(crate::outcome::Interrupted.into());
        }
        if token_stale() {
            return Err(ImapError::Bye(
                "the access token is about to expire; logging in again".into(),
            )
            .into());
        }
        append_one(ctx, imap, job, &mut dest, o, 0).await?;
    }
    Ok(())
}

/// Where a folder's messages are appended.
pub(super) struct Destination {
    /// The folder's name on the wire (the one the target gave it).
    pub wire: String,
    pub uidvalidity: u32,
    /// Where the next message will be, for a pending entry to say.
    pub uidnext: u32,
    /// The largest message the target takes.
    pub limit: Option<u64>,
}

/// Appends one message, or records why not.
async fn append_one(
    ctx: &UploadContext,
    imap: &mut ImapSession,
    job: &FolderJob,
    dest: &mut Destination,
    o: &Outgoing,
    passing: u32,
) -> Result<()> {
    let Some(prepared) = prepare(ctx, imap, job, dest, o).await? else {
        return Ok(());
    };
    send(ctx, imap, job, dest, o, prepared, passing).await
}

/// The bytes to send for `o`, and how they differ from the stored blob;
/// `None` when the message cannot go (too large, damaged, NUL bytes the
/// target cannot take), recorded in the ledger.
pub(super) async fn prepare(
    ctx: &UploadContext,
    imap: &ImapSession,
    job: &FolderJob,
    dest: &Destination,
    o: &Outgoing,
) -> Result<Option<(Vec<u8>, Option<SentAs>)>> {
    let tf = job.target_folder_id;
    if let Some(limit) = dest.limit
        && o.size > limit
    {
        let reason = SkipReason::TooLarge {
            size: o.size,
            limit: Some(limit),
            said: None,
        };
        ctx.store
            .index()
            .ledger()
            .mark_skipped(tf, &o.blob, &reason, o.copies)?;
        return Ok(None);
    }
    let store = ctx.store.clone();
    let blob = o.blob;
    let read = tokio::task::spawn_blocking(move || store.read_blob(&blob))
        .await
        .map_err(|e| anyhow!("reading a blob crashed: {e}"))?;
    let body = match read {
        Ok(body) => body,
        Err(damaged) => {
            // Never upload what is not the message; the rest of the
            // folder goes on, and the next mirror fetches it again.
            let reason = FailReason::Damaged(damaged.to_string());
            {
                let index = ctx.store.index();
                index.mark_blob_damaged(&o.blob, &damaged.fault)?;
                index.ledger().mark_failed(tf, &o.blob, &reason, o.copies)?;
            }
            ctx.progress.warn(
                &ctx.account.name,
                &format!("folder {}: {reason}", job.display_name),
            );
            return Ok(None);
        }
    };
    let mut sent_as = None;
    if body.contains(&0) && !imap.capabilities().has("BINARY") {
        if !ctx.options.send_nul_bytes {
            ctx.store.index().ledger().mark_skipped(
                tf,
                &o.blob,
                &SkipReason::NulWithoutBinary,
                o.copies,
            )?;
            return Ok(None);
        }
        sent_as = Some(SentAs::NulLiteral);
    }
    Ok(Some((body, sent_as)))
}

/// Sends `body` by APPEND (pending before, done after), again when the
/// target is busy, lacks the folder or wants CRLF line ends; records a
/// refusal with the server's words.
async fn send(
    ctx: &UploadContext,
    imap: &mut ImapSession,
    job: &FolderJob,
    dest: &mut Destination,
    o: &Outgoing,
    (mut body, mut sent_as): (Vec<u8>, Option<SentAs>),
    mut passing: u32,
) -> Result<()> {
    let tf = job.target_folder_id;
    let kind = ctx.options.target.kind;
    let flags = flags_for_target(&o.flags, kind);
    let date = o.internal_date.map(|(t, off)| internal_date(t, off));
    let mut throttled = 0;
    let mut created = false;
    loop {
        mark_pending(ctx, job, dest, o, sent_as, &body)?;
        // Wait as late as possible: a throttle another connection was just
        // told about must hold this APPEND back too.
        ctx.throttle.wait().await;
        let plain_nul = sent_as == Some(SentAs::NulLiteral);
        match imap
            .append(&dest.wire, &flags, date.as_deref(), &body, plain_nul)
            .await
        {
            Ok(appended) => {
                ctx.throttle.went_through();
                let uid = match appended.uid {
                    Some((v, u)) if v == dest.uidvalidity => {
                        dest.uidnext = dest.uidnext.max(u + 1);
                        Some(u)
                    }
                    _ => {
                        // No UIDPLUS: ask where the next one will go.
                        dest.uidnext = imap
                            .status(&dest.wire)
                            .await?
                            .uidnext
                            .unwrap_or(dest.uidnext + 1);
                        None
                    }
                };
                let sent = Sent {
                    bytes: body.len() as u64,
                    sent_as,
                };
                return record_appended(ctx, job, dest, o, &flags, uid, sent);
            }
            Err(e) => {
                let refused = match e.downcast_ref::<ImapError>() {
                    Some(ImapError::No { text, .. }) | Some(ImapError::Bad { text, .. }) => {
                        Some(text.clone())
                    }
                    _ => None,
                };
                // Anything else (a broken connection) leaves the entry
                // pending for reconciliation.
                let Some(text) = refused else {
                    return Err(e);
                };
                let refusal = refusal::classify(&text);
                match refusal {
                    Refusal::Throttled(backoff) => {
                        ctx.throttle.throttled(backoff);
                        throttled += 1;
                        if throttled < THROTTLE_RETRIES {
                            continue;
                        }
                    }
                    Refusal::NoFolder if !created => {
                        imap.create(&dest.wire).await?;
                        created = true;
                        continue;
                    }
                    // A NO is not applied: a passing fault is worth a
                    // moment's wait and another try before the next run.
                    Refusal::Temporary if passing < PASSING_RETRIES => {
                        passing += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(250 * passing as u64))
                            .await;
                        continue;
                    }
                    Refusal::BareNewlines
                        if sent_as.is_none() && refusal::has_bare_line_ends(&body) =>
                    {
                        // The fix a user wants: the same message with
                        // CRLF line ends, recorded and reported.
                        body = refusal::crlf_line_ends(&body);
                        sent_as = Some(SentAs::Crlf);
                        continue;
                    }
                    _ => {}
                }
                // The server will not take this message: say why, go on.
                return record_refused(ctx, tf, o, refusal, text);
            }
        }
    }
}

/// Records that `body` is about to go to `dest` for `o`: where the next
/// UID will be, for reconciliation after a crash, and what was sent where it
/// is not the blob.
pub(super) fn mark_pending(
    ctx: &UploadContext,
    job: &FolderJob,
    dest: &Destination,
    o: &Outgoing,
    sent_as: Option<SentAs>,
    body: &[u8],
) -> Result<()> {
    ctx.store.index().ledger().mark_pending(
        job.target_folder_id,
        &o.blob,
        &ledger::Attempt {
            uidvalidity: dest.uidvalidity,
            uidnext: dest.uidnext,
            copies: o.copies,
            account: &ctx.account.name,
            sent: sent_as.map(|how| (how, BlobHash::of(body))),
        },
    )
}

/// What went out for a message: its size and how it differs from the blob.
pub(super) struct Sent {
    pub bytes: u64,
    pub sent_as: Option<SentAs>,
}

/// Records a message the target took (at `uid` where the target said).
pub(super) fn record_appended(
    ctx: &UploadContext,
    job: &FolderJob,
    dest: &Destination,
    o: &Outgoing,
    flags: &str,
    uid: Option<u32>,
    sent: Sent,
) -> Result<()> {
    ctx.store.index().ledger().mark_done(
        job.target_folder_id,
        &o.blob,
        State::Done,
        Some(dest.uidvalidity),
        uid,
        flags,
    )?;
    ctx.shared.appended.fetch_add(1, Ordering::Relaxed);
    ctx.shared
        .bytes_appended
        .fetch_add(sent.bytes, Ordering::Relaxed);
    ctx.progress.moved(&ctx.account.name, 1, sent.bytes);
    if let Some(how) = sent.sent_as {
        ctx.progress.warn(
            &ctx.account.name,
            &format!(
                "folder {}: a message of {} was sent with {}",
                job.display_name,
                crate::format::bytes(o.size),
                SentAs::describe(how.as_str())
            ),
        );
    }
    Ok(())
}

/// Records a refusal that trying again in this run will not change.
pub(super) fn record_refused(
    ctx: &UploadContext,
    tf: i64,
    o: &Outgoing,
    refusal: Refusal,
    text: String,
) -> Result<()> {
    let index = ctx.store.index();
    match refusal {
        Refusal::BareNewlines | Refusal::Permanent => {
            let reason = refusal::skip_reason(&text, o.size);
            index
                .ledger()
                .mark_skipped(tf, &o.blob, &reason, o.copies)?;
        }
        Refusal::Throttled(_) | Refusal::NoFolder | Refusal::OverQuota | Refusal::Temporary => {
            let reason = FailReason::Refused(text);
            index.ledger().mark_failed(tf, &o.blob, &reason, o.copies)?;
        }
    }
    Ok(())
}

/// What the job must still append, by the ledger as it is now.
fn still_to_append<'a>(ctx: &UploadContext, job: &'a FolderJob) -> Result<Vec<&'a Outgoing>> {
    let entries = ctx.store.index().ledger().entries(job.target_folder_id)?;
    Ok(job
        .outgoing
        .iter()
        .filter(|o| {
            wants_append(
                entries.get(&o.blob),
                ctx.options.only_failed,
                ctx.options.send_nul_bytes,
            )
        })
        .collect())
}

/// Creates the target folder. When the target refuses the name (beyond
/// "already exists"), it is renamed predictably, once: characters other
/// than letters, digits, space and `-_./` become `_`, or, if there are
/// none, ` (migrated)` is added. The ledger remembers the name taken.
async fn create(
    ctx: &UploadContext,
    imap: &mut crate::imap::ImapSession,
    job: &FolderJob,
) -> Result<String> {
    let refused = match imap.create(&job.wire_name).await {
        Ok(()) => {
            ctx.shared.folders_created.fetch_add(1, Ordering::Relaxed);
            return Ok(job.wire_name.clone());
        }
        Err(e) => match e.downcast_ref::<ImapError>() {
            Some(ImapError::No { text, .. }) => text.clone(),
            _ => return Err(e.context(format!("cannot create {}", job.display_name))),
        },
    };
    // The fallback must not land in a folder that another source folder
    // goes to, or one the mailbox already has: distinct folders stay
    // distinct unless --merge-folders says otherwise.
    let base = fallback_name(&job.display_name);
    let mut display = base.clone();
    for n in 2.. {
        let wire = crate::imap::mutf7::encode(&display);
        let taken = ctx
            .store
            .index()
            .ledger()
            .name_taken(job.target_folder_id, &wire)?
            || (!ctx.options.merge_folders && imap.status(&wire).await.is_ok());
        if !taken || n > 50 {
            break;
        }
        display = format!("{base} ({n})");
    }
    let wire = crate::imap::mutf7::encode(&display);
    imap.create(&wire).await.with_context(|| {
        format!(
            "the target refused {} ({refused}) and then {display}; name it yourself in a map \
             file (plan --write-map, upload --map)",
            job.display_name
        )
    })?;
    ctx.shared.folders_created.fetch_add(1, Ordering::Relaxed);
    ctx.store
        .index()
        .ledger()
        .set_actual_name(job.target_folder_id, &wire, &display)?;
    ctx.progress.warn(
        &ctx.account.name,
        &format!(
            "the target refused the folder name {} ({refused}); using {display}",
            job.display_name
        ),
    );
    Ok(wire)
}

fn fallback_name(display: &str) -> String {
    let cleaned: String = display
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " -_./".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned != display {
        cleaned
    } else {
        format!("{display} (migrated)")
    }
}

/// APPENDLIMIT=n (RFC 7889), if the server announces one.
fn appendlimit(caps: &crate::imap::Capabilities) -> Option<u64> {
    caps.value("APPENDLIMIT")?.parse().ok()
}

/// `dd-Mon-yyyy hh:mm:ss +zzzz` for the instant in its original offset.
pub(super) fn internal_date(instant: i64, offset_minutes: i32) -> String {
    let offset = FixedOffset::east_opt(offset_minutes * 60)
        .unwrap_or(FixedOffset::east_opt(0).expect("UTC"));
    let t: DateTime<FixedOffset> = DateTime::from_timestamp(instant, 0)
        .unwrap_or_default()
        .with_timezone(&offset);
    t.format("%d-%b-%Y %H:%M:%S %z").to_string()
}

/// Settles pending entries by reading the folder back from the lowest
/// recorded UIDNEXT. Returns how many were found already there.
#[allow(clippy::too_many_arguments)]
async fn reconcile(
    ctx: &UploadContext,
    imap: &mut crate::imap::ImapSession,
    job: &FolderJob,
    wire: &str,
    uidvalidity: u32,
    pending: &[&LedgerEntry],
    entries: &HashMap<BlobHash, LedgerEntry>,
) -> Result<u64> {
    let tf = job.target_folder_id;
    let (same, other): (Vec<&&LedgerEntry>, Vec<&&LedgerEntry>) = pending
        .iter()
        .partition(|e| e.uidvalidity == Some(uidvalidity) && e.uidnext.is_some());
    // A folder with a new UIDVALIDITY was re-created: nothing of ours is there.
    for e in other {
        ctx.store.index().ledger().forget(tf, &e.blob)?;
    }
    if same.is_empty() {
        return Ok(0);
    }
    let from = same.iter().filter_map(|e| e.uidnext).min().unwrap_or(1);
    settle_down(imap, wire).await?;
    imap.examine(wire, None).await?;
    let mut candidates: Vec<FetchedMessage> = Vec::new();
    imap.uid_fetch(
        &format!("{from}:*"),
        "UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]",
        None,
        |m| {
            if m.uid >= from {
                candidates.push(m);
            }
            Ok(())
        },
    )
    .await?;
    // UIDs the ledger already gives to other messages are not candidates.
    let claimed: HashSet<u32> = entries
        .values()
        .filter(|e| matches!(e.state, State::Done | State::Present))
        .filter_map(|e| e.uid)
        .collect();
    candidates.retain(|c| !claimed.contains(&c.uid));

    let meta: HashMap<BlobHash, (u64, Option<String>)> = {
        let index = ctx.store.index();
        let mut out = HashMap::new();
        for e in &same {
            out.insert(e.blob, index.blob_size_and_message_id(&e.blob)?);
        }
        out
    };
    let dates: HashMap<BlobHash, i64> = job
        .outgoing
        .iter()
        .filter_map(|o| Some((o.blob, o.internal_date?.0)))
        .collect();

    // Bodies of candidates whose size matches some pending blob: where the
    // server keeps bytes, the hash settles it.
    let sizes: HashSet<u64> = meta.values().map(|(s, _)| *s).collect();
    // Bytes sent otherwise than stored have another size: those few
    // candidates (appended since the crash) are all read.
    let sent_otherwise = same.iter().any(|e| e.sent_hash.is_some());
    let mut by_size: Vec<u32> = candidates
        .iter()
        .filter(|c| sent_otherwise || c.size.is_some_and(|s| sizes.contains(&(s as u64))))
        .map(|c| c.uid)
        .collect();
    by_size.sort_unstable();
    let hashes: HashMap<u32, BlobHash> = body_hashes(imap, &by_size).await?.into_iter().collect();
    let mut taken: HashSet<u32> = HashSet::new();
    let mut found = 0;
    for e in same {
        let (_, message_id) = &meta[&e.blob];
        let by_hash = candidates.iter().find(|c| {
            !taken.contains(&c.uid)
                && hashes
                    .get(&c.uid)
                    .is_some_and(|h| *h == e.blob || Some(*h) == e.sent_hash)
        });
        // Where the server rewrites messages (Exchange), Message-ID and
        // INTERNALDATE identify it.
        let by_id = || {
            let id = message_id.as_deref()?;
            let date = dates.get(&e.blob)?;
            candidates.iter().find(|c| {
                !taken.contains(&c.uid)
                    && c.message_id().as_deref() == Some(id)
                    && c.internal_date.map(|d| d.timestamp()) == Some(*date)
            })
        };
        match by_hash.or_else(by_id) {
            Some(c) => {
                taken.insert(c.uid);
                let flags = job
                    .outgoing
                    .iter()
                    .find(|o| o.blob == e.blob)
                    .map(|o| flags_for_target(&o.flags, ctx.options.target.kind))
                    .unwrap_or_default();
                ctx.store.index().ledger().mark_done(
                    tf,
                    &e.blob,
                    State::Done,
                    Some(uidvalidity),
                    Some(c.uid),
                    &flags,
                )?;
                found += 1;
            }
            None => ctx.store.index().ledger().forget(tf, &e.blob)?,
        }
    }
    imap.unselect().await?;
    Ok(found)
}

/// Waits until the folder's UIDNEXT holds still for a moment. A connection
/// of a run that died (or dropped) with APPENDs written ahead may still be
/// delivering them: the server reads what reached its socket after the
/// client is gone. Read back before they land, they would be missed and
/// sent a second time.
async fn settle_down(imap: &mut ImapSession, wire: &str) -> Result<()> {
    const STILL: std::time::Duration = std::time::Duration::from_millis(500);
    const AT_MOST: u32 = 20;
    let mut last = imap.status(wire).await?.uidnext;
    for _ in 0..AT_MOST {
        tokio::time::sleep(STILL).await;
        let now = imap.status(wire).await?.uidnext;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(())
}

/// Reads back the messages of the target folder that the ledger gives to
/// none of its entries and records those that are messages about to be
/// appended as present. A message matches on Message-ID, INTERNALDATE and
/// size (first, where the server keeps bytes), then on Message-ID and
/// INTERNALDATE (Exchange converts messages, so sizes change); one without
/// a Message-ID matches by content hash where sizes agree. Each message at
/// the target settles at most one entry. Returns how many were found.
async fn read_back(
    ctx: &UploadContext,
    imap: &mut crate::imap::ImapSession,
    job: &FolderJob,
    uidvalidity: u32,
    wire: &str,
    appends: &[&Outgoing],
) -> Result<u64> {
    let kind = ctx.options.target.kind;
    let tf = job.target_folder_id;
    let entries = ctx.store.index().ledger().entries(tf)?;
    let ours = entries
        .values()
        .filter(|e| matches!(e.state, State::Done | State::Present | State::Pending))
        .filter(|e| e.uidvalidity.is_none_or(|v| v == uidvalidity));
    let claimed: HashSet<u32> = ours.clone().filter_map(|e| e.uid).collect();
    // Placed by us on a server that gave no UID (no UIDPLUS): their copies
    // are among the unknown messages and must not settle anything else.
    let placed_without_uid: Vec<BlobHash> = ours
        .filter(|e| e.uid.is_none() && e.state != State::Pending)
        .map(|e| e.blob)
        .collect();
    imap.examine(wire, None).await?;
    let mut unknown: Vec<u32> = imap
        .uid_search_all()
        .await?
        .into_iter()
        .filter(|u| !claimed.contains(u))
        .collect();
    if unknown.is_empty() {
        imap.unselect().await?;
        return Ok(0);
    }
    unknown.sort_unstable();
    let mut at_target: Vec<FetchedMessage> = Vec::with_capacity(unknown.len());
    imap.uid_fetch(
        &crate::imap::uid_set(&unknown),
        "UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]",
        None,
        |m| {
            at_target.push(m);
            Ok(())
        },
    )
    .await?;
    let ids = ctx
        .store
        .index()
        .ledger()
        .message_ids(appends.iter().map(|o| &o.blob))?;
    // (index in appends, index in at_target)
    let mut matched: Vec<(usize, usize)> = Vec::new();
    let mut taken: HashSet<usize> = HashSet::new();
    let target_ids: Vec<Option<String>> = at_target.iter().map(|c| c.message_id()).collect();
    let mut by_key: HashMap<(&str, i64), Vec<usize>> = HashMap::new();
    for (j, c) in at_target.iter().enumerate() {
        if let (Some(id), Some(d)) = (&target_ids[j], c.internal_date) {
            by_key
                .entry((id.as_str(), d.timestamp()))
                .or_default()
                .push(j);
        }
    }
    // Set aside, first, one message per entry placed without a UID.
    if !placed_without_uid.is_empty() {
        let placed_ids = ctx
            .store
            .index()
            .ledger()
            .message_ids(placed_without_uid.iter())?;
        for blob in &placed_without_uid {
            let date = job
                .outgoing
                .iter()
                .find(|o| o.blob == *blob)
                .and_then(|o| o.internal_date);
            let (Some(id), Some((date, _))) = (placed_ids.get(blob), date) else {
                continue;
            };
            if let Some(j) = by_key
                .get(&(id.as_str(), date))
                .and_then(|c| c.iter().copied().find(|j| !taken.contains(j)))
            {
                taken.insert(j);
            }
        }
    }
    let mut settled: HashSet<usize> = HashSet::new();
    // Same size first (a server that keeps bytes), then any size (one that
    // rewrites): decided by what the target holds, not by its kind.
    for exact_size in [true, false] {
        for (i, o) in appends.iter().enumerate() {
            if settled.contains(&i) {
                continue;
            }
            let (Some(id), Some((date, _))) = (ids.get(&o.blob), o.internal_date) else {
                continue;
            };
            let Some(candidates) = by_key.get(&(id.as_str(), date)) else {
                continue;
            };
            let found = candidates.iter().copied().find(|j| {
                !taken.contains(j)
                    && (!exact_size || at_target[*j].size.map(u64::from) == Some(o.size))
            });
            if let Some(j) = found {
                taken.insert(j);
                settled.insert(i);
                matched.push((i, j));
            }
        }
    }

    // Without a Message-ID, only the bytes can tell (where they are kept).
    {
        let sizes: HashSet<u64> = appends
            .iter()
            .filter(|o| !ids.contains_key(&o.blob))
            .map(|o| o.size)
            .collect();
        let mut by_size: Vec<u32> = at_target
            .iter()
            .enumerate()
            .filter(|(j, _)| !taken.contains(j) && target_ids[*j].is_none())
            .filter(|(_, c)| c.size.is_some_and(|s| sizes.contains(&u64::from(s))))
            .map(|(_, c)| c.uid)
            .collect();
        if !by_size.is_empty() {
            by_size.sort_unstable();
            let mut hashes: HashMap<BlobHash, Vec<u32>> = HashMap::new();
            for (uid, hash) in body_hashes(imap, &by_size).await? {
                hashes.entry(hash).or_default().push(uid);
            }
            for (i, o) in appends.iter().enumerate() {
                if ids.contains_key(&o.blob) {
                    continue;
                }
                let Some(uid) = hashes.get_mut(&o.blob).and_then(|u| u.pop()) else {
                    continue;
                };
                if let Some(j) = at_target.iter().position(|c| c.uid == uid) {
                    taken.insert(j);
                    matched.push((i, j));
                }
            }
        }
    }

    imap.unselect().await?;
    let index = ctx.store.index();
    for &(i, j) in &matched {
        let (o, c) = (appends[i], &at_target[j]);
        // The flags it has there; a later run pushes the source's.
        let flags = flags_for_target(&c.flags.as_deref().unwrap_or_default().join(" "), kind);
        index.ledger().mark_done(
            tf,
            &o.blob,
            State::Present,
            Some(uidvalidity),
            Some(c.uid),
            &flags,
        )?;
    }
    Ok(matched.len() as u64)
}

/// The content hash of each of `uids` (sorted) in the selected folder, by
/// fetching their bodies: how a message is recognised where the server
/// keeps bytes.
async fn body_hashes(
    imap: &mut crate::imap::ImapSession,
    uids: &[u32],
) -> Result<Vec<(u32, BlobHash)>> {
    let mut out = Vec::with_capacity(uids.len());
    if uids.is_empty() {
        return Ok(out);
    }
    imap.uid_fetch(&crate::imap::uid_set(uids), "UID BODY.PEEK[]", None, |m| {
        if let Some(b) = &m.body {
            out.push((m.uid, BlobHash::of(b)));
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Pushes flag changes as +FLAGS/-FLAGS, one STORE per distinct change.
async fn push_flags(
    ctx: &UploadContext,
    imap: &mut crate::imap::ImapSession,
    job: &FolderJob,
    wire: &str,
    pushes: &[(&Outgoing, &LedgerEntry)],
) -> Result<()> {
    let kind = ctx.options.target.kind;
    // (flags to add, flags to remove) → (UID, blob, flags afterwards)
    type Change = (String, String);
    let mut changes: HashMap<Change, Vec<(u32, BlobHash, String)>> = HashMap::new();
    for (o, e) in pushes {
        let want = flags_for_target(&o.flags, kind);
        let had: HashSet<&str> = e
            .flags
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let now: HashSet<&str> = want.split_whitespace().collect();
        let mut add: Vec<&str> = now.difference(&had).copied().collect();
        let mut remove: Vec<&str> = had.difference(&now).copied().collect();
        add.sort_unstable();
        remove.sort_unstable();
        changes
            .entry((add.join(" "), remove.join(" ")))
            .or_default()
            .push((e.uid.expect("filtered"), o.blob, want.clone()));
    }
    imap.select(wire).await?;
    for ((add, remove), targets) in changes {
        let mut uids: Vec<u32> = targets.iter().map(|t| t.0).collect();
        uids.sort_unstable();
        let set = crate::imap::uid_set(&uids);
        ctx.throttle.wait().await;
        if !add.is_empty() {
            imap.uid_store(&set, &format!("+FLAGS.SILENT ({add})"))
                .await?;
        }
        if !remove.is_empty() {
            imap.uid_store(&set, &format!("-FLAGS.SILENT ({remove})"))
                .await?;
        }
        ctx.throttle.went_through();
        let index = ctx.store.index();
        for (_, blob, flags) in &targets {
            index
                .ledger()
                .set_flags(job.target_folder_id, blob, flags, &ctx.account.name)?;
        }
        ctx.shared
            .flags_pushed
            .fetch_add(targets.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_names_are_renamed_predictably() {
        assert_eq!(fallback_name("Files"), "Files (migrated)");
        assert_eq!(fallback_name("Q1: *plans*"), "Q1_ _plans_");
        assert_eq!(fallback_name("Work/Q1"), "Work/Q1 (migrated)");
    }

    #[test]
    fn internal_dates_keep_their_offset() {
        assert_eq!(
            internal_date(836_732_665, -420),
            "07-Jul-1996 02:44:25 -0700"
        );
        assert_eq!(internal_date(0, 0), "01-Jan-1970 00:00:00 +0000");
    }
}
