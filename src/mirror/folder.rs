//! Examining one folder: what changed at the source since the last run.
//! The IMAP conversation is in `observe`; the comparison with the store
//! is `diff`, which does no I/O.
//!
//! Same UIDVALIDITY: only UIDs above the last synced one are listed; flag
//! changes come from QRESYNC (answered inside EXAMINE), CONDSTORE's
//! `CHANGEDSINCE`, or one `UID FETCH 1:n (FLAGS)`; expunges from QRESYNC's
//! VANISHED or the full flag listing. A count check against EXISTS catches
//! anything missed, and then `UID SEARCH ALL` settles it.
//!
//! New UIDVALIDITY (or a new folder while the store holds mail): every
//! message is listed with its size, INTERNALDATE and Message-ID, and a
//! message that matches exactly one stored blob on all three is recorded
//! without fetching its body.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, anyhow};

use super::fetch::{FetchJob, FolderSync};
use super::{JobQueue, MirrorContext, SharedCounts};
use crate::imap::{FetchedMessage, ImapSession, mutf7, uid_set};
use crate::store::index::{FolderRow, LiveMessage, NewMessage};

/// Items that describe a message without its body.
const LISTING_ITEMS: &str = "UID FLAGS INTERNALDATE RFC822.SIZE";
const LISTING_ITEMS_WITH_ID: &str =
    "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]";

/// What a folder's listing asks for, with or without the Message-ID.
fn listing_items(with_ids: bool) -> &'static str {
    if with_ids {
        LISTING_ITEMS_WITH_ID
    } else {
        LISTING_ITEMS
    }
}

/// At most this many messages in one FETCH batch, whatever their size.
const BATCH_MESSAGES: usize = 1000;

pub(crate) struct ExamineJob {
    pub folder_id: i64,
    pub wire_name: String,
    /// The index's row for the folder as it was before this run, if any.
    pub known: Option<FolderRow>,
    /// Set when listing Message-IDs failed: a server that cannot read a
    /// message's header must not stop the folder, so the retry lists
    /// without them (and fetches instead of re-pointing).
    pub skip_ids: AtomicBool,
    /// Live messages whose stored copy was found damaged: fetched again.
    pub repair: Option<crate::store::index::DamagedMessages>,
    /// STATUS figures read before the folder was opened: UIDNEXT where
    /// EXAMINE gives none (Courier).
    pub status_hint: Option<crate::imap::MailboxStatus>,
}

