//! A folder's appends written ahead of their answers (LITERAL+, RFC 7888):
//! messages stream to the target in windows, one round trip per window
//! instead of one per message, which is what a link with a long round trip
//! needs. Each message is pending in the ledger before it is written, as
//! one by one, so a broken connection leaves entries that reconciliation
//! settles. What the target refuses for a reason that may pass (throttled,
//! no folder, a passing fault, bare newlines) is handed back to be tried
//! one by one.

use std::collections::VecDeque;

use anyhow::Result;

use super::folder::{self, Destination, Sent};
use super::refusal::{self, Refusal};
use super::{FolderJob, UploadContext, flags_for_target};
use crate::imap::{AppendAhead, ImapError, ImapSession};
use crate::store::ledger::{Outgoing, SentAs};

/// A window closes at this many bytes or messages; the next one is written
/// while the answers to the last come back. 4 MiB covers a 100 ms round
/// trip at 300 Mbit/s; the answers to 2 × 200 messages fit in any socket
/// buffer, so neither side blocks on the other.
const WINDOW_BYTES: u64 = 4 << 20;
const WINDOW_MESSAGES: usize = 200;

/// Written and not yet answered: at most what the link carried in the
/// last second and a half (at least this), so that a stop, which reads
/// the answers to what was written for up to [`STOP_DRAIN`], hears them
/// all, and nothing written is left to land after the run is gone (a slow
/// link or a proxy can hold many seconds of messages).
const MIN_AHEAD: u64 = 128 << 10;

/// The pace of a connection's answers, to size what is written ahead.
#[derive(Default)]
struct Pace {
    /// Bytes of the messages answered in the last second, with when.
    recent: VecDeque<(std::time::Instant, u64)>,
    in_flight: u64,
}

impl Pace {
    fn wrote(&mut self, bytes: u64) {
        self.in_flight += bytes;
    }

    fn answered(&mut self, bytes: u64) {
        let now = std::time::Instant::now();
        self.in_flight = self.in_flight.saturating_sub(bytes);
        self.recent.push_back((now, bytes));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > std::time::Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
    }

    /// Whether `bytes` more may be written before an answer is read.
    fn room_for(&self, bytes: u64) -> bool {
        let per_second: u64 = self.recent.iter().map(|(_, b)| b).sum();
        let cap = (per_second * 3 / 2).clamp(MIN_AHEAD, 2 * WINDOW_BYTES);
        self.in_flight == 0 || self.in_flight + bytes <= cap
    }
}

/// A message refused for a reason that may pass, to be tried one by one.
pub(super) struct Again<'a> {
    pub o: &'a Outgoing,
    /// Refusals for a passing fault it has had (each counts as a try).
    pub passing: u32,
}

struct InFlight<'a> {
    o: &'a Outgoing,
    ahead: AppendAhead,
    flags: String,
    sent: Sent,
    window: u64,
}

