//! A large message whose connection broke in the middle is continued from
//! where it stopped, with partial fetches (`BODY.PEEK[]<offset.length>`),
//! instead of being fetched again from its first byte: on a link that
//! drops every few megabytes, a message larger than that would otherwise
//! never arrive. What arrived goes onto the message's partial file in the
//! store ([`crate::store::Partial`]), which a later run continues too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};

use super::fetch::{FetchJob, deliver};
use super::{MirrorContext, SharedCounts};
use crate::imap::{FetchedMessage, ImapSession, Spill, SpillFile, Spilled};
use crate::store::Partial;

/// Asked for beyond the size the server declared: an answer shorter than
/// what was asked for is the end of the message, whatever the size said.
const SLACK: u64 = 64 * 1024;

/// A fetch job's large message in pieces.
#[derive(Default)]
pub(super) struct Resume {
    /// The connection fetching now, whose cut literal is kept when it breaks.
    spill: Mutex<Option<Spill>>,
    /// The message being assembled, and its pieces so far.
    partial: Mutex<Option<(u32, Partial)>>,
}

impl Resume {
    pub fn watch(&self, session: &ImapSession) {
        *self.spill.lock().unwrap() = session.spill();
    }

    /// The UID being assembled, if any.
    pub fn continuing(&self) -> Option<u32> {
        self.partial.lock().unwrap().as_ref().map(|(uid, _)| *uid)
    }

    /// Bytes of `uid` kept so far (none when it is not the one assembled).
    fn len_of(&self, uid: u32) -> u64 {
        match &*self.partial.lock().unwrap() {
            Some((u, p)) if *u == uid => p.len(),
            _ => 0,
        }
    }

    fn take(&self, uid: u32) -> Option<Partial> {
        let mut slot = self.partial.lock().unwrap();
        match slot.take() {
            Some((u, p)) if u == uid => Some(p),
            other => {
                *slot = other;
                None
            }
        }
    }

    fn put(&self, uid: u32, partial: Partial) {
        *self.partial.lock().unwrap() = Some((uid, partial));
    }
}

/// Picks up pieces an earlier run left of the job's message.
pub(super) async fn resume_earlier(ctx: &Arc<MirrorContext>, job: &FetchJob) -> Result<bool> {
    let [uid] = job.remaining()[..] else {
        return Ok(false);
    };
    let f = &job.folder;
    if job.resume.continuing().is_some() || !ctx.store.has_partial(f.folder_id, f.uidvalidity, uid)
    {
        return Ok(false);
    }
    let partial = open(ctx, job, uid).await?;
    let found = !partial.is_empty();
    job.resume.put(uid, partial);
    Ok(found)
}

/// What the last connection had of a large message when it broke goes
/// onto the message's partial file. Returns whether anything did.
pub(super) async fn absorb_cut(ctx: &Arc<MirrorContext>, job: &FetchJob) -> Result<bool> {
    let cut = job.resume.spill.lock().unwrap().take();
    let Some(cut) = cut.and_then(|s| s.take_cut()) else {
        return Ok(false);
    };
    let Some((uid, offset)) = whose(&cut.head) else {
        return Ok(false);
    };
    if cut.arrived == 0 || !job.remaining().contains(&uid) {
        return Ok(false);
    }
    if job.resume.continuing().is_some_and(|u| u != uid) {
        return Ok(false);
    }
    let mut partial = match job.resume.take(uid) {
        Some(p) => p,
        None => open(ctx, job, uid).await?,
    };
    if partial.len() != offset {
        job.resume.put(uid, partial);
        return Ok(false);
    }
    let partial = tokio::task::spawn_blocking(move || {
        let appended = partial.append_file(cut.file.path(), cut.arrived);
        (partial, appended)
    })
    .await
    .map_err(|e| anyhow!("keeping a cut message crashed: {e}"))?;
    let (partial, appended) = partial;
    job.resume.put(uid, partial);
    appended.map_err(local)?;
    job.moved_on();
    Ok(true)
}