/// Examines one folder and queues its fetch batches. Returns the folder id.
pub(crate) async fn examine(
    ctx: &Arc<MirrorContext>,
    session: &mut ImapSession,
    job: &ExamineJob,
    queue: &JobQueue,
    shared: &SharedCounts,
) -> Result<i64> {
    let index_of = || ctx.store.index();
    let known = job.known.as_ref();
    let qresync_state = known
        .and_then(|k| Some((k.uidvalidity?, k.highestmodseq?)))
        .filter(|_| session.has_qresync());
    // Re-pointing needs the Message-ID; not worth asking for when the
    // store is empty (a first mirror).
    let ids_worth_asking =
        || -> Result<bool> { Ok(!job.skip_ids.load(Ordering::SeqCst) && !index_of().is_empty()?) };
    // A folder the store has never seen is listed whole whatever EXAMINE
    // says: the listing goes with it, in one round trip.
    // A listing with IDs may be what broke the connection (a header the
    // server cannot send): the retry lists without them.
    let listing_failed = |with_ids: bool, e: anyhow::Error| {
        if with_ids {
            job.skip_ids.store(true, Ordering::SeqCst);
        }
        e
    };
    let fresh = known.and_then(|k| k.uidvalidity).is_none();
    let fresh_ids = fresh && ids_worth_asking()?;
    let (selected, prelisted) = if fresh {
        session
            .examine_and_list(&job.wire_name, listing_items(fresh_ids))
            .await
            .map_err(|e| listing_failed(fresh_ids, e))?
    } else {
        (session.examine(&job.wire_name, qresync_state).await?, None)
    };
    let mut status = selected.status;
    if status.uidnext.is_none() {
        // Courier's EXAMINE gives no UIDNEXT: STATUS does.
        status.uidnext = match job.status_hint.and_then(|s| s.uidnext) {
            Some(n) => Some(n),
            None => session.status(&job.wire_name).await?.uidnext,
        };
    }
    let uidvalidity = status
        .uidvalidity
        .ok_or_else(|| anyhow!("the server gave no UIDVALIDITY"))?;
    let exists = status.messages.unwrap_or(0);
    shared.folders_synced.fetch_add(1, Ordering::Relaxed);

    let same_validity = known.and_then(|k| k.uidvalidity) == Some(uidvalidity);
    if !same_validity {
        if known.and_then(|k| k.uidvalidity).is_some() {
            shared.uidvalidity_changes.fetch_add(1, Ordering::Relaxed);
        }
        index_of().reset_uidvalidity(job.folder_id, uidvalidity)?;
    }
    let synced_uid = if same_validity {
        known.map(|k| k.synced_uid).unwrap_or(0)
    } else {
        0
    };
    let live = index_of().live_messages(job.folder_id, uidvalidity)?;
    let want_ids = if fresh {
        fresh_ids
    } else {
        !same_validity && ids_worth_asking()?
    };
    let items = listing_items(want_ids);
    let look = Look {
        synced_uid,
        items,
        has_new: status.uidnext.is_none_or(|next| next > synced_uid + 1),
        exists,
        old_flags: if same_validity && synced_uid > 0 && !live.is_empty() {
            if qresync_state.is_some() {
                OldFlags::Qresync
            } else if session.has_condstore() && known.and_then(|k| k.highestmodseq).is_some() {
                let since = known.and_then(|k| k.highestmodseq).unwrap_or(0);
                if status.highestmodseq == Some(since) {
                    OldFlags::Unchanged
                } else {
                    OldFlags::ChangedSince(since)
                }
            } else {
                OldFlags::ListAll
            }
        } else {
            OldFlags::Unchanged
        },
    };
    let observed = match observe(
        session,
        &look,
        selected.changed,
        selected.vanished,
        prelisted,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return Err(listing_failed(want_ids, e)),
    };
    let mut zero_uid = observed.zero_uid;
    let mut diff = diff(&live, synced_uid, observed);

    // The count check: what we believe must add up to what the server has.
    if diff.believed(live.len()) != exists as usize {
        let mut on_server: HashSet<u32> = session.uid_search_all().await?.into_iter().collect();
        zero_uid |= on_server.remove(&0);
        let missed = diff.settle(&live, &on_server);
        if !missed.is_empty() {
            session
                .uid_fetch(&uid_set(&missed), items, None, |m| {
                    diff.new.push(m.into());
                    Ok(())
                })
                .await?;
        }
    }
    record(ctx, job.folder_id, uidvalidity, &diff, shared)?;

    // Messages whose stored copy is damaged come again from the server.
    let mut to_fetch: Vec<(u32, u64)> = Vec::new();
    if let Some(repair) = job.repair.as_ref().filter(|r| r.uidvalidity == uidvalidity) {
        let expunged: HashSet<u32> = diff.expunged.iter().copied().collect();
        to_fetch.extend(
            repair
                .uids
                .iter()
                .filter(|(uid, _)| live.contains_key(uid) && !expunged.contains(uid)),
        );
    }
    let repointed = repoint(
        ctx,
        session,
        job.folder_id,
        uidvalidity,
        &diff.new,
        want_ids,
        &mut to_fetch,
    )
    .await?;
    shared
        .bodies_skipped_as_stored
        .fetch_add(repointed as u64, Ordering::Relaxed);

    let queued = queue_fetches(
        ctx,
        job,
        queue,
        Examined {
            uidvalidity,
            status,
            synced_uid,
            live: &live,
            diff: &diff,
            zero_uid,
        },
        to_fetch,
    )?;
    tracing::debug!(
        folder = %mutf7::display(&job.wire_name),
        new = queued,
        repointed,
        flags = diff.flag_changes.len(),
        expunged = diff.expunged.len(),
        "examined"
    );
    if zero_uid {
        anyhow::bail!(
            "the server lists a message with UID 0, which IMAP does not allow; it cannot be \
             fetched by UID and is not in the store (the rest of the folder is)"
        );
    }
    Ok(job.folder_id)
}