/// Appends `appends` into `dest` written ahead; returns the messages to
/// try again one by one. Stops early (after reading every answer it is
/// owed) when a stop is requested or the access token is about to expire.
pub(super) async fn append<'a>(
    ctx: &UploadContext,
    imap: &mut ImapSession,
    job: &FolderJob,
    dest: &mut Destination,
    token_stale: &(dyn Fn() -> bool + Sync),
    appends: Vec<&'a Outgoing>,
) -> Result<Vec<Again<'a>>> {
    let kind = ctx.options.target.kind;
    let mut flight: VecDeque<InFlight> = VecDeque::new();
    let mut again = Vec::new();
    let (mut window, mut bytes, mut count) = (0u64, 0u64, 0usize);
    let mut settled_window = None;
    let mut no_uidplus = false;
    // Once the target throttles, nothing more is written ahead in this
    // job: each message waits for the answer before it, so a backoff holds
    // back everything new and no more than what was already under way is
    // refused again.
    let mut throttled = false;
    let mut stopped: Option<anyhow::Error> = None;
    let mut pace = Pace::default();
    for o in appends {
        if crate::stop::requested().is_some() {
            return Err(stop(ctx, job, dest, imap, flight, &mut again, &mut pace).await);
        }
        if token_stale() {
            stopped = Some(
                ImapError::Bye("the access token is about to expire; logging in again".into())
                    .into(),
            );
            break;
        }
        let Some((body, sent_as)) = folder::prepare(ctx, imap, job, dest, o).await? else {
            continue;
        };
        let flags = flags_for_target(&o.flags, kind);
        let date = o
            .internal_date
            .map(|(t, off)| folder::internal_date(t, off));
        folder::mark_pending(ctx, job, dest, o, sent_as, &body)?;
        // Answers already back are read first: a throttle one of them
        // carries must hold this message back.
        while let Some(front) = flight.front() {
            let Some(answer) = imap.append_answer_now(&front.ahead).await else {
                break;
            };
            let f = flight.pop_front().expect("checked");
            settled_window = Some(f.window);
            let answer = settle(ctx, job, dest, f, answer, &mut again, &mut pace)?;
            no_uidplus |= answer.no_uidplus;
            throttled |= answer.throttled;
        }
        // Wait out a backoff while still reading answers: one of them may
        // be a throttle the other connections must hear of.
        while let Some(front) = flight.front() {
            let answer = tokio::select! {
                _ = ctx.throttle.wait() => break,
                answer = imap.append_answer(&front.ahead, false) => answer,
            };
            let f = flight.pop_front().expect("checked");
            settled_window = Some(f.window);
            let answer = settle(ctx, job, dest, f, answer, &mut again, &mut pace)?;
            no_uidplus |= answer.no_uidplus;
            throttled |= answer.throttled;
        }
        ctx.throttle.wait().await;
        // No further ahead of the answers than the link's pace allows.
        while !pace.room_for(body.len() as u64) {
            let f = flight.pop_front().expect("room when nothing is in flight");
            let first = settled_window != Some(f.window);
            settled_window = Some(f.window);
            let Some(answer) = unless_stopped(imap.append_answer(&f.ahead, first)).await else {
                flight.push_front(f);
                return Err(stop(ctx, job, dest, imap, flight, &mut again, &mut pace).await);
            };
            let answer = settle(ctx, job, dest, f, answer, &mut again, &mut pace)?;
            no_uidplus |= answer.no_uidplus;
            throttled |= answer.throttled;
        }
        let plain_nul = sent_as == Some(SentAs::NulLiteral);
        let write = imap.append_ahead(&dest.wire, &flags, date.as_deref(), &body, plain_nul);
        let Some(ahead) = unless_stopped(write).await else {
            return Err(stop(ctx, job, dest, imap, flight, &mut again, &mut pace).await);
        };
        let ahead = ahead?;
        let len = body.len() as u64;
        pace.wrote(len);
        drop(body);
        flight.push_back(InFlight {
            o,
            ahead,
            flags,
            sent: Sent {
                bytes: len,
                sent_as,
            },
            window,
        });
        bytes += len;
        count += 1;
        if throttled || bytes >= WINDOW_BYTES || count >= WINDOW_MESSAGES {
            (window, bytes, count) = (window + 1, 0, 0);
            // Keep one window in flight while the next is written.
            let keep = if throttled { 0 } else { 1 };
            while flight.front().is_some_and(|f| f.window + keep < window) {
                let f = flight.pop_front().expect("checked");
                let first = settled_window != Some(f.window);
                settled_window = Some(f.window);
                let Some(answer) = unless_stopped(imap.append_answer(&f.ahead, first)).await else {
                    flight.push_front(f);
                    return Err(stop(ctx, job, dest, imap, flight, &mut again, &mut pace).await);
                };
                let answer = settle(ctx, job, dest, f, answer, &mut again, &mut pace)?;
                no_uidplus |= answer.no_uidplus;
                throttled |= answer.throttled;
            }
        }
    }
    while let Some(f) = flight.pop_front() {
        let first = settled_window != Some(f.window);
        settled_window = Some(f.window);
        let Some(answer) = unless_stopped(imap.append_answer(&f.ahead, first)).await else {
            flight.push_front(f);
            return Err(stop(ctx, job, dest, imap, flight, &mut again, &mut pace).await);
        };
        no_uidplus |= settle(ctx, job, dest, f, answer, &mut again, &mut pace)?.no_uidplus;
    }
    if no_uidplus {
        // No UIDPLUS: where the next one will go, asked once for the lot.
        if let Some(next) = imap.status(&dest.wire).await?.uidnext {
            dest.uidnext = dest.uidnext.max(next);
        }
    }
    match stopped {
        Some(e) => Err(e),
        None => Ok(again),
    }
}

