//! Planning one folder: what changed at the source since the last run.
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

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, anyhow};

use super::fetch::{FetchJob, FolderSync};
use super::{AccountContext, JobQueue, SharedCounts};
use crate::imap::{FetchedMessage, ImapSession, mutf7, uid_set};
use crate::store::index::{FolderRow, NewMessage};

/// Items that describe a message without its body.
const LISTING_ITEMS: &str = "UID FLAGS INTERNALDATE RFC822.SIZE";
const LISTING_ITEMS_WITH_ID: &str =
    "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]";
/// At most this many messages in one FETCH batch, whatever their size.
const BATCH_MESSAGES: usize = 1000;

pub(crate) struct PlanJob {
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
    pub status_hint: Option<crate::imap::FolderStatus>,
}

/// Plans one folder and queues its fetch batches. Returns the folder id.
pub(crate) async fn plan(
    ctx: &Arc<AccountContext>,
    session: &mut ImapSession,
    job: &PlanJob,
    queue: &JobQueue,
    shared: &SharedCounts,
) -> Result<i64> {
    let index_of = || ctx.store.index();
    let known = job.known.as_ref();
    let qresync_state = known
        .and_then(|k| Some((k.uidvalidity?, k.highestmodseq?)))
        .filter(|_| session.has_qresync());
    let selected = session.examine(&job.wire_name, qresync_state).await?;
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
    // Re-pointing needs the Message-ID; not worth asking for when the
    // store is empty (a first mirror).
    let want_ids =
        !same_validity && !job.skip_ids.load(Ordering::SeqCst) && !index_of().is_empty()?;
    let items = if want_ids {
        LISTING_ITEMS_WITH_ID
    } else {
        LISTING_ITEMS
    };

    let mut listing: Vec<FetchedMessage> = Vec::new();
    // A message the server numbers UID 0 (which IMAP forbids) cannot be
    // fetched by UID: it is reported, never silently left out.
    let mut zero_uid = false;
    let mut flag_changes: Vec<(u32, String, Option<u64>)> = Vec::new();
    let mut expunged: Vec<u32> = Vec::new();
    let has_new = status.uidnext.is_none_or(|next| next > synced_uid + 1);
    if exists > 0 && has_new {
        let listed = session
            .uid_fetch(&format!("{}:*", synced_uid + 1), items, None, |m| {
                if m.uid == 0 {
                    zero_uid = true;
                }
                // `n:*` answers with the last message even when it is below n.
                if m.uid > synced_uid {
                    listing.push(m);
                }
                Ok(())
            })
            .await;
        if let Err(e) = listed {
            if want_ids {
                job.skip_ids.store(true, Ordering::SeqCst);
            }
            return Err(e);
        }
    }

    let compare_flags = |m: &FetchedMessage, changes: &mut Vec<_>| {
        if let (Some(row), Some(flags)) = (live.get(&m.uid), &m.flags) {
            let flags = normalize_flags(flags);
            if row.flags != flags {
                changes.push((m.uid, flags, m.modseq));
            }
        }
    };

    if same_validity && synced_uid > 0 && !live.is_empty() {
        if qresync_state.is_some() {
            for m in &selected.changed {
                compare_flags(m, &mut flag_changes);
            }
            expunged.extend(selected.vanished.iter().filter(|u| live.contains_key(u)));
        } else if session.has_condstore() && known.and_then(|k| k.highestmodseq).is_some() {
            let since = known.and_then(|k| k.highestmodseq).unwrap_or(0);
            if status.highestmodseq != Some(since) {
                let mut changed = Vec::new();
                session
                    .uid_fetch(
                        &format!("1:{synced_uid}"),
                        "UID FLAGS",
                        Some(&format!("CHANGEDSINCE {since}")),
                        |m| {
                            changed.push(m);
                            Ok(())
                        },
                    )
                    .await?;
                for m in &changed {
                    compare_flags(m, &mut flag_changes);
                }
            }
        } else {
            // No CONDSTORE: one listing of every flag, which also shows
            // what is gone.
            let mut seen = HashSet::new();
            let mut all = Vec::new();
            session
                .uid_fetch(&format!("1:{synced_uid}"), "UID FLAGS", None, |m| {
                    seen.insert(m.uid);
                    all.push(m);
                    Ok(())
                })
                .await?;
            for m in &all {
                compare_flags(m, &mut flag_changes);
            }
            expunged.extend(
                live.keys()
                    .filter(|u| **u <= synced_uid && !seen.contains(u)),
            );
        }
    }

    // Messages listed above the synced UID may already be stored (a run
    // that was killed before it saved the folder's state).
    let mut new: Vec<FetchedMessage> = Vec::new();
    for m in listing {
        if live.contains_key(&m.uid) {
            compare_flags(&m, &mut flag_changes);
        } else {
            new.push(m);
        }
    }

    // The count check: what we believe must add up to what the server has.
    let expunged_set: HashSet<u32> = expunged.iter().copied().collect();
    let believed = live.len() - expunged_set.len() + new.len();
    if believed != exists as usize {
        let mut on_server: HashSet<u32> = session.uid_search_all().await?.into_iter().collect();
        zero_uid |= on_server.remove(&0);
        expunged = live
            .keys()
            .filter(|u| !on_server.contains(u))
            .copied()
            .collect();
        new.retain(|m| on_server.contains(&m.uid));
        let known_new: HashSet<u32> = new.iter().map(|m| m.uid).collect();
        let mut missed: Vec<u32> = on_server
            .iter()
            .filter(|u| !live.contains_key(u) && !known_new.contains(u))
            .copied()
            .collect();
        if !missed.is_empty() {
            missed.sort_unstable();
            session
                .uid_fetch(&uid_set(&missed), items, None, |m| {
                    new.push(m);
                    Ok(())
                })
                .await?;
        }
    }

    if !flag_changes.is_empty() {
        index_of().update_flags(job.folder_id, uidvalidity, &flag_changes)?;
        shared
            .flags_updated
            .fetch_add(flag_changes.len() as u64, Ordering::Relaxed);
    }
    if !expunged.is_empty() {
        index_of().mark_expunged(job.folder_id, uidvalidity, &expunged)?;
        shared
            .messages_expunged
            .fetch_add(expunged.len() as u64, Ordering::Relaxed);
    }

    // Re-point messages confirmed identical to stored blobs.
    let mut to_fetch: Vec<(u32, u64)> = Vec::new();
    // Messages whose stored copy is damaged come again from the server.
    if let Some(repair) = job.repair.as_ref().filter(|r| r.uidvalidity == uidvalidity) {
        to_fetch.extend(
            repair
                .uids
                .iter()
                .filter(|(uid, _)| live.contains_key(uid) && !expunged_set.contains(uid)),
        );
    }
    // A match on Message-ID, size and INTERNALDATE is only a candidate,
    // confirmed against the stored blob (header and samples) before it is
    // re-pointed; otherwise it is fetched.
    let mut candidates: Vec<(&FetchedMessage, crate::store::BlobHash)> = Vec::new();
    {
        let index = index_of();
        for m in &new {
            let size = m.size.unwrap_or(0) as u64;
            let found = match (want_ids, m.message_id(), m.internal_date) {
                (true, Some(id), Some(date)) => {
                    index.find_identical(&id, size, date.timestamp())?
                }
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
                flags: normalize_flags(m.flags.as_deref().unwrap_or_default()),
                modseq: m.modseq,
                internal_date: Some((date.timestamp(), date.offset().local_minus_utc() / 60)),
                size,
            }),
            _ => to_fetch.push((m.uid, size)),
        }
    }
    if !repointed.is_empty() {
        index_of().insert_messages(job.folder_id, uidvalidity, &[], &repointed)?;
    }
    shared
        .bodies_skipped_as_stored
        .fetch_add(repointed.len() as u64, Ordering::Relaxed);

    to_fetch.sort_unstable();
    let max_uid = new
        .iter()
        .map(|m| m.uid)
        .chain(live.keys().copied())
        .max()
        .unwrap_or(0);
    let synced_goal = status
        .uidnext
        .map(|n| n.saturating_sub(1))
        .unwrap_or(0)
        .max(max_uid)
        .max(synced_uid);
    let batches = batches(&to_fetch, ctx.options.batch_bytes);
    let folder = Arc::new(FolderSync::new(
        job.folder_id,
        job.wire_name.clone(),
        uidvalidity,
        status,
        exists,
        synced_uid,
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
    if zero_uid {
        // Planned again next run, and reported until the server is fixed.
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
    tracing::debug!(
        folder = %mutf7::display(&job.wire_name),
        new = count,
        repointed = repointed.len(),
        flags = flag_changes.len(),
        expunged = expunged.len(),
        "planned"
    );
    if zero_uid {
        anyhow::bail!(
            "the server lists a message with UID 0, which IMAP does not allow; it cannot be \
             fetched by UID and is not in the store (the rest of the folder is)"
        );
    }
    Ok(job.folder_id)
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
    ctx: &Arc<AccountContext>,
    session: &mut ImapSession,
    candidates: &[(&FetchedMessage, crate::store::BlobHash)],
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