/// Fetches the rest of `uid` onto its partial file, piece by piece, and
/// stores the message when it is whole. Returns false when the server
/// did not send it (expunged meanwhile): the caller reports that.
pub(super) async fn fetch_rest(
    ctx: &Arc<MirrorContext>,
    session: &mut ImapSession,
    job: &FetchJob,
    shared: &SharedCounts,
    uid: u32,
) -> Result<bool> {
    let mut last: FetchedMessage;
    loop {
        let offset = job.resume.len_of(uid);
        let want = job.bytes.saturating_sub(offset) + SLACK;
        job.resume.watch(session);
        let items = format!("UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]<{offset}.{want}>");
        let mut answer = None;
        let fetched: Result<()> = async {
            let mut stream = session.uid_fetch_stream(&uid.to_string(), &items).await?;
            while let Some(m) = stream.next().await? {
                if m.uid == uid && answer.is_none() {
                    answer = Some(m);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = fetched {
            absorb_cut(ctx, job).await?;
            return Err(e);
        }
        let Some(mut m) = answer else {
            if let Some(p) = job.resume.take(uid) {
                p.discard();
            }
            return Ok(false);
        };
        let piece = match (m.spilled_partial.take(), m.partials.drain(..).next()) {
            (Some((at, file)), _) if u64::from(at) == offset => Piece::File(file),
            (None, Some((at, bytes))) if u64::from(at) == offset => Piece::Bytes(bytes),
            // No BODY[]<offset> in the answer: past the end.
            (None, None) => Piece::Bytes(Vec::new()),
            _ => {
                return Err(anyhow!(
                    "the server answered a fetch of UID {uid} from byte {offset} with \
                     another part of it"
                ));
            }
        };
        let n = piece.len();
        let mut partial = match job.resume.take(uid) {
            Some(p) => p,
            None => open(ctx, job, uid).await?,
        };
        let (partial, appended) = tokio::task::spawn_blocking(move || {
            let appended = match &piece {
                Piece::Bytes(b) => partial.append(b),
                Piece::File(s) => partial.append_file(s.file.path(), s.len),
            };
            (partial, appended)
        })
        .await
        .map_err(|e| anyhow!("keeping a piece of a message crashed: {e}"))?;
        job.resume.put(uid, partial);
        appended.map_err(local)?;
        job.moved_on();
        last = m;
        if n < want {
            break;
        }
    }
    let partial = job.resume.take(uid).expect("put back above");
    let whole = tokio::task::spawn_blocking(move || partial.finish())
        .await
        .map_err(|e| anyhow!("checking a message's pieces crashed: {e}"))?
        .map_err(local)?;
    last.body = None;
    last.spilled = Some(Spilled {
        file: Arc::new(SpillFile::adopt(whole.path)),
        len: whole.len,
        sha256: whole.sha256,
        has_0x80: whole.has_0x80,
    });
    deliver(ctx, session, job, shared, HashMap::from([(uid, last)])).await?;
    Ok(true)
}

enum Piece {
    Bytes(Vec<u8>),
    File(Spilled),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File(s) => s.len,
        }
    }
}

async fn open(ctx: &Arc<MirrorContext>, job: &FetchJob, uid: u32) -> Result<Partial> {
    let (store_ctx, f) = (ctx.clone(), job.folder.clone());
    tokio::task::spawn_blocking(move || store_ctx.store.partial(f.folder_id, f.uidvalidity, uid))
        .await
        .map_err(|e| anyhow!("opening a message's pieces crashed: {e}"))?
        .map_err(local)
}

/// A full disk is this machine's trouble, not the connection's.
fn local(e: anyhow::Error) -> anyhow::Error {
    crate::imap::ImapError::LocalWrite(crate::outcome::error_chain(&e)).into()
}

/// The UID and offset of a cut literal, from the response line that
/// announced it: `* 3 FETCH (UID 7 … BODY[] {n}` or `… BODY[]<1024> {n}`.
/// Anything else (a BINARY[] answer, a line without its UID) is not
/// continued.
fn whose(head: &[u8]) -> Option<(u32, u64)> {
    let line = String::from_utf8_lossy(head).to_ascii_uppercase();
    let line = line.trim_end();
    let offset = if line.ends_with(" BODY[]") {
        0
    } else {
        let at = line.rfind(" BODY[]<")?;
        line[at + 8..].strip_suffix('>')?.parse().ok()?
    };
    let at = line.find("(UID ").or_else(|| line.find(" UID "))?;
    let digits: String = line[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((digits.parse().ok()?, offset))
}

#[cfg(test)]
mod tests {
    use super::whose;

    #[test]
    fn a_cut_literal_is_known_by_its_uid_and_offset() {
        assert_eq!(
            whose(b"* 3 FETCH (UID 7 FLAGS (\\Seen) RFC822.SIZE 900 BODY[] "),
            Some((7, 0))
        );
        assert_eq!(
            whose(b"* 3 FETCH (FLAGS () UID 12 BODY[]<1048576> "),
            Some((12, 1_048_576))
        );
        assert_eq!(whose(b"* 3 FETCH (UID 7 BINARY[] "), None);
        assert_eq!(whose(b"* 3 FETCH (BODY[] "), None);
        assert_eq!(whose(b"* 3 FETCH (UID 7 BODY[TEXT] "), None);
    }
}