/// `work`'s outcome, or `None` once a stop is asked for (at once, not after
/// a window has drained over a slow link).
async fn unless_stopped<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        done = work => Some(done),
        _ = crate::stop::wait() => None,
    }
}

/// How long a stop waits for the answers to APPENDs already written.
const STOP_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// A stop with APPENDs under way. Their answers are read for a moment:
/// what the server took is recorded now rather than left for the next run
/// to find (it may still be landing then). What is owed after that stays
/// pending, for the next run to settle by reading the target back; the
/// connection, owed answers or cut mid-message, is reset, not used again.
async fn stop<'a>(
    ctx: &UploadContext,
    job: &FolderJob,
    dest: &mut Destination,
    imap: &mut ImapSession,
    mut flight: VecDeque<InFlight<'a>>,
    again: &mut Vec<Again<'a>>,
    pace: &mut Pace,
) -> anyhow::Error {
    let deadline = tokio::time::sleep(STOP_DRAIN);
    tokio::pin!(deadline);
    let mut first = true;
    while let Some(f) = flight.pop_front() {
        let answer = tokio::select! {
            answer = imap.append_answer(&f.ahead, first) => answer,
            _ = &mut deadline => break,
        };
        first = false;
        if settle(ctx, job, dest, f, answer, again, pace).is_err() {
            break;
        }
    }
    imap.abandon();
    crate::outcome::Interrupted.into()
}

/// What one answer said that the rest of the job needs.
#[derive(Default)]
struct Answer {
    /// The target took it without an APPENDUID.
    no_uidplus: bool,
    throttled: bool,
}

/// Records the answer to one APPEND.
fn settle<'a>(
    ctx: &UploadContext,
    job: &FolderJob,
    dest: &mut Destination,
    f: InFlight<'a>,
    answer: Result<crate::imap::Appended>,
    again: &mut Vec<Again<'a>>,
    pace: &mut Pace,
) -> Result<Answer> {
    pace.answered(f.sent.bytes);
    match answer {
        Ok(appended) => {
            ctx.throttle.went_through();
            let uid = match appended.uid {
                Some((v, u)) if v == dest.uidvalidity => {
                    dest.uidnext = dest.uidnext.max(u + 1);
                    Some(u)
                }
                _ => None,
            };
            folder::record_appended(ctx, job, dest, f.o, &f.flags, uid, f.sent)?;
            Ok(Answer {
                no_uidplus: uid.is_none(),
                throttled: false,
            })
        }
        Err(e) => {
            let text = match e.downcast_ref::<ImapError>() {
                Some(ImapError::No { text, .. }) | Some(ImapError::Bad { text, .. }) => {
                    text.clone()
                }
                // A broken connection: what is in flight stays pending.
                _ => return Err(e),
            };
            match refusal::classify(&text) {
                refusal @ (Refusal::Permanent | Refusal::OverQuota) => {
                    folder::record_refused(ctx, job.target_folder_id, f.o, refusal, text)?
                }
                Refusal::Throttled(backoff) => {
                    ctx.throttle.throttled(backoff);
                    again.push(Again { o: f.o, passing: 0 });
                    return Ok(Answer {
                        no_uidplus: false,
                        throttled: true,
                    });
                }
                Refusal::Temporary => again.push(Again { o: f.o, passing: 1 }),
                Refusal::NoFolder | Refusal::BareNewlines => {
                    again.push(Again { o: f.o, passing: 0 })
                }
            }
            Ok(Answer::default())
        }
    }
}