/// A folder as [`examine`] found it, for [`queue_fetches`].
struct Examined<'a> {
    uidvalidity: u32,
    status: crate::imap::MailboxStatus,
    synced_uid: u32,
    live: &'a HashMap<u32, LiveMessage>,
    diff: &'a FolderDiff,
    zero_uid: bool,
}

/// Queues the folder's fetch batches (or finishes it when there are
/// none). Returns how many messages are to be fetched.
fn queue_fetches(
    ctx: &Arc<MirrorContext>,
    job: &ExamineJob,
    queue: &JobQueue,
    e: Examined,
    mut to_fetch: Vec<(u32, u64)>,
) -> Result<u64> {
    to_fetch.sort_unstable();
    let max_uid = e
        .diff
        .new
        .iter()
        .map(|m| m.uid)
        .chain(e.live.keys().copied())
        .max()
        .unwrap_or(0);
    let synced_goal = e
        .status
        .uidnext
        .map(|n| n.saturating_sub(1))
        .unwrap_or(0)
        .max(max_uid)
        .max(e.synced_uid);
    let batches = batches(&to_fetch, ctx.options.batch_bytes);
    let folder = Arc::new(FolderSync::new(
        job.folder_id,
        job.wire_name.clone(),
        e.uidvalidity,
        e.status,
        e.status.messages.unwrap_or(0),
        e.synced_uid,
        synced_goal,
        batches.len(),
    ));
    let (count, bytes) = (
        to_fetch.len() as u64,
        to_fetch.iter().map(|(_, s)| s).sum::<u64>(),
    );
    if count > 0 {
        ctx.progress.planned(&ctx.account.name, count, bytes);
    }
    if e.zero_uid {
        // Examined again next run, and reported until the server is fixed.
        folder.note_failure("the server lists a message with UID 0, which cannot be fetched");
        folder.mark_incomplete();
    }
    if batches.is_empty() {
        folder.finish(ctx)?;
    } else {
        queue.push_fetches(
            batches
                .into_iter()
                .map(|(uids, bytes)| FetchJob::new(folder.clone(), uids, bytes))
                .collect(),
        );
    }
    Ok(count)
}

/// How to find out what happened to a folder's older messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OldFlags {
    /// Nothing to ask: no older messages, or HIGHESTMODSEQ is unchanged.
    Unchanged,
    /// QRESYNC answered inside EXAMINE (changes and VANISHED).
    Qresync,
    /// CONDSTORE: the flags changed since this MODSEQ.
    ChangedSince(u64),
    /// Neither: one listing of every flag, which also shows what is gone.
    ListAll,
}

/// What to ask the server about one folder.
struct Look {
    synced_uid: u32,
    items: &'static str,
    /// UIDNEXT says there may be messages above the synced UID.
    has_new: bool,
    exists: u32,
    old_flags: OldFlags,
}

/// One message as a listing showed it: what the diff and the re-pointing
/// read, without the room a [`FetchedMessage`] keeps for bodies (288 bytes
/// each: a first mirror listing four 7,000-message folders at once held
/// 10 MB of them).
#[derive(Debug, Clone, Default)]
pub(crate) struct Listed {
    pub uid: u32,
    /// As the index keeps them (see [`normalize_flags`]); `None` when the
    /// server sent no FLAGS.
    pub flags: Option<Box<str>>,
    pub internal_date: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub size: Option<u32>,
    pub modseq: Option<u64>,
    pub message_id: Option<Box<str>>,
}

impl From<FetchedMessage> for Listed {
    fn from(m: FetchedMessage) -> Listed {
        Listed {
            uid: m.uid,
            flags: m.flags.as_deref().map(|f| normalize_flags(f).into()),
            internal_date: m.internal_date,
            size: m.size,
            modseq: m.modseq,
            message_id: m.message_id().map(Into::into),
        }
    }
}

/// What the server showed of a folder this run.
#[derive(Default)]
pub(crate) struct Observed {
    /// Messages listed above the last synced UID.
    pub listed: Vec<Listed>,
    /// Flags of older messages that may have changed.
    pub flags: Vec<Listed>,
    /// UIDs the server says are gone (QRESYNC's VANISHED).
    pub vanished: Vec<u32>,
    /// Every older UID the server still has, when a full flag listing
    /// showed them all.
    pub still_there: Option<HashSet<u32>>,
    /// The server numbers a message UID 0, which IMAP forbids: it cannot
    /// be fetched by UID, so it is reported, never silently left out.
    pub zero_uid: bool,
}

/// Asks the server what `look` calls for.
async fn observe(
    session: &mut ImapSession,
    look: &Look,
    qresync_changed: Vec<FetchedMessage>,
    qresync_vanished: Vec<u32>,
    prelisted: Option<Vec<Listed>>,
) -> Result<Observed> {
    let mut seen = Observed::default();
    let synced_uid = look.synced_uid;
    if look.exists > 0 && look.has_new {
        let (listed, zero_uid) = (&mut seen.listed, &mut seen.zero_uid);
        let mut take = |m: Listed| {
            if m.uid == 0 {
                *zero_uid = true;
            }
            // `n:*` answers with the last message even when it is below n.
            if m.uid > synced_uid {
                listed.push(m);
            }
        };
        match prelisted {
            // Listed with the EXAMINE (from UID 1: nothing was synced).
            Some(messages) => messages.into_iter().for_each(take),
            None => {
                session
                    .uid_fetch(&format!("{}:*", synced_uid + 1), look.items, None, |m| {
                        take(m.into());
                        Ok(())
                    })
                    .await?;
            }
        }
    }
    match look.old_flags {
        OldFlags::Unchanged => {}
        OldFlags::Qresync => {
            seen.flags = qresync_changed.into_iter().map(Listed::from).collect();
            seen.vanished = qresync_vanished;
        }
        OldFlags::ChangedSince(since) => {
            let flags = &mut seen.flags;
            session
                .uid_fetch(
                    &format!("1:{synced_uid}"),
                    "UID FLAGS",
                    Some(&format!("CHANGEDSINCE {since}")),
                    |m| {
                        flags.push(m.into());
                        Ok(())
                    },
                )
                .await?;
        }
        OldFlags::ListAll => {
            let mut there = HashSet::new();
            let flags = &mut seen.flags;
            session
                .uid_fetch(&format!("1:{synced_uid}"), "UID FLAGS", None, |m| {
                    there.insert(m.uid);
                    flags.push(m.into());
                    Ok(())
                })
                .await?;
            seen.still_there = Some(there);
        }
    }
    Ok(seen)
}

/// What changed in a folder since the last run.
#[derive(Debug, Default)]
pub(crate) struct FolderDiff {
    /// (UID, flags as stored, MODSEQ) of stored messages whose flags changed.
    pub flag_changes: Vec<(u32, String, Option<u64>)>,
    /// Stored messages gone from the server.
    pub expunged: Vec<u32>,
    /// Messages the store does not hold yet.
    pub new: Vec<Listed>,
}

/// The folder's diff, from the stored messages (`live`: UID → flags) and
/// what the server showed. No I/O.
pub(crate) fn diff(
    live: &HashMap<u32, LiveMessage>,
    synced_uid: u32,
    seen: Observed,
) -> FolderDiff {
    let mut d = FolderDiff::default();
    let compare = |m: &Listed, changes: &mut Vec<(u32, String, Option<u64>)>| {
        if let (Some(row), Some(flags)) = (live.get(&m.uid), &m.flags)
            && *row.flags != **flags
        {
            changes.push((m.uid, flags.to_string(), m.modseq));
        }
    };
    for m in &seen.flags {
        compare(m, &mut d.flag_changes);
    }
    let mut gone: HashSet<u32> = seen
        .vanished
        .iter()
        .copied()
        .filter(|u| live.contains_key(u))
        .collect();
    if let Some(there) = &seen.still_there {
        gone.extend(
            live.keys()
                .filter(|u| **u <= synced_uid && !there.contains(u)),
        );
    }
    d.expunged = gone.into_iter().collect();
    d.expunged.sort_unstable();
    // Messages listed above the synced UID may already be stored (a run
    // that was killed before it saved the folder's state).
    for m in seen.listed {
        if live.contains_key(&m.uid) {
            compare(&m, &mut d.flag_changes);
        } else {
            d.new.push(m);
        }
    }
    d
}

impl FolderDiff {
    /// How many messages the folder holds if this diff is the whole truth.
    pub fn believed(&self, live: usize) -> usize {
        live - self.expunged.len() + self.new.len()
    }

    /// Corrects the diff by the server's full list of UIDs (when the count
    /// did not add up): stored messages not on it are expunged, listed
    /// ones not on it dropped. Returns the UIDs on it that are neither
    /// stored nor listed, to be listed now.
    pub fn settle(
        &mut self,
        live: &HashMap<u32, LiveMessage>,
        on_server: &HashSet<u32>,
    ) -> Vec<u32> {
        self.expunged = live
            .keys()
            .filter(|u| !on_server.contains(u))
            .copied()
            .collect();
        self.expunged.sort_unstable();
        self.new.retain(|m| on_server.contains(&m.uid));
        let listed: HashSet<u32> = self.new.iter().map(|m| m.uid).collect();
        let mut missed: Vec<u32> = on_server
            .iter()
            .filter(|u| !live.contains_key(u) && !listed.contains(u))
            .copied()
            .collect();
        missed.sort_unstable();
        missed
    }
}

/// Writes the diff's flag changes and expunges to the index.
fn record(
    ctx: &MirrorContext,
    folder_id: i64,
    uidvalidity: u32,
    diff: &FolderDiff,
    shared: &SharedCounts,
) -> Result<()> {
    if !diff.flag_changes.is_empty() {
        ctx.store
            .index()
            .update_flags(folder_id, uidvalidity, &diff.flag_changes)?;
        shared
            .flags_updated
            .fetch_add(diff.flag_changes.len() as u64, Ordering::Relaxed);
    }
    if !diff.expunged.is_empty() {
        ctx.store
            .index()
            .mark_expunged(folder_id, uidvalidity, &diff.expunged)?;
        shared
            .messages_expunged
            .fetch_add(diff.expunged.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Records new messages confirmed identical to stored blobs without their
/// bodies; the rest go to `to_fetch`. A match on Message-ID, size and
/// INTERNALDATE is only a candidate, confirmed against the stored blob
/// (header and samples) before it is re-pointed. Returns how many were.
async fn repoint(
    ctx: &Arc<MirrorContext>,
    session: &mut ImapSession,
    folder_id: i64,
    uidvalidity: u32,
    new: &[Listed],
    want_ids: bool,
    to_fetch: &mut Vec<(u32, u64)>,
) -> Result<usize> {
    let mut candidates: Vec<(&Listed, crate::store::BlobHash)> = Vec::new();
    {
        let index = ctx.store.index();
        for m in new {
            let size = m.size.unwrap_or(0) as u64;
            let found = match (want_ids, &m.message_id, m.internal_date) {
                (true, Some(id), Some(date)) => index.find_identical(id, size, date.timestamp())?,
                _ => None,
            };
            match found {
                Some(blob) => candidates.push((m, blob)),
                None => to_fetch.push((m.uid, size)),
            }
        }
    }
    let confirmed = confirm_identical(ctx, session, &candidates).await?;
    let mut repointed: Vec<NewMessage> = Vec::new();
    for (m, blob) in &candidates {
        let size = m.size.unwrap_or(0) as u64;
        match (confirmed.contains(&m.uid), m.internal_date) {
            (true, Some(date)) => repointed.push(NewMessage {
                uid: m.uid,
                blob: *blob,
                flags: m.flags.as_deref().unwrap_or_default().to_string(),
                modseq: m.modseq,
                internal_date: Some((date.timestamp(), date.offset().local_minus_utc() / 60)),
                size,
            }),
            _ => to_fetch.push((m.uid, size)),
        }
    }
    if !repointed.is_empty() {
        ctx.store
            .index()
            .insert_messages(folder_id, uidvalidity, &[], &repointed)?;
    }
    Ok(repointed.len())
}

/// Where re-pointing samples a candidate's bytes beyond its header: the
/// start of its text, then fixed offsets into larger messages.
const TEXT_SAMPLE: usize = 1024;
const SAMPLE_OFFSETS: [u32; 3] = [16 * 1024, 32 * 1024, 48 * 1024];
const SAMPLE_LEN: u32 = 512;

/// Which candidates are confirmed to be the stored blob they matched: the
/// whole header, the start of the text and three samples further in are
/// the same bytes. One FETCH for all of them.
async fn confirm_identical(
    ctx: &Arc<MirrorContext>,
    session: &mut ImapSession,
    candidates: &[(&Listed, crate::store::BlobHash)],
) -> Result<HashSet<u32>> {
    let mut confirmed = HashSet::new();
    if candidates.is_empty() {
        return Ok(confirmed);
    }
    let mut uids: Vec<u32> = candidates.iter().map(|(m, _)| m.uid).collect();
    uids.sort_unstable();
    let mut items = format!("UID BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.{TEXT_SAMPLE}>");
    for off in SAMPLE_OFFSETS {
        items.push_str(&format!(" BODY.PEEK[]<{off}.{SAMPLE_LEN}>"));
    }
    let mut answers: std::collections::HashMap<u32, FetchedMessage> = Default::default();
    session
        .uid_fetch(&uid_set(&uids), &items, None, |m| {
            answers.insert(m.uid, m);
            Ok(())
        })
        .await?;
    for (m, blob) in candidates {
        let Some(answer) = answers.remove(&m.uid) else {
            continue;
        };
        let store = ctx.store.clone();
        let blob = *blob;
        // A damaged stored copy confirms nothing.
        let Ok(Ok(stored)) = tokio::task::spawn_blocking(move || store.read_blob(&blob)).await
        else {
            continue;
        };
        let header_end = stored
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(stored.len(), |i| i + 4);
        let same_header = answer.header_fields.as_deref() == Some(&stored[..header_end]);
        let text_end = (header_end + TEXT_SAMPLE).min(stored.len());
        let same_text = answer.text.as_deref().unwrap_or_default() == &stored[header_end..text_end];
        let same_samples = SAMPLE_OFFSETS.iter().all(|&off| {
            let start = (off as usize).min(stored.len());
            let end = (start + SAMPLE_LEN as usize).min(stored.len());
            answer
                .partials
                .iter()
                .any(|(o, bytes)| *o == off && bytes.as_slice() == &stored[start..end])
        });
        if same_header && same_text && same_samples {
            confirmed.insert(m.uid);
        }
    }
    Ok(confirmed)
}

/// Splits UIDs (with sizes) into batches of about `batch_bytes`.
fn batches(messages: &[(u32, u64)], batch_bytes: u64) -> Vec<(Vec<u32>, u64)> {
    let mut out = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut bytes = 0u64;
    for &(uid, size) in messages {
        if !current.is_empty() && (bytes + size > batch_bytes || current.len() >= BATCH_MESSAGES) {
            out.push((std::mem::take(&mut current), bytes));
            bytes = 0;
        }
        current.push(uid);
        bytes += size;
    }
    if !current.is_empty() {
        out.push((current, bytes));
    }
    out
}

/// Flags as the index keeps them: sorted, space separated, without \Recent.
pub(crate) fn normalize_flags(flags: &[String]) -> String {
    let mut f: Vec<&str> = flags
        .iter()
        .map(String::as_str)
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect();
    f.sort_unstable();
    f.dedup();
    f.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_by_bytes_and_keep_big_messages_alone() {
        let msgs = [(1, 100), (2, 100), (3, 1000), (4, 50), (5, 50)];
        let b = batches(&msgs, 250);
        assert_eq!(
            b,
            vec![(vec![1, 2], 200), (vec![3], 1000), (vec![4, 5], 100)]
        );
    }

    fn live(entries: &[(u32, &str)]) -> HashMap<u32, LiveMessage> {
        entries
            .iter()
            .map(|(uid, flags)| {
                (
                    *uid,
                    LiveMessage {
                        flags: flags.to_string(),
                    },
                )
            })
            .collect()
    }

    fn seen(uid: u32, flags: &[&str]) -> Listed {
        FetchedMessage {
            uid,
            flags: Some(flags.iter().map(|f| f.to_string()).collect()),
            has_uid: true,
            ..Default::default()
        }
        .into()
    }

    fn uids(messages: &[Listed]) -> Vec<u32> {
        messages.iter().map(|m| m.uid).collect()
    }

    #[test]
    fn a_full_flag_listing_tells_flag_changes_and_expunges() {
        let stored = live(&[(1, "\\Seen"), (2, ""), (3, "\\Flagged")]);
        let d = diff(
            &stored,
            3,
            Observed {
                listed: vec![seen(4, &[])],
                flags: vec![seen(1, &["\\Seen", "\\Recent"]), seen(3, &["\\Seen"])],
                still_there: Some([1, 3].into()),
                ..Observed::default()
            },
        );
        assert_eq!(d.flag_changes, vec![(3, "\\Seen".to_string(), None)]);
        assert_eq!(d.expunged, vec![2]);
        assert_eq!(uids(&d.new), vec![4]);
        assert_eq!(d.believed(stored.len()), 3);
    }

    #[test]
    fn vanished_uids_count_only_when_stored_and_new_ones_already_stored_are_not_new() {
        let stored = live(&[(1, ""), (2, ""), (5, "\\Seen")]);
        let d = diff(
            &stored,
            2,
            Observed {
                // UID 5 was stored by a run killed before it saved the
                // folder's state: listed again, it is not new, but its
                // flags are compared.
                listed: vec![seen(5, &[]), seen(6, &[])],
                vanished: vec![2, 9, 2],
                ..Observed::default()
            },
        );
        assert_eq!(d.expunged, vec![2]);
        assert_eq!(uids(&d.new), vec![6]);
        assert_eq!(d.flag_changes, vec![(5, String::new(), None)]);
    }

    #[test]
    fn without_a_full_listing_nothing_is_taken_for_expunged() {
        let stored = live(&[(1, ""), (2, "")]);
        let d = diff(&stored, 2, Observed::default());
        assert!(d.expunged.is_empty() && d.new.is_empty() && d.flag_changes.is_empty());
    }

    #[test]
    fn the_servers_uid_list_settles_a_count_that_does_not_add_up() {
        let stored = live(&[(1, ""), (2, ""), (3, "")]);
        let mut d = diff(
            &stored,
            3,
            Observed {
                listed: vec![seen(4, &[]), seen(7, &[])],
                ..Observed::default()
            },
        );
        // The server has 1, 3, 4 and 5: 2 is gone, 7 went meanwhile, 5
        // was missed.
        assert_ne!(d.believed(stored.len()), 4);
        let missed = d.settle(&stored, &[1, 3, 4, 5].into());
        assert_eq!(d.expunged, vec![2]);
        assert_eq!(uids(&d.new), vec![4]);
        assert_eq!(missed, vec![5]);
        assert_eq!(d.believed(stored.len()) + missed.len(), 4);
    }

    #[test]
    fn flags_are_sorted_without_recent() {
        let f = ["\\Seen", "\\Recent", "$Label1", "\\Flagged"].map(String::from);
        assert_eq!(normalize_flags(&f), "$Label1 \\Flagged \\Seen");
    }

    #[test]
    fn message_ids_are_read_from_header_fields() {
        let m = FetchedMessage {
            header_fields: Some(b"Message-Id:\r\n <abc@example.com>\r\n\r\n".to_vec()),
            ..Default::default()
        };
        assert_eq!(m.message_id().as_deref(), Some("abc@example.com"));
        let none = FetchedMessage {
            header_fields: Some(b"\r\n".to_vec()),
            ..Default::default()
        };
        assert_eq!(none.message_id(), None);
    }
}
